"""Turn a user's ``--model`` value into something ``mlx_lm.load`` opens."""

from __future__ import annotations

import json
import platform
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from lsp_mlx.errors import UserError
from lsp_mlx.models.embedded import DEFAULT_BASE_MODEL, converted_model_dir, embedded_gguf_path
from lsp_mlx.models.gguf import SOURCE_FILE, is_gguf_file
from lsp_mlx.readers import check_safetensors, read_json

# "org/name" as the Hub spells repo ids: one slash, no leading dot, tilde or slash.
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass
class ResolvedModel:
    """``path`` is a local mlx-lm folder, or for ``source == "hub"`` the Hub id as given.

    ``base_model`` is the Hugging Face id the weights correspond to (for model cards and
    adapter export), or None when unknown. ``source`` is one of embedded, gguf, folder, hub.
    """

    path: Path
    base_model: str | None
    source: str


def is_hub_id(spec: str) -> bool:
    """``spec`` is spelled like a Hub repo id ``org/name`` (nothing is looked up)."""
    return bool(_HUB_ID.match(spec.strip()))


def platform_default_dequantize() -> bool:
    """Only Apple Silicon has fast quantized (and fp16) matmuls; elsewhere run fp32."""
    return not (sys.platform == "darwin" and platform.machine() == "arm64")


def _recorded_base_model(folder: Path) -> str | None:
    """The base model a folder we converted earlier recorded, if any."""
    try:
        source = json.loads((folder / SOURCE_FILE).read_text())
        if source.get("base_model"):
            return str(source["base_model"])
        # The embedded GGUF names no Hub repo in its metadata, but we know which one it is.
        if source.get("gguf_path") == str(embedded_gguf_path().resolve()):
            return DEFAULT_BASE_MODEL
    except (OSError, ValueError, AttributeError, UserError):
        pass
    return None


def _from_gguf(path: Path, dequantize: bool, source: str) -> ResolvedModel:
    folder = converted_model_dir(path, dequantize)
    base = _recorded_base_model(folder)
    try:
        if path.resolve() == embedded_gguf_path().resolve():
            base = DEFAULT_BASE_MODEL
    except UserError:
        pass  # no embedded package: this GGUF cannot be it
    return ResolvedModel(path=folder, base_model=base, source=source)


def _check_folder(path: Path) -> None:
    missing = []
    if not (path / "config.json").is_file():
        missing.append("no config.json")
    if not any(path.glob("*.safetensors")):
        missing.append("no *.safetensors")
    if missing:
        raise UserError(
            f"{path} is not an mlx-lm/HF model folder: it has {' and '.join(missing)}; "
            "pass a model folder, a .gguf file or a Hub id"
        )
    fix = "restore or re-download the model folder"
    config = read_json(path / "config.json", "the model config", fix=fix)
    if not isinstance(config, dict):
        raise UserError(
            f"the model config {str(path / 'config.json')!r} is not a JSON object: {fix}"
        )
    for weights in sorted(path.glob("*.safetensors")):
        check_safetensors(weights, "the model weights", fix=fix)


def resolve_model(spec: str, dequantize: bool | None = None) -> ResolvedModel:
    """Resolve ``"default"``, a ``.gguf`` file, a model folder or a Hub id ``org/name``.

    GGUF files are converted once into the cache (fp32 when ``dequantize``, else 4-bit);
    ``dequantize=None`` picks :func:`platform_default_dequantize`.
    """
    if dequantize is None:
        dequantize = platform_default_dequantize()
    spec = spec.strip()
    if spec == "default":
        return _from_gguf(embedded_gguf_path(), dequantize, "embedded")

    path = Path(spec).expanduser()
    if path.is_dir():
        _check_folder(path)
        return ResolvedModel(path=path, base_model=_recorded_base_model(path), source="folder")
    if path.is_file():
        if path.suffix.lower() == ".gguf" or is_gguf_file(path):
            return _from_gguf(path, dequantize, "gguf")  # convert_gguf rejects non-GGUF bytes
        raise UserError(
            f"{path} is not a GGUF file or model folder: pass a model folder, a .gguf file or a Hub id"
        )
    if path.suffix.lower() == ".gguf":
        raise UserError(f"GGUF file not found: {path}: pass the path of an existing .gguf file")
    if is_hub_id(spec):
        # mlx_lm.load resolves it through the local Hugging Face cache (or downloads it).
        return ResolvedModel(path=Path(spec), base_model=spec, source="hub")
    raise UserError(
        f"model not found: {spec} is not an existing path: "
        "pass a model folder, a .gguf file or a Hub id like org/name"
    )

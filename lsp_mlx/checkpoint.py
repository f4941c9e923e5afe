"""Atomic checkpoints in ``RUN_DIR/checkpoints/iter-NNNNNN/`` and the ``latest`` pointer.

A checkpoint is built in a hidden temporary folder and renamed into place; ``latest`` is
replaced with ``os.replace``. A crash at any instant leaves the previous checkpoint whole.
Each folder holds the adapter in mlx-lm format (so ``mlx_lm.generate --adapter-path`` opens
it), the optimizer state, the game's state (``game_state.json``: e.g. SQLM's reference
buffer) and ``state.json`` (iteration, seed, config hash, events offset). Weights that are
not finite are never written: the save fails and the previous checkpoint stays the latest.

`resumable` picks the checkpoint a ``--resume`` starts from: the newest one whose files
are whole, with a warning line for each damaged one it passes over.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lsp_mlx.adapter_files import ADAPTER_CONFIG, ADAPTER_WEIGHTS, OPTIMIZER_STATE
from lsp_mlx.atomic import swap_folder, write_text
from lsp_mlx.errors import UserError
from lsp_mlx.readers import check_safetensors, read_json

if TYPE_CHECKING:
    from lsp_mlx.backends.base import Backend

CHECKPOINTS = "checkpoints"
LATEST = "latest"
STATE_FILE = "state.json"
GAME_STATE_FILE = "game_state.json"
ADAPTERS = "adapters"


class NonFiniteWeights(UserError):
    """The adapter holds NaN or infinite values: the run diverged."""


def config_hash(config_dict: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config_dict, sort_keys=True).encode()).hexdigest()[:16]


def save_checkpoint(
    run_dir: Path,
    iteration: int,
    backend: Backend,
    state: dict[str, Any],
    game_state: dict[str, Any],
    keep: int = 0,
) -> Path:
    root = Path(run_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    name = f"iter-{iteration:06d}"
    tmp = root / f".{name}.tmp"
    for stale in [*root.glob(".iter-*.tmp"), *root.glob(".iter-*.old")]:  # left by a kill
        shutil.rmtree(stale, ignore_errors=True)
    try:
        tmp.mkdir()
        backend.save_adapter(tmp)
        bad = nonfinite_tensors(tmp / ADAPTER_WEIGHTS)
        if bad:
            raise NonFiniteWeights(
                f"the adapter holds NaN or infinite values at iteration {iteration} ({bad[0]}"
                f"{f' and {len(bad) - 1} more' if len(bad) > 1 else ''})"
            )
        backend.save_state(tmp)
        (tmp / GAME_STATE_FILE).write_text(json.dumps(game_state))
        (tmp / STATE_FILE).write_text(json.dumps({"iteration": iteration, **state}, indent=2))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # a full disk gets its space back
        raise
    final = root / name
    swap_folder(tmp, final)
    write_text(root / LATEST, name + "\n")

    # RUN_DIR/adapters: the newest adapter alone, for mlx_lm.generate --adapter-path RUN_DIR/adapters
    adapters_tmp = Path(run_dir) / f".{ADAPTERS}.tmp"
    shutil.rmtree(adapters_tmp, ignore_errors=True)
    adapters_tmp.mkdir()
    for f in (ADAPTER_WEIGHTS, ADAPTER_CONFIG):
        if (final / f).exists():
            shutil.copy2(final / f, adapters_tmp / f)
    swap_folder(adapters_tmp, Path(run_dir) / ADAPTERS)

    if keep > 0:
        older = sorted(p for p in root.glob("iter-*") if p.is_dir() and p.name != name)
        for p in older[: max(0, len(older) - (keep - 1))]:
            shutil.rmtree(p, ignore_errors=True)
    return final


# bits that are all ones in the exponent of a non-finite value, per 16-bit float format
_EXPONENT_16 = {"F16": 0x7C00, "BF16": 0x7F80}


def nonfinite_tensors(path: Path) -> list[str]:
    """Names of the floating-point tensors of a safetensors file holding a NaN or an infinity."""
    import numpy as np

    data = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    body = memoryview(data)[8 + n :]
    bad = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        raw = body[begin:end]
        dtype = info["dtype"]
        if dtype in _EXPONENT_16:
            mask = _EXPONENT_16[dtype]
            finite = bool(np.all((np.frombuffer(raw, dtype="<u2") & mask) != mask))
        elif dtype in ("F32", "F64"):
            finite = bool(
                np.all(np.isfinite(np.frombuffer(raw, dtype="<f4" if dtype == "F32" else "<f8")))
            )
        else:
            continue
        if not finite:
            bad.append(name)
    return bad


def checkpoints(run_dir: Path) -> list[Path]:
    """Every checkpoint folder with a state file, oldest first.

    Names, not the ``latest`` pointer, give the order: a crash between a folder's swap and the
    pointer's update leaves a complete newer folder that the pointer does not name yet.
    """
    root = Path(run_dir) / CHECKPOINTS
    return sorted(p for p in root.glob("iter-*") if p.is_dir() and (p / STATE_FILE).is_file())


def check_checkpoint(folder: Path) -> dict[str, Any]:
    """The checkpoint's state, once its files are checked whole (UserError naming the damage)."""
    state = read_json(folder / STATE_FILE, "the checkpoint state")
    if not isinstance(state, dict) or not isinstance(state.get("iteration"), int):
        raise UserError(f"the checkpoint state {str(folder / STATE_FILE)!r} holds no iteration")
    check_safetensors(folder / ADAPTER_WEIGHTS, "the adapter")
    if (folder / OPTIMIZER_STATE).exists():
        check_safetensors(folder / OPTIMIZER_STATE, "the optimizer state")
    if (folder / GAME_STATE_FILE).exists() and not isinstance(
        read_json(folder / GAME_STATE_FILE, "the game state"), dict
    ):
        raise UserError(f"the game state {str(folder / GAME_STATE_FILE)!r} is not a JSON object")
    return state


def resumable(run_dir: Path, warn: Callable[[str], None]) -> tuple[Path, dict[str, Any]] | None:
    """The newest whole checkpoint and its state; None when the run has none. Passing over
    damaged ones costs one warning line."""
    damaged: list[str] = []
    first_error = ""
    for folder in reversed(checkpoints(run_dir)):
        try:
            state = check_checkpoint(folder)
        except UserError as e:
            damaged.append(folder.name)
            first_error = first_error or str(e)
            continue
        if damaged:
            warn(
                f"checkpoint {', '.join(damaged)} is damaged ({first_error}): resuming from "
                f"{folder.name}, the newest whole checkpoint"
            )
        return folder, state
    if damaged:
        warn(
            f"checkpoint {', '.join(damaged)} is damaged ({first_error}) and no whole one is "
            "left: the run starts again from iteration 1"
        )
    return None


def read_game_state(folder: Path) -> dict[str, Any] | None:
    """The game's state saved in a checkpoint; None for a checkpoint written without one."""
    path = Path(folder) / GAME_STATE_FILE
    return read_json(path, "the game state") if path.exists() else None

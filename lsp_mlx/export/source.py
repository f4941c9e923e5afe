"""Find the adapter, its base model and its history in a run folder or an export folder.

A run folder (``docs/design.md``) holds ``config.yaml``, ``events.jsonl``, ``adapters/`` (the
newest adapter) and ``checkpoints/iter-NNNNNN/``. An export folder (what ``lsp-mlx export``
writes) or any plain mlx-lm adapter folder holds ``adapters.safetensors`` and
``adapter_config.json`` at its top. Nothing here imports mlx.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsp_mlx.adapter_files import ADAPTER_CONFIG, ADAPTER_WEIGHTS
from lsp_mlx.errors import UserError
from lsp_mlx.readers import check_safetensors, read_json, read_jsonl, read_yaml


@dataclass
class AdapterSource:
    """Where one adapter and everything known about it lives.

    ``model_path`` is the local base model folder as recorded (it may no longer exist);
    ``base_model`` the Hub id of the base when known.
    """

    kind: str  # "run" or "adapter" (an export or a plain mlx-lm adapter folder)
    root: Path
    adapter_dir: Path
    adapter_config: dict[str, Any]
    iteration: int | None = None
    run_config: dict[str, Any] = field(default_factory=dict)
    model_path: str | None = None
    base_model: str | None = None

    @property
    def events_path(self) -> Path | None:
        path = self.root / "events.jsonl"
        return path if self.kind == "run" and path.is_file() else None

    @property
    def lora(self) -> dict[str, Any]:
        return dict(self.adapter_config.get("lora_parameters") or {})


def _has_adapter(folder: Path) -> bool:
    return (folder / ADAPTER_WEIGHTS).is_file() and (folder / ADAPTER_CONFIG).is_file()


_DAMAGED = "re-export the adapter or pass another checkpoint"


def _read_adapter_config(path: Path) -> dict[str, Any]:
    data = read_json(path, "the adapter config", fix=_DAMAGED)
    if not isinstance(data, dict):
        raise UserError(f"the adapter config {str(path)!r} is not a JSON object: {_DAMAGED}")
    return data


def _checkpoint_iteration(folder: Path) -> int | None:
    state = folder / "state.json"
    if state.is_file():
        try:
            value = read_json(state, "the checkpoint state").get("iteration")
            return int(value) if value is not None else None
        except (UserError, ValueError, TypeError, AttributeError):
            pass  # the folder name tells the iteration too
    name = folder.name
    if name.startswith("iter-") and name[5:].isdigit():
        return int(name[5:])
    return None


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoint folders of a run, oldest first."""
    folder = run_dir / "checkpoints"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("iter-*") if p.is_dir() and _has_adapter(p))


def _run_adapter(run_dir: Path, checkpoint: int | None) -> tuple[Path, int | None]:
    checkpoints = list_checkpoints(run_dir)
    if checkpoint is not None:
        folder = run_dir / "checkpoints" / f"iter-{checkpoint:06d}"
        if not _has_adapter(folder):
            have = ", ".join(str(_checkpoint_iteration(p)) for p in checkpoints) or "none"
            raise UserError(
                f"{run_dir} has no checkpoint {checkpoint} (have: {have}): pass one of them to --checkpoint"
            )
        return folder, _checkpoint_iteration(folder)
    latest_file = run_dir / "checkpoints" / "latest"
    latest = None
    if latest_file.is_file():
        name = latest_file.read_bytes().decode("utf-8", "replace").strip()
        candidate = run_dir / "checkpoints" / name
        latest = candidate if name and _has_adapter(candidate) else None
    if latest is None and checkpoints:
        latest = checkpoints[-1]
    if _has_adapter(run_dir / "adapters"):
        # adapters/ is the newest adapter; a checkpoint with the same bytes tells its iteration
        iteration = _checkpoint_iteration(latest) if latest is not None else None
        if latest is not None and not _same_file(
            latest / ADAPTER_WEIGHTS, run_dir / "adapters" / ADAPTER_WEIGHTS
        ):
            iteration = _last_iteration(run_dir)
        return run_dir / "adapters", iteration
    if latest is not None:
        return latest, _checkpoint_iteration(latest)
    raise UserError(
        f"{run_dir} has no adapter yet (no adapters/ or checkpoints/): let training reach its first checkpoint"
    )


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.stat().st_size == b.stat().st_size and a.read_bytes() == b.read_bytes()
    except OSError:
        return False


def _last_iteration(run_dir: Path) -> int | None:
    from lsp_mlx.events import EVENTS_FILE

    path = run_dir / EVENTS_FILE
    if not path.is_file():
        return None
    events = read_jsonl(path, "the run's events", fix="repair or delete the damaged line")
    its = [e["iteration"] for e in events if e.get("type") == "metrics" and "iteration" in e]
    return max(its) if its else None


def _is_run(folder: Path) -> bool:
    return (folder / "config.yaml").is_file() and (
        (folder / "adapters").is_dir() or (folder / "checkpoints").is_dir()
    )


def _enclosing_run(folder: Path) -> tuple[Path, int | None] | None:
    """RUN/adapters and RUN/checkpoints/iter-N belong to RUN: (RUN, N or None)."""
    if folder.name == "adapters" and _is_run(folder.parent):
        return folder.parent, None
    name = folder.name
    if (
        folder.parent.name == "checkpoints"
        and name.startswith("iter-")
        and name[5:].isdigit()
        and _is_run(folder.parent.parent)
    ):
        return folder.parent.parent, int(name[5:])
    return None


def _check_weights(adapter_dir: Path, kind: str) -> None:
    fix = "pass an earlier one with --checkpoint N" if kind == "run" else _DAMAGED
    check_safetensors(adapter_dir / ADAPTER_WEIGHTS, "the adapter weights", fix=fix)


def resolve_source(path: str | Path, checkpoint: int | None = None) -> AdapterSource:
    """Resolve ``path``: a run folder, one of its checkpoint folders (or its ``adapters/``), an
    export folder or an mlx-lm adapter folder. The one place every command finds an adapter;
    its weights' header is checked here, before any framework loads them."""
    if not str(path).strip():
        raise UserError(
            "--adapter is empty: pass a run folder, a checkpoint folder or an adapter folder"
        )
    root = Path(path).expanduser()
    if not root.exists():
        raise UserError(
            f"{root} does not exist: pass a run folder (--run-dir of lsp-mlx train), a checkpoint folder or an export folder"
        )
    if not root.is_dir():
        raise UserError(
            f"{root} is a file: pass a run folder, a checkpoint folder or an export folder"
        )
    enclosing = _enclosing_run(root)
    if enclosing is not None:
        root, in_run = enclosing
        if checkpoint is not None and in_run is not None and checkpoint != in_run:
            raise UserError(
                f"--checkpoint {checkpoint} disagrees with the checkpoint folder iter-{in_run:06d}: pass one of them"
            )
        checkpoint = checkpoint if in_run is None else in_run
    if checkpoint is not None and checkpoint < 0:
        raise UserError(f"--checkpoint must be >= 0, got {checkpoint}")
    if _is_run(root):
        run_config = read_yaml(
            root / "config.yaml",
            "the run's config",
            fix="restore it from the run_start event in events.jsonl",
        )
        if not isinstance(run_config, dict):
            run_config = {}
        adapter_dir, iteration = _run_adapter(root, checkpoint)
        _check_weights(adapter_dir, "run")
        config = _read_adapter_config(adapter_dir / ADAPTER_CONFIG)
        model = run_config.get("model") or {}
        return AdapterSource(
            kind="run",
            root=root,
            adapter_dir=adapter_dir,
            adapter_config=config,
            iteration=iteration,
            run_config=run_config,
            model_path=model.get("path") or config.get("model"),
            base_model=model.get("base_model") or config.get("base_model"),
        )
    if _has_adapter(root):
        if checkpoint is not None:
            raise UserError(
                f"{root} is an adapter folder, not a run: --checkpoint only applies to run folders"
            )
        _check_weights(root, "adapter")
        config = _read_adapter_config(root / ADAPTER_CONFIG)
        return AdapterSource(
            kind="adapter",
            root=root,
            adapter_dir=root,
            adapter_config=config,
            model_path=config.get("model"),
            base_model=config.get("base_model") or config.get("base_model_name_or_path"),
        )
    raise UserError(
        f"{root} is neither a run folder (config.yaml + adapters/) nor an adapter folder "
        f"({ADAPTER_WEIGHTS} + {ADAPTER_CONFIG}): pass the --run-dir of a training run or an export folder"
    )


def locate_base_model(source: AdapterSource, override: str | None = None) -> Path | str:
    """The base model to open with ``mlx_lm.load``: a local folder when we have one.

    Order: ``override`` (--model), the recorded local folder, the embedded model when the
    base is its Hub id, else the Hub id itself (mlx-lm fetches it through the HF cache).
    """
    from lsp_mlx.models import DEFAULT_BASE_MODEL, resolve_model

    if override:
        resolved = resolve_model(override)
        return str(resolved.path) if resolved.source == "hub" else resolved.path
    if source.model_path and Path(source.model_path).expanduser().is_dir():
        return resolve_model(source.model_path).path  # checks the folder's files
    dequantize = (source.run_config.get("model") or {}).get("dequantize")
    if source.base_model == DEFAULT_BASE_MODEL or source.model_path == "default":
        return resolve_model("default", dequantize=dequantize).path
    if source.base_model:
        base = Path(source.base_model).expanduser()
        return base if base.is_dir() else source.base_model
    raise UserError(
        f"the base model of {source.root} is unknown (recorded folder {source.model_path!r} is gone): "
        "pass it with --model PATH_OR_HUB_ID"
    )

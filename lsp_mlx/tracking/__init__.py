"""Experiment trackers: TensorBoard, Weights & Biases and Trackio (``train.report_to``).

Each tracker is an optional extra (``pip install 'lsp-mlx[tracking]'`` for all three, or
``lsp-mlx[tensorboard]``, ``[wandb]``, ``[trackio]``), imported only when a run asks for it.
The trainer calls `check_installed` before it writes anything and passes `open_trackers` to
its `lsp_mlx.events.EventWriter` as listeners; ``lsp-mlx report`` feeds the same sinks from a
finished run's ``events.jsonl``. See docs/tracking.md.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from lsp_mlx.config import TRACKERS
from lsp_mlx.errors import UserError
from lsp_mlx.tracking.sink import Tracker, TrackerSink


def tracker_names(names: list[str] | tuple[str, ...] | None) -> list[str]:
    """The trackers asked for, in order, without repeats; ``none`` (or nothing) means none."""
    chosen: list[str] = []
    for name in names or []:
        if name == "none":
            continue
        if name not in TRACKERS:
            raise UserError(
                f"report_to: unknown tracker {name!r}: choose from {', '.join(TRACKERS)} (or none)"
            )
        if name not in chosen:
            chosen.append(name)
    return chosen


def install_command(names: list[str]) -> str:
    return f"pip install 'lsp-mlx[{','.join(names)}]'"


def check_installed(names: list[str] | tuple[str, ...] | None) -> None:
    """A `UserError` with the pip command when a tracker asked for is not installed.

    Only looks the packages up (no import: wandb's takes seconds), so it is cheap to call
    before anything is written.
    """
    missing = [n for n in tracker_names(names) if importlib.util.find_spec(n) is None]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise UserError(f"{' and '.join(missing)} {verb} not installed: {install_command(missing)}")


def make_tracker(name: str, run_dir: Path, project: str, run_name: str) -> Tracker:
    """One tracker by name; nothing is opened until the run's ``run_start`` event."""
    if name == "tensorboard":
        from lsp_mlx.tracking.to_tensorboard import TensorBoardTracker

        return TensorBoardTracker(run_dir, run_name)
    if name == "wandb":
        from lsp_mlx.tracking.to_wandb import WandbTracker

        return WandbTracker(run_dir, project, run_name)
    if name == "trackio":
        from lsp_mlx.tracking.to_trackio import TrackioTracker

        return TrackioTracker(project, run_name)
    raise UserError(f"report_to: unknown tracker {name!r}: choose from {', '.join(TRACKERS)}")


def open_trackers(config: Any, run_dir: Path) -> list[TrackerSink]:
    """The sinks of ``config.train.report_to``, to pass as `EventWriter` listeners.

    The tracker project is ``train.tracker_project``; the run's name ``train.run_name``, by
    default the run folder's name.
    """
    train = config.train
    run_dir = Path(run_dir)
    project = train.tracker_project
    run_name = train.run_name or run_dir.resolve().name
    return [
        TrackerSink(make_tracker(name, run_dir, project, run_name))
        for name in tracker_names(train.report_to)
    ]


__all__ = [
    "TRACKERS",
    "Tracker",
    "TrackerSink",
    "check_installed",
    "install_command",
    "make_tracker",
    "open_trackers",
    "tracker_names",
]

"""``lsp-mlx report RUN_DIR --to TRACKER``: replay a run's events.jsonl into experiment trackers.

The replay goes through the same `lsp_mlx.tracking.TrackerSink` a live run's
``--report-to`` uses, so a replayed run holds the same values as one tracked live; it works
for finished runs, stopped ones and runs made without ``--report-to``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lsp_mlx.config import TRACKERS, TrainConfig
from lsp_mlx.errors import UserError
from lsp_mlx.events import EVENTS_FILE
from lsp_mlx.readers import read_jsonl
from lsp_mlx.tracking import (
    TrackerSink,
    check_installed,
    make_tracker,
    tracker_names,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="replay a run's events into TensorBoard, Weights & Biases or Trackio",
        description="Send every metric, the config and the games of RUN_DIR/events.jsonl to "
        "experiment trackers, as `train --report-to` does live (step = iteration).",
    )
    p.add_argument("run_dir", help="the run folder of an `lsp-mlx train` run")
    p.add_argument(
        "--to",
        nargs="+",
        required=True,
        choices=TRACKERS,
        metavar="TRACKER",
        help=f"one or more of {', '.join(TRACKERS)}",
    )
    p.add_argument(
        "--project", help="the trackers' project (default: the run's train.tracker_project)"
    )
    p.add_argument(
        "--name", help="the run's name (default: the run's train.run_name or its folder's name)"
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir)
    path = run_dir / EVENTS_FILE
    if not path.is_file():
        raise UserError(
            f"{run_dir} is not a run folder (no {EVENTS_FILE}): pass the --run-dir of a training run"
        )
    for flag, value in (("--project", args.project), ("--name", args.name)):
        if value is not None and not value.strip():
            raise UserError(f"{flag} is empty: give it a name, or leave it out for the run's own")
    names = tracker_names(args.to)
    check_installed(names)
    events = read_jsonl(path, "the run's events")
    start = next((e for e in events if e.get("type") == "run_start"), {})
    train = (start.get("config") or {}).get("train") or {}
    project = args.project or train.get("tracker_project") or TrainConfig().tracker_project
    name = args.name or train.get("run_name") or run_dir.resolve().name
    sinks = [TrackerSink(make_tracker(n, run_dir, project, name), strict=True) for n in names]
    failed = None
    for sink in sinks:
        try:
            for event in events:
                sink(event)
            sink.close()
        except Exception as e:
            failed = failed or (sink.tracker.name, e)
            try:
                sink.tracker.finish()
            except Exception:
                pass  # already failing: the first error is the one reported
            continue
        print(f"{sink.tracker.name}: {sink.iterations} iterations -> {sink.tracker.describe()}")
    if failed is not None:
        tracker, error = failed
        if isinstance(error, UserError):  # already names the problem and the fix
            raise UserError(f"report: {tracker}: {error}")
        raise UserError(
            f"report: {tracker} failed ({type(error).__name__}: {error}): fix the tracker's "
            f"settings and run the report again"
        )
    return 0

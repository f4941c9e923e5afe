"""``lsp-mlx control RUN_DIR COMMAND``: pause, resume, stop or checkpoint a running trainer."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from lsp_mlx.control import COMMANDS, pid_alive, send
from lsp_mlx.errors import UserError
from lsp_mlx.events import EVENTS_FILE


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "control",
        help="send pause/resume/stop/checkpoint to a running trainer",
        description="Queue a command for the trainer of RUN_DIR (it polls RUN_DIR/control/ between phases).",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="the run folder of a running `lsp-mlx train`")
    p.add_argument("command", choices=COMMANDS, help="what the trainer should do")
    p.set_defaults(run=run)


def not_running_reason(events: list[dict[str, Any]]) -> str | None:
    """Why no trainer will read a command, judged from the run's events; None if one may.

    A trainer is live between its ``run_start`` and ``run_end``; a ``run_start`` without a
    ``run_end`` whose process is gone (killed) is not live either. An old run_start without a
    pid is given the benefit of the doubt.
    """
    starts = [i for i, e in enumerate(events) if e.get("type") == "run_start"]
    if not starts:
        return "it has not started"
    start = events[starts[-1]]
    ends = [e for e in events[starts[-1] + 1 :] if e.get("type") == "run_end"]
    if ends:
        return f"its last run ended ({ends[-1].get('status', 'ended')})"
    pid = start.get("pid")
    if isinstance(pid, int) and not pid_alive(pid):
        return f"its trainer (pid {pid}) is gone"
    return None


def run(args: argparse.Namespace) -> int:
    from lsp_mlx.readers import read_jsonl

    run_dir = Path(args.run_dir)
    if not (run_dir / EVENTS_FILE).is_file():
        raise UserError(
            f"{run_dir} is not a run folder (no events.jsonl): pass the --run-dir of a training run"
        )
    events = read_jsonl(
        run_dir / EVENTS_FILE, "the run's events", fix="repair or delete the damaged line"
    )
    reason = not_running_reason(events)
    if reason is not None:
        raise UserError(
            f"no trainer is running for {run_dir} ({reason}), so nothing would read {args.command!r}: "
            f"continue the run with lsp-mlx train --resume --run-dir {run_dir}"
        )
    path = send(run_dir, args.command)
    print(f"queued {args.command} for {run_dir} ({path.name})")
    return 0

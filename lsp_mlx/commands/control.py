"""``lsp-mlx control RUN_DIR COMMAND``: pause, resume, stop or checkpoint a running trainer."""

from __future__ import annotations

import argparse
from pathlib import Path

from lsp_mlx.control import COMMANDS, send
from lsp_mlx.errors import UserError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "control",
        help="send pause/resume/stop/checkpoint to a running trainer",
        description="Queue a command for the trainer of RUN_DIR (it polls RUN_DIR/control/ between phases).",
    )
    p.add_argument("run_dir", help="the run folder of a running `lsp-mlx train`")
    p.add_argument("command", choices=COMMANDS, help="what the trainer should do")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir)
    if not (run_dir / "events.jsonl").is_file():
        raise UserError(f"{run_dir} is not a run folder (no events.jsonl): pass the --run-dir of a training run")
    path = send(run_dir, args.command)
    print(f"queued {args.command} for {run_dir} ({path.name})")
    return 0

"""``lsp-mlx train``: run self-play training headless (the TUI runs this same command)."""

from __future__ import annotations

import argparse

from lsp_mlx import config as cfg
from lsp_mlx.commands.train_flags import (
    add_train_arguments,
    config_from_args,
    train_args_from_namespace,
)
from lsp_mlx.errors import UserError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="run self-play training (headless)",
        description="Run self-play training. Writes RUN_DIR/events.jsonl (games, metrics), config.yaml and "
        "checkpoints/ (mlx-lm adapters). Ctrl-C saves a checkpoint; --resume continues.",
        epilog="Control a running trainer with `lsp-mlx control RUN_DIR pause|resume|stop|checkpoint`. "
        "All config keys: lsp-mlx train --help-config",
    )
    add_train_arguments(p)
    p.add_argument(
        "--help-config",
        action="store_true",
        help="list every config key with its default and help, then exit",
    )
    p.add_argument(
        "--distributed",
        type=int,
        nargs="?",
        const=2,
        metavar="K",
        help="print the commands that run this training on K data-parallel ranks (default 2), then exit",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.help_config:
        print(cfg.help_text())
        return 0
    if args.distributed is not None:
        from lsp_mlx.commands.launch import launch_help

        if args.distributed < 1:
            raise UserError(
                f"--distributed {args.distributed}: give the number of ranks, at least 1 (e.g. --distributed 2)"
            )
        print(launch_help(train_args_from_namespace(args), args.distributed))
        return 0
    if args.reset_optimizer and not args.resume:
        raise UserError("--reset-optimizer only applies with --resume: drop it, or add --resume")
    from lsp_mlx.trainer import Trainer

    config = config_from_args(args)
    return Trainer(config, resume=args.resume, reset_optimizer=args.reset_optimizer).run()

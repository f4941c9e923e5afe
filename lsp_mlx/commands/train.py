"""``lsp-mlx train``: run self-play training headless (the TUI runs this same command)."""

from __future__ import annotations

import argparse
from typing import Any

from lsp_mlx import config as cfg


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of `lsp-mlx train`, shared with `lsp-mlx tui` so the two never diverge."""
    p.add_argument("--config", "-c", metavar="FILE", help="YAML preset, e.g. configs/demo.yaml (default: built-in defaults)")
    p.add_argument("--model", help="overrides model.path: 'default', a .gguf, a model folder or a Hub id")
    p.add_argument("--iterations", type=int, help="overrides train.iterations")
    p.add_argument("--run-dir", help="overrides train.run_dir (events.jsonl, config.yaml, checkpoints/)")
    p.add_argument("--seed", type=int, help="overrides train.seed")
    p.add_argument("--backend", choices=cfg.BACKENDS, help="overrides train.backend")
    p.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its latest checkpoint")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override any config key, e.g. --set game.num_queries=4 (repeatable)")


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    overrides = cfg.parse_set(args.set)
    for flag, key in (("model", "model.path"), ("iterations", "train.iterations"), ("run_dir", "train.run_dir"),
                      ("seed", "train.seed"), ("backend", "train.backend")):
        value = getattr(args, flag, None)
        if value is not None:
            overrides[key] = value
    return overrides


def config_from_args(args: argparse.Namespace) -> cfg.Config:
    return cfg.load(args.config, overrides_from_args(args))


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
    p.add_argument("--help-config", action="store_true", help="list every config key with its default and help, then exit")
    p.add_argument("--distributed", type=int, nargs="?", const=2, metavar="K",  # [distributed]
                   help="print the commands that run this training on K data-parallel ranks (default 2), then exit")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.help_config:
        print(cfg.help_text())
        return 0
    if args.distributed:  # [distributed]
        from lsp_mlx.commands.launch import launch_help, train_args_from_namespace

        print(launch_help(train_args_from_namespace(args), args.distributed))
        return 0
    from lsp_mlx.trainer import Trainer

    config = config_from_args(args)
    return Trainer(config, resume=args.resume).run()

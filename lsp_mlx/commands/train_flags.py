"""The flags of ``lsp-mlx train``, shared by ``train``, ``launch`` and ``tui`` so they never diverge.

A leaf module: the commands import it, it imports only the config.
"""

from __future__ import annotations

import argparse
from typing import Any

from lsp_mlx import config as cfg

# flag dest -> the config key it overrides
FLAG_KEYS = (
    ("model", "model.path"),
    ("iterations", "train.iterations"),
    ("run_dir", "train.run_dir"),
    ("seed", "train.seed"),
    ("backend", "train.backend"),
    ("report_to", "train.report_to"),
)


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        "-c",
        metavar="FILE",
        help="YAML preset, e.g. configs/demo.yaml (default: built-in defaults)",
    )
    p.add_argument(
        "--model", help="overrides model.path: 'default', a .gguf, a model folder or a Hub id"
    )
    p.add_argument("--iterations", type=int, help="overrides train.iterations")
    p.add_argument(
        "--run-dir", help="overrides train.run_dir (events.jsonl, config.yaml, checkpoints/)"
    )
    p.add_argument("--seed", type=int, help="overrides train.seed")
    p.add_argument("--backend", choices=cfg.BACKENDS, help="overrides train.backend")
    p.add_argument(
        "--report-to",
        nargs="+",
        metavar="NAME",
        help="also send the run's events to these trackers: tensorboard, wandb, trackio "
        "(none: off; overrides train.report_to)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --run-dir from its latest complete checkpoint",
    )
    p.add_argument(
        "--reset-optimizer",
        action="store_true",
        help="with --resume: continue with a fresh optimizer (needed when the checkpoint has "
        "no optimizer state; the run then differs from an uninterrupted one)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override any config key, e.g. --set game.num_queries=4 (repeatable)",
    )


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    overrides = cfg.parse_set(args.set)
    for flag, key in FLAG_KEYS:
        value = getattr(args, flag, None)
        if value is not None:
            overrides[key] = value
    return overrides


def config_from_args(args: argparse.Namespace) -> cfg.Config:
    return cfg.load(args.config, overrides_from_args(args))


def train_args_from_namespace(args: argparse.Namespace) -> list[str]:
    """The `lsp-mlx train` flags of a parsed namespace, back as argv (for printing commands)."""
    out: list[str] = []
    if getattr(args, "config", None) is not None:
        out += ["--config", str(args.config)]
    for flag, _ in FLAG_KEYS:
        value = getattr(args, flag, None)
        if value is None:
            continue
        option = "--" + flag.replace("_", "-")
        out += [option, *map(str, value)] if isinstance(value, list) else [option, str(value)]
    for item in getattr(args, "set", None) or []:
        out += ["--set", item]
    for flag in ("resume", "reset_optimizer"):
        if getattr(args, flag, False):
            out.append("--" + flag.replace("_", "-"))
    return out

"""The ``lsp-mlx`` command line.

Each subcommand lives in its own module under `lsp_mlx.commands` with two functions,
``add_parser(subparsers)`` and ``run(args) -> int``. Modules are imported only when their
command runs (``--help`` imports them all, but none of them imports mlx or torch at import
time), so ``lsp-mlx tui`` never loads an accelerator framework.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from lsp_mlx import __version__
from lsp_mlx.errors import UserError

COMMANDS = ["train", "tui", "export", "chat", "generate", "eval", "control", "launch", "report"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lsp-mlx",
        description="Language self-play with LoRA on MLX: train, watch, evaluate and export.",
    )
    parser.add_argument("--version", action="version", version=f"lsp-mlx {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"lsp_mlx.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"lsp_mlx.commands.{name}":
                continue  # command not part of this build
            raise
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(args.run(args) or 0)
    except UserError as e:
        print(f"lsp-mlx: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("lsp-mlx: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())

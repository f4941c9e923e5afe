"""The ``lsp-mlx`` command line.

Each subcommand lives in its own module under `lsp_mlx.commands` with two functions,
``add_parser(subparsers)`` and ``run(args) -> int``. None of them imports mlx or torch at
import time, so ``lsp-mlx tui`` never loads an accelerator framework.

Every error the user can fix is one line on stderr, ``lsp-mlx: error: ...``, and exit code 2:
`UserError` from the commands, the argument parser's own complaints (an unknown flag, a value
that is not a number), and the operating system's refusals that only the user can fix (a full
disk, a read-only or forbidden path).
"""

from __future__ import annotations

import argparse
import errno
import importlib
import sys
from typing import NoReturn

from lsp_mlx import __version__
from lsp_mlx.errors import UserError

COMMANDS = ["train", "tui", "export", "chat", "generate", "eval", "control", "launch", "report"]


# errors of the machine the user fixes (space, permissions), not bugs: one line, not a traceback
_USER_OS_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


class Parser(argparse.ArgumentParser):
    """argparse with its complaints on one line (argparse prints the usage block first)."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("lsp-mlx").strip()
        where = f"{command}: " if command else ""
        print(f"lsp-mlx: error: {where}{message}: see {self.prog} --help", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="lsp-mlx",
        description="Language self-play with LoRA on MLX: train, watch, evaluate and export.",
    )
    parser.add_argument("--version", action="version", version=f"lsp-mlx {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"lsp_mlx.commands.{name}").add_parser(sub)
    return parser


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version (0) or a parser error (2, already printed)
        return e.code if isinstance(e.code, int) else 2
    if not getattr(args, "command", None):
        print(
            f"lsp-mlx: error: no command given: pick one of {', '.join(COMMANDS)} (lsp-mlx --help)",
            file=sys.stderr,
        )
        return 2
    try:
        return int(args.run(args) or 0)
    except UserError as e:
        print(f"lsp-mlx: error: {_one_line(e)}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("lsp-mlx: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print(
            "lsp-mlx: error: out of memory: lower game.num_queries, game.group_size or the max tokens",
            file=sys.stderr,
        )
        return 2
    except OSError as e:
        if e.errno not in _USER_OS_ERRORS:
            raise
        where = f" ({e.filename})" if e.filename else ""
        fix = (
            "free some space" if e.errno in (errno.ENOSPC, errno.EDQUOT) else "pass a writable path"
        )
        print(f"lsp-mlx: error: {e.strerror}{where}: {fix}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())

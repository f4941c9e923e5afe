"""``lsp-mlx chat --adapter PATH``: talk to the trained model in the terminal.

Reads one message per line from stdin (a terminal or a pipe), prints the reply, keeps the
conversation. ``--compare`` answers every message twice, with the base model and with the
adapter, side by side (two conversations that share the user's messages). Commands:
``/reset`` forgets the conversation, ``/quit`` (or end of input) leaves.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import textwrap
from typing import Any

from lsp_mlx.errors import UserError

HELP = "/reset forgets the conversation, /quit leaves (so does Ctrl-D)"
ADAPTER_HELP = "a run folder (its newest adapter), a checkpoint folder or an adapter folder"
SEED_MAX = 2**32 - 1


def add_generation_arguments(p: argparse.ArgumentParser) -> None:
    """Flags shared with `lsp-mlx generate`."""
    p.add_argument(
        "--adapter",
        required=True,
        metavar="PATH",
        help=ADAPTER_HELP,
    )
    p.add_argument(
        "--checkpoint", type=int, metavar="N", help="with a run folder: use checkpoints/iter-N"
    )
    p.add_argument(
        "--model",
        metavar="PATH",
        help="the base model, when the recorded one is not on this machine",
    )
    p.add_argument(
        "--max-tokens", type=int, default=256, help="max tokens per answer (default 256)"
    )
    p.add_argument(
        "--temp", type=float, default=0.0, help="sampling temperature (default 0: greedy)"
    )
    p.add_argument(
        "--top-p", type=float, default=1.0, help="nucleus sampling threshold (default 1: off)"
    )
    p.add_argument("--seed", type=int, default=0, help="random seed for --temp > 0")
    p.add_argument("--system", metavar="TEXT", help="a system message before the conversation")


def check_generation_arguments(args: argparse.Namespace) -> None:
    """Every flag, before the model loads (NaN fails every comparison, so ranges are written to
    accept only what they name)."""
    if not 1 <= args.max_tokens <= 131072:
        raise UserError(f"--max-tokens must be in 1..131072, got {args.max_tokens}")
    if not 0 <= args.temp <= 10:
        raise UserError(f"--temp must be in [0, 10] (0 is greedy), got {args.temp}")
    if not 0 < args.top_p <= 1:
        raise UserError(f"--top-p must be in (0, 1], got {args.top_p}")
    if not 0 <= args.seed <= SEED_MAX:
        raise UserError(f"--seed must be in 0..{SEED_MAX}, got {args.seed}")
    if args.system is not None:
        check_utf8(args.system, "--system")
    if args.checkpoint is not None and args.checkpoint < 0:
        raise UserError(f"--checkpoint must be >= 0, got {args.checkpoint}")


def check_utf8(text: str, what: str) -> str:
    """Bytes that are not UTF-8 reach Python as lone surrogates (from argv or a piped stdin);
    a tokenizer cannot encode them."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise UserError(
            f"{what} is not UTF-8 text (at character {e.start}): pass UTF-8 text"
        ) from None
    return text


def read_stdin_leniently() -> None:
    """Bytes that are not UTF-8 arrive as lone surrogates (as on Linux by default), not as a
    UnicodeDecodeError where the locale is strict, so `check_utf8` reports them."""
    reconfigure = getattr(sys.stdin, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(errors="surrogateescape")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "chat",
        help="chat with the trained model in the terminal",
        description="Chat with base model + adapter. One message per line; " + HELP + ".",
        epilog="Example: lsp-mlx chat --adapter runs/lsp --compare",
    )
    add_generation_arguments(p)
    p.add_argument(
        "--compare",
        action="store_true",
        help="show the base model's and the adapted model's answers side by side",
    )
    p.set_defaults(run=run)


def side_by_side(left_title: str, left: str, right_title: str, right: str, width: int) -> str:
    """Two answers in two columns of ``width`` characters in all."""
    col = max(20, (width - 3) // 2)

    def wrap(text: str) -> list[str]:
        lines: list[str] = []
        for paragraph in text.strip().splitlines() or [""]:
            lines += textwrap.wrap(
                paragraph, col, replace_whitespace=False, drop_whitespace=True
            ) or [""]
        return lines

    a, b = (
        [left_title, "-" * len(left_title), *wrap(left)],
        [right_title, "-" * len(right_title), *wrap(right)],
    )
    a += [""] * (len(b) - len(a))
    b += [""] * (len(a) - len(b))
    return "\n".join(f"{x:<{col}} | {y}".rstrip() for x, y in zip(a, b))


def _generation_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "max_tokens": args.max_tokens,
        "temperature": args.temp,
        "top_p": args.top_p,
        "seed": args.seed,
    }


def run(args: argparse.Namespace) -> int:
    check_generation_arguments(args)
    from lsp_mlx.export.session import open_session

    session = open_session(args.adapter, args.checkpoint, args.model)
    read_stdin_leniently()
    interactive = sys.stdin.isatty()
    print(f"lsp-mlx chat: {session.describe()}", file=sys.stderr)
    print(HELP, file=sys.stderr)
    system = [{"role": "system", "content": args.system}] if args.system else []
    histories: dict[bool, list[dict[str, str]]] = {True: list(system), False: list(system)}
    kwargs = _generation_kwargs(args)
    width = shutil.get_terminal_size((100, 24)).columns
    while True:
        if interactive:
            print("\nyou> ", end="", flush=True)
        line = sys.stdin.readline()
        if not line:  # end of input
            break
        message = line.strip()
        if not message:
            continue
        try:
            check_utf8(message, "that line")
        except UserError as e:  # one bad line does not end the conversation
            print(f"({e})", flush=True)
            continue
        if message in ("/quit", "/exit"):
            break
        if message == "/reset":
            histories = {True: list(system), False: list(system)}
            print("(conversation cleared)", flush=True)
            continue
        if message.startswith("/"):
            print(f"(unknown command {message}: {HELP})", flush=True)
            continue
        modes = (False, True) if args.compare else (True,)
        answers = {}
        for adapter in modes:
            histories[adapter].append({"role": "user", "content": message})
            prompt = session.prompt_tokens(histories[adapter])
            if args.compare:
                answers[adapter] = session.complete(prompt, adapter=adapter, **kwargs)
            else:
                print("model> ", end="", flush=True)
                pieces = []
                for piece in session.stream(prompt, adapter=adapter, **kwargs):
                    pieces.append(piece)
                    print(piece, end="", flush=True)
                print(flush=True)
                answers[adapter] = "".join(pieces)
            histories[adapter].append({"role": "assistant", "content": answers[adapter]})
        if args.compare:
            print(side_by_side("base", answers[False], "adapted", answers[True], width), flush=True)
            print(flush=True)
    return 0

"""``lsp-mlx generate --adapter DIR --prompt TEXT``: one completion on stdout, for scripts."""

from __future__ import annotations

import argparse
import sys

from lsp_mlx.commands.chat import (
    add_generation_arguments,
    check_generation_arguments,
    check_utf8,
    read_stdin_leniently,
)
from lsp_mlx.errors import UserError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "generate",
        help="print one completion of base model + adapter (for scripts)",
        description="Answer one prompt with base model + adapter and print only the answer on stdout.",
        epilog="Example: lsp-mlx generate --adapter exports/lsp --prompt 'Name three prime numbers.'",
    )
    add_generation_arguments(p)
    p.add_argument(
        "--prompt", required=True, metavar="TEXT", help="the user message ('-' reads it from stdin)"
    )
    p.add_argument(
        "--raw",
        action="store_true",
        help="complete the prompt text as is, without the chat template",
    )
    p.add_argument(
        "--no-adapter",
        action="store_true",
        help="answer with the base model (adapter off), for comparison",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    check_generation_arguments(args)
    if args.prompt == "-":
        read_stdin_leniently()
    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    check_utf8(prompt, "the prompt")
    if not prompt.strip():
        raise UserError("the prompt is empty: pass --prompt TEXT, or --prompt - with text on stdin")
    if args.raw and args.system:
        raise UserError("--system needs the chat template: drop --raw or drop --system")
    from lsp_mlx.export.session import open_session

    session = open_session(args.adapter, args.checkpoint, args.model)
    if args.raw:
        tokens = list(session.tokenizer.encode(prompt))
    else:
        system = [{"role": "system", "content": args.system}] if args.system else []
        tokens = session.prompt_tokens([*system, {"role": "user", "content": prompt}])
    text = session.complete(
        tokens,
        adapter=not args.no_adapter,
        max_tokens=args.max_tokens,
        temperature=args.temp,
        top_p=args.top_p,
        seed=args.seed,
    )
    sys.stdout.write(text + "\n")
    return 0

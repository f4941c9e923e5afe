"""``lsp-mlx export --adapter PATH --out DIR``: the adapter in mlx-lm and PEFT formats, a model card,
optionally a fused model, optionally pushed to the Hugging Face Hub (docs/export.md)."""

from __future__ import annotations

import argparse
import sys

from lsp_mlx.commands.chat import ADAPTER_HELP
from lsp_mlx.errors import UserError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export an adapter for mlx-lm, PEFT and the Hugging Face Hub",
        description="Write the adapter of PATH in mlx-lm format (adapters.safetensors) and PEFT format "
        "(adapter_model.safetensors), one adapter_config.json for both, a model card README.md with a "
        "training-curves PNG, and with --fuse a fused full model in DIR/fused.",
        epilog="Example: lsp-mlx export --adapter runs/lsp --out exports/lsp --fuse --push-to-hub you/smollm2-lsp",
    )
    p.add_argument("--adapter", metavar="PATH", help=ADAPTER_HELP)
    p.add_argument("run_dir", nargs="?", metavar="PATH", help="the same as --adapter PATH")
    p.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="the export folder (new, empty, or an earlier export)",
    )
    p.add_argument(
        "--checkpoint",
        type=int,
        metavar="N",
        help="export checkpoints/iter-N instead of the newest adapter",
    )
    p.add_argument(
        "--fuse",
        action="store_true",
        help="also write DIR/fused: the base with the adapter merged in",
    )
    p.add_argument(
        "--push-to-hub", metavar="REPO_ID", help="upload DIR to this Hub repo (created if needed)"
    )
    p.add_argument(
        "--private", action="store_true", help="with --push-to-hub: create the repo private"
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="with --push-to-hub: list what would be uploaded, send nothing",
    )
    p.add_argument(
        "--base-model",
        metavar="ORG/NAME",
        help="Hub id of the base model, when the run did not record one",
    )
    p.add_argument(
        "--model", metavar="PATH", help="the local base model folder, when the recorded one moved"
    )
    p.set_defaults(run=run)


def _adapter_path(args: argparse.Namespace) -> str:
    if args.adapter is not None and args.run_dir is not None and args.adapter != args.run_dir:
        raise UserError(
            f"two adapters given ({args.run_dir} and --adapter {args.adapter}): pass one, as --adapter PATH"
        )
    path = args.adapter if args.adapter is not None else args.run_dir
    if path is None:
        raise UserError(
            "export needs the adapter: pass --adapter PATH (a run, checkpoint or adapter folder)"
        )
    return path


def run(args: argparse.Namespace) -> int:
    adapter = _adapter_path(args)
    if args.checkpoint is not None and args.checkpoint < 0:
        raise UserError(f"--checkpoint must be >= 0, got {args.checkpoint}")
    if args.private and not args.push_to_hub:
        raise UserError(
            "--private only applies to --push-to-hub: add --push-to-hub REPO_ID or drop --private"
        )
    if args.dry_run and not args.push_to_hub:
        raise UserError(
            "--dry-run lists what --push-to-hub would upload: add --push-to-hub REPO_ID"
        )
    from lsp_mlx.outputs import check_writable_dir

    check_writable_dir(args.out, "--out")
    if args.push_to_hub:
        from lsp_mlx.export.hub import check_repo_id

        check_repo_id(args.push_to_hub)  # before the export, not after it
    if args.base_model is not None:
        from huggingface_hub.utils import HFValidationError, validate_repo_id

        try:
            validate_repo_id(args.base_model)
        except HFValidationError:
            raise UserError(
                f"--base-model {args.base_model!r} is not a Hub id: pass ORG/NAME, e.g. HuggingFaceTB/SmolLM2-135M-Instruct"
            ) from None
    from lsp_mlx import blas

    blas.preload()
    from lsp_mlx.export.exporter import export_adapter

    result = export_adapter(
        adapter,
        args.out,
        checkpoint=args.checkpoint,
        fuse=args.fuse,
        base_model=args.base_model,
        model=args.model,
        repo_id=args.push_to_hub,
    )
    for warning in result.warnings:
        print(f"lsp-mlx: warning: {warning}", file=sys.stderr)
    it = f" (iteration {result.source.iteration})" if result.source.iteration is not None else ""
    print(f"exported {result.source.adapter_dir}{it} to {result.out_dir}:")
    for path in result.files:
        if path.parts[0] != "fused":
            print(f"  {path}")
    if result.fused:
        print(
            f"  fused/  (full model{', dequantized' if result.dequantized else ''}: mlx_lm.load('{result.out_dir / 'fused'}'))"
        )
    print(f"try it: lsp-mlx chat --adapter {result.out_dir} --compare")
    print(
        f"        mlx_lm.generate --model {result.base_path} --adapter-path {result.out_dir} --prompt 'Hello'"
    )
    if not args.push_to_hub:
        return 0
    from lsp_mlx.export.hub import plan_upload, push_folder

    if args.dry_run:
        print(plan_upload(result.out_dir, args.push_to_hub, args.private).describe())
        return 0
    url = push_folder(result.out_dir, args.push_to_hub, private=args.private)
    print(f"pushed to {url}")
    return 0

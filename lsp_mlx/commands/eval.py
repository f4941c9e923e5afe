"""``lsp-mlx eval``: measure a base model, with or without a trained adapter.

(a) Exact-match accuracy on a held-out arithmetic set generated from ``--seed`` (several
difficulty levels), with Wilson 95% intervals, and with an adapter the paired difference
adapter - base with its 95% interval. (b) With ``--prompts``: the adapter's pairwise win rate
against the base model, each pair judged in both orders, with a 95% interval. Prints a table
and writes everything (per-problem answers included) to a JSON file.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lsp_mlx.errors import UserError
from lsp_mlx.events import EVENTS_FILE

if TYPE_CHECKING:
    from lsp_mlx.export.source import AdapterSource

SEED_MAX = 2**32 - 1


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="held-out accuracy and pairwise win rate of an adapter vs its base model",
        description="Evaluate a base model, or an adapter against its base model: exact-match accuracy on a "
        "held-out arithmetic set generated from --seed (95% Wilson intervals; paired difference with an adapter) "
        "and, with --prompts, the adapter's win rate judged in both orders (95% interval).",
    )
    p.add_argument(
        "--model",
        metavar="PATH",
        help="base model: 'default', a .gguf, a model folder (default: the adapter's own base, else 'default')",
    )
    p.add_argument(
        "--adapter",
        metavar="PATH",
        help="a run folder (its newest adapter), a checkpoint folder or an adapter folder",
    )
    p.add_argument(
        "--checkpoint", type=int, metavar="N", help="with a run folder: use checkpoints/iter-N"
    )
    p.add_argument("--seed", type=int, default=1234, help="seed of the held-out set (default 1234)")
    p.add_argument(
        "--levels",
        default="add1,add2,sub2,mul1",
        help="comma-separated difficulty levels (default add1,add2,sub2,mul1; also add3, mul2)",
    )
    p.add_argument("--per-level", type=int, default=100, help="problems per level (default 100)")
    p.add_argument("--max-tokens", type=int, default=64, help="max tokens per answer (default 64)")
    p.add_argument("--no-accuracy", action="store_true", help="skip the held-out accuracy")
    p.add_argument(
        "--train-log",
        metavar="EVENTS",
        help="a run's events.jsonl: also report accuracy on the problems that run never trained on "
        "(default: found next to a run's adapter; 'none' turns it off)",
    )
    p.add_argument(
        "--no-base",
        action="store_true",
        help="with --adapter: measure only the adapter's accuracy (e.g. for checkpoints along a curve)",
    )
    p.add_argument(
        "--base-answers",
        metavar="EVAL_JSON",
        help="with --adapter: reuse the base model's answers from an earlier eval JSON of the same "
        "held-out set (greedy, so they do not change) instead of generating them again",
    )
    p.add_argument(
        "--prompts",
        help="JSONL ('prompt' field) or text file of prompts for the win rate (needs --adapter)",
    )
    p.add_argument(
        "--judge",
        choices=["judge", "reward_model", "python"],
        default="judge",
        help="who compares the pairs: judge (the base model picks A or B), reward_model, python (default judge)",
    )
    p.add_argument(
        "--reward-model", help="for --judge reward_model: a sequence-classification model folder"
    )
    p.add_argument(
        "--function", help="for --judge python: 'package.module:function' with the reward signature"
    )
    p.add_argument(
        "--batch-size", type=int, default=64, help="prompts generated together (default 64)"
    )
    p.add_argument(
        "--output", "-o", default="eval.json", help="the JSON result file (default eval.json)"
    )
    p.set_defaults(run=run)


def _config(args: argparse.Namespace, source: AdapterSource | None) -> Any:
    from lsp_mlx import config as cfg

    overrides: dict[str, Any] = {"train.micro_batch_size": 8}
    model = args.model
    if source is not None:
        meta = source.adapter_config
        lora = meta.get("lora_parameters", {})
        for key in ("rank", "scale", "dropout", "keys"):
            if key in lora:
                overrides[f"lora.{key}"] = lora[key]
        if "num_layers" in meta:
            overrides["lora.num_layers"] = meta["num_layers"]
        if model is None:  # the base the adapter was trained on, found as chat and export find it
            from lsp_mlx.export.source import locate_base_model

            model = str(locate_base_model(source))
        if source.base_model:
            overrides["model.base_model"] = source.base_model
    overrides["model.path"] = model or "default"
    return cfg.load(None, overrides)


def _levels(args: argparse.Namespace) -> list[str]:
    return [lv.strip() for lv in args.levels.split(",") if lv.strip()]


def _check(args: argparse.Namespace) -> None:
    """Every flag, before any file is read or model loaded."""
    from lsp_mlx.evaluation.heldout import LEVELS
    from lsp_mlx.outputs import check_writable_file

    if not 1 <= args.per_level <= 100_000:
        raise UserError(f"--per-level must be in 1..100000, got {args.per_level}")
    levels = _levels(args)
    if not args.no_accuracy:
        if not levels:
            raise UserError(
                f"--levels is empty: pass one or more of {', '.join(LEVELS)}, comma-separated"
            )
        unknown = [lv for lv in levels if lv not in LEVELS]
        if unknown:
            raise UserError(f"--levels: unknown level {unknown[0]!r}; known: {', '.join(LEVELS)}")
        twice = sorted({lv for lv in levels if levels.count(lv) > 1})
        if twice:
            raise UserError(f"--levels names {twice[0]!r} twice: list each level once")
    if not 1 <= args.max_tokens <= 131072:
        raise UserError(f"--max-tokens must be in 1..131072, got {args.max_tokens}")
    if not 1 <= args.batch_size <= 4096:
        raise UserError(f"--batch-size must be in 1..4096, got {args.batch_size}")
    if not 0 <= args.seed <= SEED_MAX:
        raise UserError(f"--seed must be in 0..{SEED_MAX}, got {args.seed}")
    if args.checkpoint is not None and not args.adapter:
        raise UserError("--checkpoint picks a checkpoint of a run: also pass --adapter RUN")
    if args.no_base and not args.adapter:
        raise UserError("--no-base needs --adapter (without one there is only the base to measure)")
    if args.base_answers and not args.adapter:
        raise UserError("--base-answers pairs an adapter with the base: also pass --adapter")
    if args.base_answers and args.no_base:
        raise UserError("--base-answers and --no-base contradict each other: drop one")
    if args.base_answers and args.no_accuracy:
        raise UserError("--base-answers is for the held-out accuracy: drop --no-accuracy")
    if args.prompts and not args.adapter:
        raise UserError("--prompts compares an adapter with its base: also pass --adapter")
    if args.no_accuracy and not args.prompts:
        raise UserError("--no-accuracy leaves nothing to measure: drop it or pass --prompts")
    if args.judge == "reward_model" and args.prompts and not args.reward_model:
        raise UserError("--judge reward_model needs --reward-model FOLDER")
    if args.judge == "reward_model" and args.prompts:
        from lsp_mlx.models.resolve import is_hub_id

        if not Path(args.reward_model).is_dir() and not is_hub_id(args.reward_model):
            raise UserError(
                f"--reward-model {args.reward_model}: no such folder (and not a Hub id): "
                "pass a sequence-classification model folder"
            )
    if args.judge == "python" and args.prompts and (not args.function or ":" not in args.function):
        raise UserError("--judge python needs --function package.module:function")
    check_writable_file(args.output, "--output")


def _progress(label: str) -> Any:
    start = time.perf_counter()

    def report(done: int, total: int) -> None:
        print(
            f"\r{label}: {done}/{total} ({time.perf_counter() - start:.0f}s)",
            end="",
            file=sys.stderr,
            flush=True,
        )
        if done == total:
            print(file=sys.stderr)

    return report


def _train_log(args: argparse.Namespace, source: AdapterSource | None) -> Path | None:
    if args.train_log == "none":
        return None
    if args.train_log:
        path = Path(args.train_log)
        path = path / EVENTS_FILE if path.is_dir() else path
        if not path.is_file():
            raise UserError(
                f"--train-log: no events.jsonl at {args.train_log}: pass a run folder or its events.jsonl"
            )
        return path
    return source.events_path if source is not None else None


def read_base_answers(path: str, args: argparse.Namespace) -> tuple[str | None, list[str]]:
    """The base model and its completions from an earlier eval JSON, checked to be of the very
    held-out set these flags make (read before any model loads)."""
    from lsp_mlx.evaluation.heldout import make_arithmetic_set
    from lsp_mlx.readers import read_json

    data = read_json(path, "--base-answers", fix="pass an eval JSON written by lsp-mlx eval")
    acc = data.get("accuracy") if isinstance(data, dict) else None
    samples = acc.get("samples") if isinstance(acc, dict) else None
    if not isinstance(samples, list) or not all(
        isinstance(s, dict) and isinstance(s.get("base"), dict) for s in samples
    ):
        raise UserError(
            f"--base-answers {path}: holds no base answers: pass an eval JSON made without --no-base"
        )
    levels = _levels(args)
    ours = {
        "seed": args.seed,
        "levels": levels,
        "per_level": args.per_level,
        "max_tokens": args.max_tokens,
    }
    for key, value in ours.items():
        if acc.get(key) != value:
            flag = "--" + key.replace("_", "-")
            raise UserError(
                f"--base-answers {path}: made with {flag} {acc.get(key)}, this eval uses {value}: "
                f"pass the same {flag} or drop --base-answers"
            )
    questions = [p.question for p in make_arithmetic_set(args.seed, args.per_level, levels)]
    if [s.get("question") for s in samples] != questions:
        raise UserError(
            f"--base-answers {path}: its problems differ from this held-out set (another version "
            "of lsp-mlx?): drop --base-answers"
        )
    return data.get("base_model"), [str(s["base"].get("completion", "")) for s in samples]


def _check_adapter_fits(backend: Any, source: AdapterSource, model: str) -> None:
    """One greedy token with the adapter on: an adapter trained on another base fails here, as
    one line, rather than deep inside the first batch."""
    prompt = backend.chat_prompt([{"role": "user", "content": "1 + 1 ="}])
    try:
        backend.generate([prompt], n=1, max_tokens=1, temperature=0.0, adapter=True)
    except (ValueError, RuntimeError) as e:
        first = (str(e).splitlines() or [type(e).__name__])[0]
        raise UserError(
            f"the adapter in {source.adapter_dir} does not fit {model} ({first}): pass the base it was trained on with --model"
        ) from None


def _accuracy_row(
    graded: dict[str, list[Any]], runs: dict[str, bool], idx: list[int]
) -> dict[str, Any]:
    from lsp_mlx.evaluation.stats import paired_difference, wilson_interval

    row: dict[str, Any] = {}
    for name in runs:
        hits = [graded[name][i].correct for i in idx]
        row[name] = wilson_interval(sum(hits), len(hits)).to_dict()
    if len(runs) == 2:
        diff = paired_difference(
            [graded["adapter"][i].correct for i in idx],
            [graded["base"][i].correct for i in idx],
        )
        row["difference"] = diff.to_dict()
        row["difference"]["excludes_zero"] = diff.excludes(0.0)
    return row


def accuracy_section(
    backend: Any,
    args: argparse.Namespace,
    with_adapter: bool,
    train_log: Path | None = None,
    trained_on: set[str] | None = None,
    base_answers: list[str] | None = None,
) -> dict[str, Any]:
    """``trained_on``: the questions of ``train_log``; ``base_answers``: the base model's
    completions from an earlier eval (both read before any model was loaded)."""
    from lsp_mlx.evaluation.heldout import (
        answer_problems,
        grade,
        make_arithmetic_set,
        seen_in_training,
        training_questions,
    )

    levels = _levels(args)
    try:
        problems = make_arithmetic_set(args.seed, args.per_level, levels)
    except ValueError as e:
        raise UserError(f"--levels: {e}") from None
    runs = {"base": False, **({"adapter": True} if with_adapter else {})}
    if with_adapter and args.no_base:
        del runs["base"]
    graded = {}
    for name, adapter in runs.items():
        if name == "base" and base_answers is not None:
            graded[name] = grade(problems, base_answers)
            continue
        texts = answer_problems(
            backend,
            problems,
            adapter,
            args.max_tokens,
            args.batch_size,
            _progress(f"{name} answers"),
        )
        graded[name] = grade(problems, texts)
    out: dict[str, Any] = {
        "seed": args.seed,
        "levels": levels,
        "per_level": args.per_level,
        "max_tokens": args.max_tokens,
        "by_level": {},
        "samples": [],
    }
    for level in levels:
        idx = [i for i, p in enumerate(problems) if p.level == level]
        out["by_level"][level] = _accuracy_row(graded, runs, idx)
    out["all"] = _accuracy_row(graded, runs, list(range(len(problems))))
    seen = [False] * len(problems)
    if train_log is not None:
        if trained_on is None:
            trained_on = training_questions(train_log)
        seen = seen_in_training(problems, trained_on)
        unseen = [i for i, s in enumerate(seen) if not s]
        out["train_log"] = str(train_log)
        out["seen_in_training"] = sum(seen)
        if unseen:
            out["unseen"] = _accuracy_row(graded, runs, unseen)
    for i, p in enumerate(problems):
        sample = {"question": p.question, "answer": p.answer, "level": p.level}
        if train_log is not None:
            sample["seen_in_training"] = seen[i]
        for name in runs:
            g = graded[name][i]
            sample[name] = {
                "completion": g.completion,
                "extracted": g.extracted,
                "correct": g.correct,
            }
        out["samples"].append(sample)
    return out


def win_rate_section(
    backend: Any, args: argparse.Namespace, prompts: list[str] | None = None, scorer: Any = None
) -> dict[str, Any]:
    """``prompts`` and the ``scorer`` may be read up front (before any answer is generated)."""
    from lsp_mlx.evaluation.pairwise import answer_prompts, judge_pairs, read_prompts
    from lsp_mlx.evaluation.stats import win_rate

    if prompts is None:
        prompts = read_prompts(args.prompts)
    if args.judge == "reward_model" and scorer is None:
        scorer = backend.load_reward_model(args.reward_model)
    elif args.judge == "python" and scorer is None:
        from lsp_mlx.rewards.python_fn import load_function

        scorer = load_function(args.function)
    base = answer_prompts(backend, prompts, False, args.max_tokens, args.batch_size)
    adapted = answer_prompts(backend, prompts, True, args.max_tokens, args.batch_size)
    results = judge_pairs(backend, prompts, base, adapted, scorer)
    wr = win_rate([r.outcome for r in results])
    return {
        "judge": args.judge,
        "prompts": len(prompts),
        "win_rate": {**wr.to_dict(), "excludes_half": wr.excludes(0.5)},
        "wins": sum(r.outcome == 1.0 for r in results),
        "ties_or_split": sum(r.outcome == 0.5 for r in results),
        "losses": sum(r.outcome == 0.0 for r in results),
        "order_agreement": sum(r.adapter_first == r.adapter_second for r in results) / len(results),
        "pairs": [r.__dict__ | {"outcome": r.outcome} for r in results],
    }


def _pct(d: dict[str, Any]) -> str:
    return f"{100 * d['estimate']:5.1f}% [{100 * d['ci_low']:5.1f}, {100 * d['ci_high']:5.1f}]"


def print_table(result: dict[str, Any]) -> None:
    acc = result.get("accuracy")
    if acc:
        columns = [c for c in ("base", "adapter") if c in acc["all"]]
        diff = "difference" in acc["all"]
        print("held-out arithmetic accuracy (exact match, 95% CI)")
        print(
            f"{'level':<8}{'n':>5}  "
            + "".join(f"{c:<24}" for c in columns)
            + ("adapter - base" if diff else "")
        )
        rows = [*acc["by_level"].items(), ("all", acc["all"])]
        if "unseen" in acc:
            rows.append(("unseen", acc["unseen"]))
        for level, row in rows:
            line = f"{level:<8}{row[columns[0]]['n']:>5}  " + "".join(
                f"{_pct(row[c]):<24}" for c in columns
            )
            if diff:
                d = row["difference"]
                line += f"{100 * d['estimate']:+5.1f} [{100 * d['ci_low']:+5.1f}, {100 * d['ci_high']:+5.1f}]"
            print(line)
        if "train_log" in acc:
            print(
                f"unseen: the problems the run never trained on ({acc['seen_in_training']} of "
                f"the {len(acc['samples'])} appear as training problems in {acc['train_log']})"
            )
    wr = result.get("win_rate")
    if wr:
        w = wr["win_rate"]
        print(
            f"\nwin rate of the adapter vs base ({wr['judge']}, {wr['prompts']} prompts, both orders): "
            f"{_pct(w)}  wins {wr['wins']} / ties {wr['ties_or_split']} / losses {wr['losses']}; "
            f"the two orders agree on {100 * wr['order_agreement']:.0f}%"
        )


def run(args: argparse.Namespace) -> int:
    _check(args)
    from lsp_mlx.export.source import resolve_source

    source = resolve_source(args.adapter, args.checkpoint) if args.adapter else None
    # every input file is read before the model loads: damage costs no minutes of generation
    train_log = _train_log(args, source) if not args.no_accuracy else None
    trained_on = None
    if train_log is not None:
        from lsp_mlx.evaluation.heldout import training_questions

        trained_on = training_questions(train_log)
    base_model, base_answers = (
        read_base_answers(args.base_answers, args) if args.base_answers else (None, None)
    )
    prompts, scorer = None, None
    if args.prompts:
        from lsp_mlx.evaluation.pairwise import read_prompts

        prompts = read_prompts(args.prompts)
        if args.judge == "python":
            from lsp_mlx.rewards.python_fn import load_function

            scorer = load_function(args.function)
    config = _config(args, source)
    from lsp_mlx.backends import get_backend

    if base_model and config.model.base_model and base_model != config.model.base_model:
        raise UserError(
            f"--base-answers {args.base_answers}: answers of {base_model}, this eval's base is "
            f"{config.model.base_model}: pass an eval of the same base or drop --base-answers"
        )
    backend = get_backend(config)
    adapter = source.adapter_dir if source is not None else None
    if source is not None:
        backend.load_adapter(source.adapter_dir)
        _check_adapter_fits(backend, source, config.model.path)
    if args.prompts and args.judge == "reward_model":
        scorer = backend.load_reward_model(args.reward_model)  # before minutes of generation
    result: dict[str, Any] = {
        "model": config.model.path,
        "base_model": config.model.base_model,
        "adapter": str(adapter) if adapter else None,
    }
    if args.base_answers:
        result["base_answers_from"] = args.base_answers
    if not args.no_accuracy:
        result["accuracy"] = accuracy_section(
            backend, args, adapter is not None, train_log, trained_on, base_answers
        )
    if args.prompts:
        result["win_rate"] = win_rate_section(backend, args, prompts, scorer)
    print_table(result)
    out = Path(args.output)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))
    except OSError as e:  # checked before the eval; the disk can still fill up since
        raise UserError(
            f"--output {out} cannot be written ({e.strerror or e}): the table above holds the results; "
            "free space or pass another --output"
        ) from None
    print(f"\nwrote {out}")
    return 0

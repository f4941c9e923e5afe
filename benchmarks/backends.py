"""MLX vs torch backend, and the torch backend's sampler vs plain ``model.generate``, in one run.

    python benchmarks/backends.py                      # the embedded SmolLM2-135M
    python benchmarks/backends.py --model /path/to/hf-folder --prompts 8 --n 4 --max-tokens 64

Both backends get the same chat prompts; the update is timed on the same `PolicySample`s (the
MLX backend's sampled games), so the work is identical. Rollout speed is sampled tokens per
second of ``generate(prompts, n, max_tokens)`` at temperature 1; ``model.generate`` runs on the
torch backend's own PEFT model (adapter on) with the same prompts, n and token limit. Each
figure is the median of ``--repeats`` rounds after one warm-up; the contenders take turns
within each round, so load that drifts during the run does not favour one of them. Ratios are printed at the
end; ``--json`` also writes every figure to a file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from lsp_mlx.blas import preload

preload()  # before mlx.core is imported, for fast CPU matmuls on Linux

from lsp_mlx import config as cfg  # noqa: E402
from lsp_mlx.backends import get_backend  # noqa: E402
from lsp_mlx.records import PolicySample  # noqa: E402

QUESTIONS = [
    "What is the capital of France?",
    "Explain photosynthesis in two sentences.",
    "Write a haiku about autumn.",
    "How do I reverse a list in Python?",
    "Why is the sky blue?",
    "Give three tips for a job interview.",
    "What is 17 times 23?",
    "Summarise the plot of Romeo and Juliet.",
]


class Contest:
    """Timed contenders run in turns: warm-up each once, then ``repeats`` rounds in which every
    contender runs once. Interleaving matters on a shared machine: load that drifts during the
    run hits every contender alike, so the ratios stay fair. A contender returns its token count
    (or None); each figure is the median over the rounds."""

    def __init__(self, repeats: int) -> None:
        self.repeats = repeats
        self.contenders: dict[str, Callable[[], int | None]] = {}

    def add(self, name: str, fn: Callable[[], int | None]) -> None:
        self.contenders[name] = fn

    def run(self) -> dict[str, dict[str, Any]]:
        for fn in self.contenders.values():
            fn()
        times: dict[str, list[float]] = {name: [] for name in self.contenders}
        tokens: dict[str, list[int]] = {name: [] for name in self.contenders}
        for _ in range(self.repeats):
            for name, fn in self.contenders.items():
                t0 = time.perf_counter()
                count = fn()
                times[name].append(time.perf_counter() - t0)
                if count is not None:
                    tokens[name].append(count)
        out: dict[str, dict[str, Any]] = {}
        for name in self.contenders:
            seconds = statistics.median(times[name])
            out[name] = {"seconds": seconds, "all_seconds": times[name]}
            if tokens[name]:
                out[name]["tokens"] = statistics.median(tokens[name])
                out[name]["tokens_per_s"] = out[name]["tokens"] / seconds
        return out


def sampler(backend: Any, prompts: list[list[int]], n: int, max_tokens: int) -> Callable[[], int]:
    def run() -> int:
        backend.seed(0)
        groups = backend.generate(prompts, n=n, max_tokens=max_tokens, temperature=1.0)
        return sum(len(c.tokens) for g in groups for c in g)

    return run


def hf_sampler(
    backend: Any, prompts: list[list[int]], n: int, max_tokens: int
) -> Callable[[], int]:
    """transformers' ``generate`` on the torch backend's PEFT model: sampling, no log-probs."""
    import torch

    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), backend.pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, p in enumerate(prompts):
        ids[i, width - len(p) :] = torch.tensor(p)
        mask[i, width - len(p) :] = 1
    ids, mask = ids.to(backend.device), mask.to(backend.device)

    def run() -> int:
        torch.manual_seed(0)
        with torch.no_grad():
            out = backend.model.generate(
                input_ids=ids,
                attention_mask=mask,
                do_sample=True,
                temperature=1.0,
                top_p=1.0,
                top_k=0,
                max_new_tokens=max_tokens,
                num_return_sequences=n,
                eos_token_id=sorted(backend.stop_ids),
                pad_token_id=backend.pad_id,
            )
        total = 0
        for row in out[:, width:].tolist():  # count up to (not including) the first stop token
            total += next((i for i, t in enumerate(row) if t in backend.stop_ids), len(row))
        return total

    return run


def updater(backend: Any, samples: list[PolicySample]) -> Callable[[], None]:
    def run() -> None:
        backend.train_step(samples, beta=0.05)

    return run


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
    if hasattr(os, "getloadavg"):
        info["load_average_1min"] = round(os.getloadavg()[0], 2)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        info["cpu"] = platform.processor()
    return info


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--model",
        default="default",
        help="'default' (embedded SmolLM2-135M), a model folder or a Hub id",
    )
    p.add_argument("--prompts", type=int, default=4, help="distinct prompts (queries)")
    p.add_argument("--n", type=int, default=4, help="samples per prompt (G)")
    p.add_argument("--max-tokens", type=int, default=48)
    p.add_argument("--micro-batch", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", type=Path, help="also write every figure to this file")
    args = p.parse_args(argv)

    overrides = {
        "model.path": args.model,
        "train.micro_batch_size": args.micro_batch,
        "lora.rank": 8,
        "lora.num_layers": -1,
    }
    mlx = get_backend(cfg.load(None, {**overrides, "train.backend": "mlx"}))
    torch_backend = get_backend(cfg.load(None, {**overrides, "train.backend": "torch"}))
    questions = [QUESTIONS[i % len(QUESTIONS)] for i in range(args.prompts)]
    prompts = [mlx.chat_prompt([{"role": "user", "content": q}]) for q in questions]
    assert prompts == [
        torch_backend.chat_prompt([{"role": "user", "content": q}]) for q in questions
    ]

    result: dict[str, Any] = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "model": args.model,
        "setup": {
            "prompts": args.prompts,
            "n": args.n,
            "max_tokens": args.max_tokens,
            "micro_batch": args.micro_batch,
            "repeats": args.repeats,
        },
        "mlx_info": {k: mlx.info()[k] for k in ("device", "dtype", "blas")},
        "torch_info": {k: torch_backend.info()[k] for k in ("device", "dtype", "blas", "torch")},
    }
    print(
        f"machine: {result['machine']}\nmlx: {result['mlx_info']}\ntorch: {result['torch_info']}",
        file=sys.stderr,
    )

    # the same games for both updates: the MLX backend's samples, weights as in LSP (1/(N*G))
    mlx.seed(0)
    groups = mlx.generate(prompts, n=args.n, max_tokens=args.max_tokens, temperature=1.0)
    samples = []
    for prompt, group in zip(prompts, groups):
        rewards = [len(c.tokens) / args.max_tokens for c in group]
        mean = sum(rewards) / len(rewards)
        samples += [
            PolicySample(prompt, c.tokens, r - mean, 1 / (len(prompts) * args.n), "solver")
            for c, r in zip(group, rewards)
        ]
    contest = Contest(args.repeats)
    contest.add("mlx_rollout", sampler(mlx, prompts, args.n, args.max_tokens))
    contest.add("torch_rollout", sampler(torch_backend, prompts, args.n, args.max_tokens))
    contest.add("hf_generate", hf_sampler(torch_backend, prompts, args.n, args.max_tokens))
    contest.add("mlx_update", updater(mlx, samples))
    contest.add("torch_update", updater(torch_backend, samples))
    timed = contest.run()
    mlx_roll, torch_roll, plain = timed["mlx_rollout"], timed["torch_rollout"], timed["hf_generate"]
    mlx_upd, torch_upd = timed["mlx_update"], timed["torch_update"]

    result["mlx"] = {"rollout": mlx_roll, "update": mlx_upd}
    result["torch"] = {"rollout": torch_roll, "update": torch_upd, "hf_generate": plain}
    result["ratios"] = {
        "rollout_tokens_per_s_torch_over_mlx": torch_roll["tokens_per_s"]
        / mlx_roll["tokens_per_s"],
        "update_time_torch_over_mlx": torch_upd["seconds"] / mlx_upd["seconds"],
        "torch_backend_over_hf_generate_tokens_per_s": torch_roll["tokens_per_s"]
        / plain["tokens_per_s"],
    }
    trained = sum(len(s.completion) for s in samples)
    print(
        f"\nrollout ({args.prompts} prompts x {args.n} samples, <= {args.max_tokens} tokens, temperature 1)"
    )
    print(
        f"  mlx backend          {mlx_roll['tokens_per_s']:8.1f} tok/s  ({mlx_roll['tokens']:.0f} tokens in {mlx_roll['seconds']:.2f}s)"
    )
    print(
        f"  torch backend        {torch_roll['tokens_per_s']:8.1f} tok/s  ({torch_roll['tokens']:.0f} tokens in {torch_roll['seconds']:.2f}s)"
    )
    print(
        f"  transformers generate{plain['tokens_per_s']:8.1f} tok/s  ({plain['tokens']:.0f} tokens in {plain['seconds']:.2f}s)"
    )
    print(
        f"update (one train_step on the same {len(samples)} samples, {trained} completion tokens)"
    )
    print(f"  mlx backend          {mlx_upd['seconds']:8.2f} s")
    print(f"  torch backend        {torch_upd['seconds']:8.2f} s")
    print("ratios")
    for key, value in result["ratios"].items():
        print(f"  {key:45s} {value:6.2f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

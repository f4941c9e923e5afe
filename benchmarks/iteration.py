"""An iteration against its generation: the update, scoring and phase split, in one run.

    python benchmarks/iteration.py [--rounds 2] [--iterations 2]

(a) Our update step (`MLXBackend.train_step`) vs the full-sequence update it replaced (kept as
    the oracle of tests/test_exactness.py: every sequence padded to a multiple of 32 in
    micro-batches of 8 rows, reference and policy each a whole-model pass) vs mlx-lm's LoRA SFT
    step (`mlx_lm.tuner.trainer.default_loss` under `nn.value_and_grad`, then AdamW, micro-batches
    of 8), on the same sequences: the samples of one real iteration of configs/demo.yaml.
(b) Scoring vs generation: the self-judge of configs/lsp-arithmetic.yaml (`judge_mode: expected`,
    one next-token distribution per answer) on the answers of one real iteration, ours vs the
    full-sequence scoring it replaced, against that iteration's generation.
(d) Peak memory of each contender of (a) and (b) (MLX's own peak allocation).
    Contenders take turns in every round after one warm-up, so load that drifts on a shared
    machine hits each alike; each figure is the median over the rounds.
(c) The phase split of real training runs (`lsp-mlx train`, ``time/*`` of events.jsonl) on
    configs/demo.yaml and on configs/lsp-arithmetic.yaml (the self-judge's prompts are ~250
    tokens), with iteration / generation.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))  # the full-sequence oracle lives with its test

from lsp_mlx.blas import preload  # noqa: E402

BLAS = preload()

import mlx.core as mx  # noqa: E402
import mlx.nn as nn  # noqa: E402
import mlx.optimizers as optim  # noqa: E402
from mlx.utils import tree_map  # noqa: E402
from mlx_lm.tuner.trainer import default_loss  # noqa: E402
from test_exactness import oracle_loss_and_gradients  # noqa: E402

from lsp_mlx import config as cfg  # noqa: E402
from lsp_mlx.backends.mlx import MLXBackend  # noqa: E402
from lsp_mlx.distributed import World  # noqa: E402
from lsp_mlx.games import make_game  # noqa: E402
from lsp_mlx.rewards.judge import Judge  # noqa: E402

DEMO = REPO / "configs" / "demo.yaml"
LONG = REPO / "configs" / "lsp-arithmetic.yaml"
SMALL_GAME = {"game.num_queries": 4, "game.group_size": 4}  # the demo's size for both presets


def measure(
    contenders: dict[str, Callable[[], Any]],
    rounds: int,
    warmups: dict[str, Callable[[], Any]] | None = None,
) -> dict[str, dict[str, float]]:
    """Median seconds and peak memory (GB) of each contender over interleaved rounds, after one
    warm-up call of each (``warmups``: a smaller job of the same code, where given)."""
    for name, fn in contenders.items():
        (warmups or {}).get(name, fn)()
    seconds: dict[str, list[float]] = {k: [] for k in contenders}
    peaks: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(rounds):
        for name, fn in contenders.items():
            mx.clear_cache()
            mx.reset_peak_memory()
            t0 = time.perf_counter()
            fn()
            seconds[name].append(time.perf_counter() - t0)
            peaks[name].append(mx.get_peak_memory() / 1e9)
    return {
        k: {"seconds": statistics.median(seconds[k]), "peak_gb": max(peaks[k]), "all": seconds[k]}
        for k in contenders
    }


def old_update(backend: MLXBackend, samples: list[Any], beta: float, k3: bool) -> None:
    """The replaced update: full padded sequences, then the same clipped AdamW step."""
    _, grads = oracle_loss_and_gradients(
        backend, samples, beta, k3, rows=backend.config.train.micro_batch_size, pad=True
    )
    if backend.config.train.max_grad_norm > 0:
        grads, _ = optim.clip_grad_norm(grads, backend.config.train.max_grad_norm)
    backend.optimizer.update(backend.model, grads)
    mx.eval(backend.model.trainable_parameters(), backend.optimizer.state)


def sft_step(backend: MLXBackend, samples: list[Any], optimizer: optim.Optimizer) -> None:
    """mlx-lm's LoRA SFT step on the same sequences: its loss, its padding, micro-batches of 8."""
    loss_and_grad = nn.value_and_grad(backend.model, default_loss)
    grads_acc = None
    for start in range(0, len(samples), 8):
        chunk = samples[start : start + 8]
        seqs = [s.prompt + s.completion for s in chunk]
        width = 1 + 32 * ((max(len(x) for x in seqs) + 31) // 32)  # iterate_batches' padding
        batch = mx.array([x + [0] * (width - len(x)) for x in seqs])
        lengths = mx.array([[len(s.prompt), len(s.prompt) + len(s.completion)] for s in chunk])
        (_, _), grads = loss_and_grad(backend.model, batch, lengths)
        grads_acc = grads if grads_acc is None else tree_map(mx.add, grads_acc, grads)
        mx.eval(grads_acc)
    optimizer.update(backend.model, grads_acc)
    mx.eval(backend.model.trainable_parameters(), optimizer.state)


def old_next_token(backend: MLXBackend, prompts: list[list[int]], ids: list[int]) -> None:
    """The replaced judge scoring: every prompt whole, padded to 32, the model's full logits
    at every position, micro-batches of ``micro_batch_size``."""
    rows = backend.config.train.micro_batch_size
    token_ids = mx.array(ids)
    with backend.adapter_disabled():
        for start in range(0, len(prompts), rows):
            chunk = prompts[start : start + rows]
            width = 32 * ((max(len(p) for p in chunk) + 31) // 32)
            inputs = mx.array([p + [0] * (width - len(p)) for p in chunk])
            hidden = backend.model.model(inputs)
            last = hidden[mx.arange(len(chunk)), mx.array([len(p) - 1 for p in chunk])]
            logits = backend.forward.lm_head(last).astype(mx.float32)
            mx.eval((logits - mx.logsumexp(logits, axis=-1, keepdims=True))[:, token_ids])


def one_iteration(config_path: Path, overrides: dict[str, Any]) -> tuple[MLXBackend, Any, Any]:
    config = cfg.load(config_path, {**SMALL_GAME, "train.run_dir": tempfile.mkdtemp(), **overrides})
    backend = MLXBackend(config)
    game = make_game(config, backend, World())
    backend.seed(config.train.seed)
    rollout = game.play(backend, 1)
    return backend, game, rollout


def run_training(config_path: Path, iterations: int) -> list[dict[str, float]]:
    """``lsp-mlx train`` for real; the ``time/*`` metrics of every iteration from events.jsonl."""
    run_dir = Path(tempfile.mkdtemp()) / "run"
    sets = [f"{k}={v}" for k, v in SMALL_GAME.items()]
    sets += [f"train.iterations={iterations}", f"train.checkpoint_every={iterations}"]
    cmd = [sys.executable, "-m", "lsp_mlx", "train", "--config", str(config_path)]
    cmd += ["--run-dir", str(run_dir)] + [x for s in sets for x in ("--set", s)]
    subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    rows = []
    for line in (run_dir / "events.jsonl").read_text().splitlines():
        event = json.loads(line)
        if event.get("type") == "metrics":
            rows.append(
                {k: v for k, v in event.get("metrics", event).items() if k.startswith("time/")}
            )
    return rows


def phase_table(name: str, rows: list[dict[str, float]]) -> str:
    keys = sorted({k for r in rows for k in r})
    med = {k: statistics.median(r[k] for r in rows if k in r) for k in keys}
    gen = med.get("time/generate", float("nan"))
    parts = "  ".join(f"{k[5:]} {v:.1f}s" for k, v in med.items() if k != "time/iteration")
    it = med.get("time/iteration", float("nan"))
    return (
        f"  {name}: median of {len(rows)} iterations: {parts}  iteration {it:.1f}s\n"
        f"    iteration / generation = {it / gen:.2f}x  (goal <= 2x on the demo)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--iterations", type=int, default=2, help="iterations of each training run")
    args = ap.parse_args()
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(
        f"{now}, {platform.machine()} {platform.system()}, {os.cpu_count()} cores, "
        f"BLAS {BLAS}, mlx {mx.__version__}"
    )

    bench_update(args.rounds)
    bench_scoring(args.rounds)
    print(f"\n(c) phase split of `lsp-mlx train` ({args.iterations} iterations each, 4 x 4 games)")
    for path in (DEMO, LONG):
        print(phase_table(path.name, run_training(path, args.iterations)))


def bench_update(rounds: int) -> None:
    """(a) and (d) on the sequences of one demo iteration."""
    backend, _, rollout = one_iteration(DEMO, {})
    samples = rollout.samples
    t = backend.config.train
    prompt_tokens = sum(len(s.prompt) for s in samples)
    completion_tokens = sum(len(s.completion) for s in samples)
    print(
        f"\n(a) update on one demo iteration's {len(samples)} sequences "
        f"({prompt_tokens} prompt + {completion_tokens} completion tokens, "
        f"{len({tuple(s.prompt) for s in samples})} distinct prompts), "
        f"LoRA on {backend.num_layers} of {len(backend.model.layers)} blocks"
    )
    sft_optimizer = optim.AdamW(learning_rate=t.learning_rate, weight_decay=t.weight_decay)
    sft_optimizer.init(backend.model.trainable_parameters())
    k3 = t.kl_estimator == "k3"
    few = samples[:2]
    update = measure(
        {
            "ours": lambda: backend.train_step(samples, t.beta, t.kl_estimator),
            "before": lambda: old_update(backend, samples, t.beta, k3),
            "mlx-lm SFT": lambda: sft_step(backend, samples, sft_optimizer),
        },
        rounds,
        {
            "ours": lambda: backend.train_step(few, t.beta, t.kl_estimator),
            "before": lambda: old_update(backend, few, t.beta, k3),
            "mlx-lm SFT": lambda: sft_step(backend, few, sft_optimizer),
        },
    )
    for name, r in update.items():
        print(f"  {name:<11} {r['seconds']:7.2f}s  peak {r['peak_gb']:.2f} GB")
    sft = update["mlx-lm SFT"]["seconds"]
    print(
        f"  ours / SFT step = {update['ours']['seconds'] / sft:.2f}x (goal <= 0.8x); "
        f"before / SFT step = {update['before']['seconds'] / sft:.2f}x"
    )
    print(
        f"  (d) peak memory ours / before = "
        f"{update['ours']['peak_gb'] / update['before']['peak_gb']:.2f}x"
    )


def bench_scoring(rounds: int) -> None:
    """(b) and (d): the self-judge of the longer-prompt preset vs that iteration's generation."""
    backend, _, rollout = one_iteration(LONG, {})
    judge = Judge(backend, mode="expected")
    queries = [g.query for g in rollout.games if getattr(g, "valid", True)]
    answers = [[a.text for a in g.answers] for g in rollout.games if getattr(g, "valid", True)]
    prompts = [judge.prompt(q, a) for q, group in zip(queries, answers) for a in group]
    digits = [backend.encode(str(k))[0] for k in range(8)]
    gen_prompts = [
        list(p)
        for p in dict.fromkeys(tuple(s.prompt) for s in rollout.samples if s.role == "solver")
    ]
    max_tokens = backend.config.game.answer_max_tokens
    group = game_group(rollout)
    print(
        f"\n(b) scoring: the self-judge of {LONG.name} on {len(prompts)} answers "
        f"(prompts {min(map(len, prompts))}-{max(map(len, prompts))} tokens) vs generating "
        f"{len(gen_prompts)} x {group} answers of <= {max_tokens} tokens"
    )
    scoring = measure(
        {
            "generate": lambda: backend.generate(
                gen_prompts, group, max_tokens, temperature=backend.config.game.temperature
            ),
            "judge ours": lambda: backend.next_token_logprobs(prompts, digits, adapter=False),
            "judge before": lambda: old_next_token(backend, prompts, digits),
        },
        rounds,
        {
            "generate": lambda: backend.generate(
                gen_prompts[:1], group, 4, temperature=backend.config.game.temperature
            ),
            "judge ours": lambda: backend.next_token_logprobs(prompts[:2], digits, adapter=False),
            "judge before": lambda: old_next_token(backend, prompts[:2], digits),
        },
    )
    for name, r in scoring.items():
        print(f"  {name:<12} {r['seconds']:7.2f}s  peak {r['peak_gb']:.2f} GB")
    gen = scoring["generate"]["seconds"]
    print(
        f"  scoring / generation: ours {scoring['judge ours']['seconds'] / gen:.2f}x "
        f"(goal <= 0.5x), before {scoring['judge before']['seconds'] / gen:.2f}x"
    )
    print(
        f"  (d) peak memory judge ours / before = "
        f"{scoring['judge ours']['peak_gb'] / scoring['judge before']['peak_gb']:.2f}x"
    )


def game_group(rollout: Any) -> int:
    return max(1, len(rollout.games[0].answers)) if rollout.games else 1


if __name__ == "__main__":
    main()

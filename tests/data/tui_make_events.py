"""Writes ``tests/data/tui_events.jsonl``: an invented 12-iteration LSP run with fixed numbers.

The TUI's edge-case tests read it (model text with markup, an invalid query, a warning, a
crash, a flood of events, a run stopped early); what a real run looks like is the recorded
one in ``tests/data/recorded_run`` (``record_run.py``). Nothing in it depends on the clock.
It is built from the real records (`Game`, `Answer`) and the metric names the trainer emits,
so a schema change shows up here as a failing test. Run ``python tests/data/tui_make_events.py`` to regenerate it after such a change.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

from lsp_mlx.records import Answer, Game

T0 = 1_700_000_000.0  # fixed start time (no clock in the data)
ITERATIONS = 12
TOTAL = 40  # run_start.iterations: the run "was" stopped early
N, G = 4, 4

QUERIES = [
    "Explain why the sky looks blue during the day but red at sunset, in two or three sentences.",
    "Write a haiku about a compiler that refuses to compile on a Friday afternoon.",
    "A train leaves at 9:40 and arrives at 13:05. How long is the journey in minutes?",
    "List three differences between a list and a tuple in Python, with one example each.",
    "What is the capital of Australia, and why is it not Sydney?",
    "Summarise the plot of Hamlet for a ten-year-old in at most 50 words.",
    "Give a recipe for pancakes that uses no eggs. Use [brackets] for optional items.",
    "Prove that the sum of two even integers is even.",
]
ANSWERS = [
    "Sunlight is scattered by air molecules, and shorter blue wavelengths scatter the most "
    "(Rayleigh scattering), so blue light reaches our eyes from all directions. At sunset the "
    "light crosses much more air, the blue is scattered away, and the reds and oranges remain.",
    "The sky is blue.",
    "Because of the ocean reflecting on it.",
    "Light scatters; at sunset the path is longer so red dominates.",
    "Tokens drift in cold rows / the build log scrolls like rain / weekend waits, unlinked",
    "205 minutes: from 9:40 to 12:40 is 180 minutes, plus 25 minutes to 13:05.",
    "3 hours 25 minutes.",
    "[bold]Canberra[/bold] is the capital; it was built as a compromise between Sydney and Melbourne.",
    "Sydney.",
    "Let a = 2m and b = 2n. Then a + b = 2m + 2n = 2(m + n), which is divisible by 2, so it is even.",
    "Mix 200 g flour, 300 ml milk, 1 tbsp sugar, 2 tsp baking powder, a pinch of salt "
    "[and vanilla]. Rest 10 minutes, then fry small ladles in a hot buttered pan, "
    "two minutes a side, until golden. " * 3,
]
METRIC_KEYS = [
    "reward/solver_mean", "reward/solver_std", "reward/challenger_mean", "reward/challenger_std",
    "self_reward/mean", "advantage/solver_abs_mean", "advantage/challenger_abs_mean", "kl",
    "loss", "loss/solver", "loss/challenger", "zero_variance_groups", "answer_tokens_mean",
    "tokens_per_sec", "time/generate", "time/score", "time/update", "time/iteration",
    "memory/peak_gb", "judge/unparsable", "grad_norm", "learning_rate",
]  # fmt: skip


def make_events() -> list[dict[str, Any]]:
    rng = random.Random(7)
    events: list[dict[str, Any]] = []
    now = T0

    def emit(type_: str, iteration: int | None = None, **fields: Any) -> None:
        event: dict[str, Any] = {"v": 1, "type": type_, "time": round(now, 3)}
        if iteration is not None:
            event["iteration"] = iteration
        event.update(fields)
        events.append(event)

    config = {
        "model": {
            "path": "/cache/lsp-mlx/SmolLM2-135M-Instruct",
            "base_model": "HuggingFaceTB/SmolLM2-135M-Instruct",
        },
        "game": {"name": "lsp", "num_queries": N, "group_size": G},
        "train": {"iterations": TOTAL, "learning_rate": 1e-5, "run_dir": "runs/demo"},
    }
    emit(
        "run_start",
        config=config,
        model="/cache/lsp-mlx/SmolLM2-135M-Instruct",
        base_model="HuggingFaceTB/SmolLM2-135M-Instruct",
        backend="mlx",
        device="cpu",
        blas="openblas",
        start_iteration=1,
        iterations=TOTAL,
        pid=999_999_999,  # no such process: the recorded run is over anyway
        resumed=False,
    )
    for it in range(1, ITERATIONS + 1):
        progress = it / ITERATIONS
        solver_rewards, challenger_rewards = [], []
        for index in range(N):
            now += 1.5
            query = QUERIES[(it * N + index) % len(QUERIES)]
            rewards = [
                round(min(max(rng.gauss(0.35 + 0.3 * progress, 0.2), 0.0), 1.0), 3)
                for _ in range(G)
            ]
            if it == 4 and index == 1:
                rewards = [0.5] * G  # a zero-variance group
            value = sum(rewards) / G
            answers = [
                Answer(
                    text=ANSWERS[(it + index * 3 + j) % len(ANSWERS)],
                    tokens=20 + 7 * j + it,
                    reward=r,
                    advantage=round(r - value, 4),
                    reward_parts={"reward": round(r * 0.6, 3), "self_reward": round(r * 0.4, 3)},
                    finish_reason="length" if j == 3 and it % 5 == 0 else "stop",
                )
                for j, r in enumerate(rewards)
            ]
            solver_rewards.append(value)
            challenger_rewards.append(-value)
            game = Game(
                iteration=it,
                index=index,
                game="lsp",
                query=query,
                query_tokens=len(query) // 4,
                answers=answers,
                value=round(value, 4),
                query_reward=round(-value, 4),
                query_advantage=0.0,
                valid=not (it == 7 and index == 2),
            )
            emit("game", **game.to_dict())
        mean_v = sum(solver_rewards) / N
        for event in events[-N:]:
            event["query_advantage"] = round(mean_v - event["value"], 4)
        now += 2.0
        metrics = {
            "reward/solver_mean": mean_v,
            "reward/solver_std": 0.2 - 0.05 * progress,
            "reward/challenger_mean": sum(challenger_rewards) / N,
            "reward/challenger_std": 0.1,
            "self_reward/mean": 0.3 + 0.35 * progress + 0.03 * rng.random(),
            "advantage/solver_abs_mean": 0.15,
            "advantage/challenger_abs_mean": 0.08,
            "kl": 0.002 * it + 0.001 * rng.random(),
            "loss": 0.9 - 0.6 * progress + 0.05 * rng.random(),
            "loss/solver": 0.6 - 0.4 * progress,
            "loss/challenger": 0.3 - 0.2 * progress,
            "zero_variance_groups": 0.25 if it == 4 else 0.0,
            "answer_tokens_mean": 40.0 + it,
            "tokens_per_sec": 180.0 + 10 * rng.random(),
            "time/generate": 5.2,
            "time/score": 2.1,
            "time/update": 0.9,
            "time/iteration": 8.2,
            "memory/peak_gb": 1.1 + 0.01 * it,
            "judge/unparsable": 0.0,
            "grad_norm": 0.5,
            "learning_rate": 1e-5,
        }
        assert sorted(metrics) == sorted(METRIC_KEYS)
        emit("metrics", it, metrics={k: round(v, 5) for k, v in metrics.items()})
        if it == 3:
            emit(
                "log",
                it,
                level="warning",
                message="judge output unparsable for 1 of 16 answers; scored 0",
            )
        if it % 5 == 0:
            now += 0.5
            emit("checkpoint", it, path=f"runs/demo/checkpoints/iter-{it:06d}", reason="periodic")
    now += 0.4
    emit("state", ITERATIONS, state="stopping")
    emit(
        "checkpoint",
        ITERATIONS,
        path=f"runs/demo/checkpoints/iter-{ITERATIONS:06d}",
        reason="control",
    )
    emit("run_end", ITERATIONS, status="stopped")
    return events


def write(path: Path) -> None:
    path.write_text("".join(json.dumps(e) + "\n" for e in make_events()))


if __name__ == "__main__":
    write(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("tui_events.jsonl"))

"""What a tracker receives for one iteration: metric names and the games table.

Where a quantity is the one TRL's GRPOTrainer logs, it goes under TRL's name, so a user
comparing an lsp-mlx run with a TRL run sees the same curve under the same name. Those are
computed from the iteration's ``game`` events (the Solver's answers), with TRL's
definitions: ``reward`` is the mean reward of all answers, ``reward_std`` the mean over the
groups of each group's standard deviation (Bessel-corrected, as torch's ``std``; TRL's
``std_grouped_rewards.mean()``), ``frac_reward_zero_std`` the share of groups whose rewards
are all equal, ``completions/*`` the answer lengths in tokens and
``completions/clipped_ratio`` the share that hit the token limit. ``loss``, ``kl``,
``grad_norm`` and ``learning_rate`` already carry TRL's names in the ``metrics`` event. Every
metric of the event is also logged under its own name (``reward/solver_mean``, ...) and the
self-play health checks under ``diagnostics/``. docs/tracking.md has the full table.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from lsp_mlx.records import Game

# The games table: one row per valid game of the iteration.
GAME_COLUMNS = [
    "iteration",
    "index",
    "game",
    "query",
    "best_answer",
    "best_reward",
    "best_advantage",
    "worst_answer",
    "worst_reward",
    "worst_advantage",
    "value",
    "query_reward",
    "query_advantage",
]


def _number(value: Any) -> float | None:
    """A plain float, the same live (numpy scalars) as read back from events.jsonl."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    return float(value)


def _std(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def trl_metrics(games: list[Game]) -> dict[str, float]:
    """TRL GRPOTrainer's reward and completion metrics over the Solver answers of ``games``."""
    groups = [g for g in games if g.valid and g.answers]
    answers = [a for g in groups for a in g.answers]
    if not answers:
        return {}
    rewards = [a.reward for a in answers]
    lengths = [float(a.tokens) for a in answers]
    terminated = [float(a.tokens) for a in answers if a.finish_reason != "length"]
    return {
        "reward": sum(rewards) / len(rewards),
        "reward_std": sum(_std(g.rewards) for g in groups) / len(groups),
        "frac_reward_zero_std": sum(max(g.rewards) - min(g.rewards) <= 1e-9 for g in groups)
        / len(groups),
        "completions/mean_length": sum(lengths) / len(lengths),
        "completions/min_length": min(lengths),
        "completions/max_length": max(lengths),
        "completions/clipped_ratio": 1.0 - len(terminated) / len(answers),
        "completions/mean_terminated_length": sum(terminated) / len(terminated)
        if terminated
        else 0.0,
    }


def iteration_scalars(metrics: dict[str, Any], games: list[Game]) -> dict[str, float]:
    """The scalars of one iteration: TRL's names first, then every metric under its own name."""
    scalars = trl_metrics(games)
    for name, value in metrics.items():
        number = _number(value)
        if number is not None and name not in scalars:
            scalars[name] = number
    return scalars


def diagnostics_scalars(diagnostics: dict[str, Any]) -> dict[str, float]:
    """The self-play health checks (docs/algorithms.md §4) under ``diagnostics/``."""
    return {
        f"diagnostics/{name}": number
        for name, value in diagnostics.items()
        if (number := _number(value)) is not None
    }


def game_rows(games: list[Game]) -> list[list[Any]]:
    """One row of `GAME_COLUMNS` per valid game: the query, its best and worst answer."""
    rows = []
    for g in games:
        best, worst = g.best(), g.worst()
        if not g.valid or best is None or worst is None:
            continue
        rows.append(
            [
                g.iteration,
                g.index,
                g.game,
                g.query,
                best.text,
                best.reward,
                best.advantage,
                worst.text,
                worst.reward,
                worst.advantage,
                g.value,
                g.query_reward,
                g.query_advantage,
            ]
        )
    return rows


def flat_config(config: dict[str, Any], prefix: str = "") -> dict[str, bool | int | float | str]:
    """``{"train": {"seed": 1}}`` -> ``{"train.seed": 1}``; lists and None become strings."""
    flat: dict[str, bool | int | float | str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flat_config(value, f"{name}."))
        elif isinstance(value, (bool, int, float, str)):
            flat[name] = value
        else:
            flat[name] = str(value)
    return flat

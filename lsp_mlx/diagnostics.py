"""Live self-play health checks (docs/algorithms.md §4): is the pipeline still producing learnable signal?

Self-play improves only while it yields information; it fails by proposer collapse (the
Challenger/Proposer repeats itself), solver saturation (everything solved, no gradient) and
rewards that stop varying. Every iteration the trainer calls ``Diagnostics.update(games)``,
emits the metrics as a ``diagnostics`` event and each warning as a ``log`` event.

Metrics (all floats; shares are in [0, 1]):

- ``zero_variance_share``: valid groups whose rewards are all equal (their advantages are 0).
- ``valid_share``: queries that could be parsed (the rest are masked out of the loss).
- ``solve_rate/mean`` and ``solve_rate/bin_<label>``: the distribution of per-query solve
  rates over 0, (0, .25], (.25, .5], (.5, .75], (.75, 1), 1; ``learnable_share``: the share
  strictly inside (0, 1), the band where a group has signal. The solve rate of a game is
  ``extra["solve_rate"]`` when the game knows it (SQLM) and otherwise its mean reward when
  the rewards lie in [0, 1]; games with neither are left out of these metrics.
- ``queries/distinct_1``, ``queries/distinct_2``: unique word 1-/2-grams over all of them;
  ``queries/near_duplicate_rate``: queries with a near-duplicate in the same iteration;
  ``queries/repeat_rate``: queries near-duplicating one of the previous ``window`` iterations.
- ``answers/tokens_mean``, ``answers/length_drift`` (mean length over the first iteration's),
  ``answers/truncated_share`` (answers that hit max tokens).

Warnings fire when a collapse pattern has held for ``patience`` iterations in a row, and
again only after it has cleared: the proposer repeats itself, the solver saturates, rewards
stop varying, answers run into the token limit.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

from lsp_mlx.records import Game
from lsp_mlx.verifiers.similarity import distinct_n, near_duplicate_rate, ngrams, words

BINS = [
    ("0", 0.0, 0.0),
    ("0-25", 0.0, 0.25),
    ("25-50", 0.25, 0.5),
    ("50-75", 0.5, 0.75),
    ("75-100", 0.75, 1.0),
    ("1", 1.0, 1.0),
]


def solve_rate(game: Game) -> float | None:
    """The game's own solve rate, else its mean reward when rewards lie in [0, 1], else None."""
    rate = game.extra.get("solve_rate") if isinstance(game.extra, dict) else None
    if isinstance(rate, (int, float)):
        return float(rate)
    rewards = game.rewards
    if rewards and all(0.0 <= r <= 1.0 for r in rewards):
        return sum(rewards) / len(rewards)
    return None


def _bin(rate: float) -> str:
    if rate <= 0.0:
        return "0"
    if rate >= 1.0:
        return "1"
    for label, _, hi in BINS[1:-1]:
        if rate <= hi:
            return label
    return "75-100"  # unreachable: rates in (0.75, 1) fall in the last inner bin above


def iteration_metrics(
    games: Sequence[Game], previous_queries: Iterable[str] = (), threshold: float = 0.5
) -> dict[str, float]:
    """The metrics of one iteration's games (see the module docstring); pure."""
    valid = [g for g in games if g.valid]
    metrics: dict[str, float] = {"valid_share": len(valid) / len(games) if games else 0.0}
    groups = [g.rewards for g in valid if g.answers]
    metrics["zero_variance_share"] = (
        sum(max(r) - min(r) <= 1e-9 for r in groups) / len(groups) if groups else 1.0
    )

    rates = [r for g in valid if (r := solve_rate(g)) is not None]
    if rates:
        metrics["solve_rate/mean"] = sum(rates) / len(rates)
        metrics["learnable_share"] = sum(0.0 < r < 1.0 for r in rates) / len(rates)
        for label, _, _ in BINS:
            metrics[f"solve_rate/bin_{label}"] = sum(_bin(r) == label for r in rates) / len(rates)

    queries = [g.query for g in valid if g.query]
    if queries:
        metrics["queries/distinct_1"] = distinct_n(queries, 1)
        metrics["queries/distinct_2"] = distinct_n(queries, 2)
        metrics["queries/near_duplicate_rate"] = near_duplicate_rate(queries, threshold)
        old = [ngrams(words(q), 2) for q in previous_queries]
        if old:
            repeats = 0
            for q in queries:
                grams = ngrams(words(q), 2)
                if any(_jaccard(grams, o) >= threshold for o in old):
                    repeats += 1
            metrics["queries/repeat_rate"] = repeats / len(queries)

    answers = [a for g in valid for a in g.answers]
    if answers:
        metrics["answers/tokens_mean"] = sum(a.tokens for a in answers) / len(answers)
        metrics["answers/truncated_share"] = sum(
            a.finish_reason == "length" for a in answers
        ) / len(answers)
    return metrics


def _jaccard(a: set[tuple[str, ...]], b: set[tuple[str, ...]]) -> float:
    return len(a & b) / len(a | b) if (a or b) else 1.0


# pattern name -> (test on the metrics, message); a missing metric never triggers
PATTERNS: dict[str, tuple[Any, str]] = {
    "proposer_repeats": (
        lambda m: (
            m.get("queries/near_duplicate_rate", 0.0) >= 0.5
            or m.get("queries/repeat_rate", 0.0) >= 0.5
        ),
        "proposer collapse: the Challenger/Proposer keeps writing near-duplicate queries "
        "(near-duplicate {queries/near_duplicate_rate:.0%}, repeats {queries/repeat_rate:.0%}); "
        "raise the temperature or the Challenger's KL (train.beta), or use sqlm.proposer_reward r-zero",
    ),
    "solver_saturates": (
        lambda m: m.get("solve_rate/bin_1", 0.0) >= 0.8,
        "solver saturation: {solve_rate/bin_1:.0%} of queries are solved by every answer, so they carry no "
        "gradient; make the task harder or reward the Proposer for difficulty",
    ),
    "rewards_flat": (
        lambda m: m.get("zero_variance_share", 0.0) >= 0.8,
        "rewards stopped varying: {zero_variance_share:.0%} of groups have equal rewards (zero advantage); "
        "check the reward source, raise game.group_size or the temperature",
    ),
    "answers_truncated": (
        lambda m: m.get("answers/truncated_share", 0.0) >= 0.8,
        "{answers/truncated_share:.0%} of answers hit game.answer_max_tokens; raise it or check for rambling",
    ),
}


class _Defaults(dict):  # format_map helper: a metric a pattern does not use prints as 0
    def __missing__(self, key: str) -> float:
        return 0.0


class Diagnostics:
    """Stateful over a run: keeps recent queries, the first answer length and pattern streaks."""

    def __init__(self, patience: int = 3, window: int = 5, threshold: float = 0.5) -> None:
        self.patience = patience
        self.threshold = threshold
        self._recent: deque[list[str]] = deque(maxlen=window)
        self._first_length: float | None = None
        self._streak = dict.fromkeys(PATTERNS, 0)

    def update(self, games: list[Game]) -> tuple[dict[str, float], list[str]]:
        previous = [q for queries in self._recent for q in queries]
        metrics = iteration_metrics(games, previous, self.threshold)
        self._recent.append([g.query for g in games if g.valid and g.query])
        length = metrics.get("answers/tokens_mean")
        if length is not None:
            if self._first_length is None and length > 0:
                self._first_length = length
            if self._first_length:
                metrics["answers/length_drift"] = length / self._first_length
        warnings = []
        for name, (test, message) in PATTERNS.items():
            if test(metrics):
                self._streak[name] += 1
                if self._streak[name] == self.patience:
                    warnings.append(
                        message.format_map(_Defaults(metrics))
                        + f" (for {self.patience} iterations)"
                    )
            else:
                self._streak[name] = 0
        for name, streak in self._streak.items():
            metrics[f"streak/{name}"] = float(streak)
        return metrics, warnings


def compute(
    games_history: Sequence[Sequence[Game]] | Sequence[Game], patience: int = 3
) -> dict[str, Any]:
    """Replay a whole history (a list of iterations' games, or a flat list grouped by
    ``Game.iteration``) and return ``{"metrics": <last iteration's>, "warnings": [...all...]}``."""
    if games_history and isinstance(games_history[0], Game):
        by_iter: dict[int, list[Game]] = {}
        for g in games_history:  # type: ignore[assignment]
            by_iter.setdefault(g.iteration, []).append(g)  # type: ignore[union-attr]
        iterations = [by_iter[k] for k in sorted(by_iter)]
    else:
        iterations = [list(it) for it in games_history]  # type: ignore[arg-type]
    diag = Diagnostics(patience=patience)
    metrics: dict[str, float] = {}
    warnings: list[str] = []
    for games in iterations:
        metrics, new = diag.update(games)
        warnings.extend(new)
    return {"metrics": metrics, "warnings": warnings}

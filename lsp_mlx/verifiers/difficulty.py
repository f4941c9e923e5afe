"""SQLM reward math as pure functions (docs/algorithms.md §2): majority vote, Solver and Proposer rewards.

The Solver is rewarded for agreeing with the majority of its own group (no labels), or, when
a verifier knows the truth, for being right. The Proposer is rewarded for problems of the
right difficulty; four rules are offered:

- ``band`` (the paper): 1 if ``0 < a < n``, where a is the number of answers equal to the
  majority (or correct, with a verifier); neither trivial nor hopeless.
- ``band-official`` (the official code): as ``band`` but also needs ``a >= 2``.
- ``r-zero`` (R-Zero): ``max(0, 1 - 2|p - 1/2| - lambda * |C| / B)`` with p = a / n and |C|
  the size of the problem's near-duplicate cluster in the batch of B problems.
- ``absolute-zero`` (Absolute Zero): ``1 - p`` when ``0 < p < 1``, else 0.

Rewards become advantages in `lsp_mlx.games.advantages`, the one rule every game uses.
"""

from __future__ import annotations

from collections import Counter

from lsp_mlx.verifiers.similarity import clusters

PROPOSER_REWARDS = ("band", "band-official", "r-zero", "absolute-zero")


def majority_vote(answers: list[str | None]) -> tuple[str | None, int]:
    """The most common parsed answer and how many answers equal it.

    Unparsed answers (None) never win; ties go to the answer seen first, so the vote is
    deterministic. With no parsed answer at all the majority is None and the count 0.
    """
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return None, 0
    best = max(counts.values())
    for a in answers:  # first seen among the tied
        if a is not None and counts[a] == best:
            return a, best
    raise AssertionError("unreachable")


def solver_rewards_majority(answers: list[str | None], majority: str | None) -> list[float]:
    """1 for each answer equal to the majority, else 0 (all 0 when there is no majority)."""
    return [1.0 if majority is not None and a == majority else 0.0 for a in answers]


def proposer_reward(
    agree: int,
    n: int,
    rule: str = "band",
    cluster_share: float = 0.0,
    repetition_weight: float = 1.0,
) -> float:
    """Difficulty reward of one problem from ``agree`` successes (majority matches or correct
    answers) among ``n`` answers. ``cluster_share`` is |C|/B for ``r-zero``."""
    if n <= 0:
        raise ValueError("n must be >= 1")
    if not 0 <= agree <= n:
        raise ValueError(f"agree must be in [0, {n}], got {agree}")
    p = agree / n
    if rule == "band":
        return 1.0 if 0 < agree < n else 0.0
    if rule == "band-official":
        return 1.0 if 2 <= agree < n else 0.0
    if rule == "r-zero":
        return max(0.0, 1.0 - 2.0 * abs(p - 0.5) - repetition_weight * cluster_share)
    if rule == "absolute-zero":
        return 1.0 - p if 0 < agree < n else 0.0
    raise ValueError(f"unknown proposer reward {rule!r}; known: {', '.join(PROPOSER_REWARDS)}")


def cluster_shares(problems: list[str], threshold: float = 0.5) -> list[float]:
    """|C|/B for each problem: the share of the batch in its near-duplicate cluster (R-Zero)."""
    if not problems:
        return []
    ids = clusters(problems, threshold)
    sizes = Counter(ids)
    return [sizes[c] / len(problems) for c in ids]

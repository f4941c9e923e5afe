"""Confidence intervals for evaluation results (95% by default, z = 1.96).

- Accuracy of one model: the Wilson score interval, which stays inside [0, 1] and is honest
  for small n and for accuracies near 0 or 1 (the normal interval is not).
- Difference of two models' accuracies on the **same** problems: the paired normal interval
  on the per-problem differences ``d_i = correct_adapter_i - correct_base_i``; pairing
  removes the problem-difficulty variance both models share, so it is the right (and
  tighter) interval for before/after comparisons.
- Pairwise win rate: each prompt scores 1 (the adapter wins in both orders), 0.5 (split or
  tie) or 0; the normal interval on the mean of those per-prompt scores.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

Z95 = 1.959963984540054


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float
    n: int

    def excludes(self, value: float) -> bool:
        return not (self.low <= value <= self.high)

    def to_dict(self) -> dict[str, float]:
        return {"estimate": self.estimate, "ci_low": self.low, "ci_high": self.high, "n": self.n}

    def __str__(self) -> str:
        return f"{self.estimate:.3f} [{self.low:.3f}, {self.high:.3f}]"


def wilson_interval(successes: int, n: int, z: float = Z95) -> Interval:
    """Wilson score interval of a proportion ``successes / n``."""
    if n <= 0:
        return Interval(0.0, 0.0, 1.0, 0)
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in [0, {n}], got {successes}")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half), n)


def mean_interval(
    values: Sequence[float], z: float = Z95, clip: tuple[float, float] | None = None
) -> Interval:
    """Normal interval of a mean, ``mean +- z * s / sqrt(n)`` with the sample std s (ddof 1)."""
    n = len(values)
    if n == 0:
        return Interval(0.0, clip[0] if clip else -math.inf, clip[1] if clip else math.inf, 0)
    m = sum(values) / n
    var = sum((v - m) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    half = z * math.sqrt(var / n)
    low, high = m - half, m + half
    if clip:
        low, high = max(clip[0], low), min(clip[1], high)
    return Interval(m, low, high, n)


def paired_difference(
    after: Sequence[bool | float], before: Sequence[bool | float], z: float = Z95
) -> Interval:
    """Mean of ``after_i - before_i`` over the same items, with its paired normal interval."""
    if len(after) != len(before):
        raise ValueError(f"paired results differ in length: {len(after)} vs {len(before)}")
    return mean_interval([float(a) - float(b) for a, b in zip(after, before)], z, clip=(-1.0, 1.0))


def pair_outcome(adapter_first: float, adapter_second: float) -> float:
    """Per-prompt win score from the two orders, each 1 (adapter better), 0.5 (tie) or 0.

    The average of the two judgements: a win in both orders is 1, a position-biased judge
    that always picks the first answer gives 1 and 0, i.e. 0.5, a tie.
    """
    return (adapter_first + adapter_second) / 2


def win_rate(outcomes: Sequence[float], z: float = Z95) -> Interval:
    """Mean per-prompt win score (see `pair_outcome`) with its normal interval, clipped to [0, 1]."""
    return mean_interval(list(outcomes), z, clip=(0.0, 1.0))

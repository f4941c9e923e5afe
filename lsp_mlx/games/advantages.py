"""Advantages of the self-play games, as pure functions on plain lists (ALGORITHMS.md §1).

LSP centres rewards on the group mean and does **not** divide by the standard deviation
(unlike GRPO): ``A_Sol(i,j) = R(q_i, a_i^j) - V(q_i)`` with ``V(q_i) = mean_j R(q_i, a_i^j)``,
and the Challenger's advantage is its reward minus the batch mean of Challenger rewards,
which for LSP-Zero (reward ``-V(q_i)``) is ``Vbar - V(q_i)``.
"""

from __future__ import annotations

from collections.abc import Sequence


def mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


def std(xs: Sequence[float]) -> float:
    if len(xs) < 2:
        return 0.0
    m = mean(xs)
    return (sum((x - m) ** 2 for x in xs) / len(xs)) ** 0.5


def group_values(rewards: Sequence[Sequence[float]]) -> list[float]:
    """V(q_i) = mean_j R(q_i, a_i^j) for every group."""
    return [mean(group) for group in rewards]


def solver_advantages(rewards: Sequence[Sequence[float]]) -> list[list[float]]:
    """A_Sol(i,j) = R_ij - V(q_i): mean-centred within each group, no std division."""
    return [[r - mean(group) for r in group] for group in rewards]


def challenger_rewards(
    values: Sequence[float], self_values: Sequence[float] | None = None
) -> list[float]:
    """LSP-Zero: -V(q_i). LSP: -V(q_i) + V_Q(q_i), with V_Q the mean self-reward of the group."""
    if self_values is None:
        return [-v for v in values]
    return [-v + vq for v, vq in zip(values, self_values)]


def challenger_advantages(rewards: Sequence[float]) -> list[float]:
    """A_Ch(i) = r_i - mean_k r_k; for r = -V this is Vbar - V(q_i)."""
    m = mean(rewards)
    return [r - m for r in rewards]


def zero_variance(group: Sequence[float], eps: float = 1e-9) -> bool:
    """True when all rewards of a group are equal: its advantages are all zero (no signal)."""
    return max(group) - min(group) <= eps if group else True

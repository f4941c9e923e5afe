"""Rewards to advantages for every game, as pure functions on plain lists.

One rule serves all games (docs/algorithms.md §1, §2): a group's advantages are its rewards
centred on the group mean, and divided by the group's population std (+ eps) where the game
asks for it (GRPO, SQLM's default); a group whose rewards are all equal gets exactly 0.

- LSP (§1) centres without the std: ``A_Sol(i,j) = R(q_i, a_i^j) - V(q_i)`` with
  ``V(q_i) = mean_j R(q_i, a_i^j)``; the Challenger's advantage is its reward minus the batch
  mean, which for LSP-Zero (reward ``-V(q_i)``) is ``Vbar - V(q_i)``.
- SQLM (§2) applies the same rule, with the std by default, to each Solver group and to the
  batch of Proposer rewards.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


def std(xs: Sequence[float]) -> float:
    """Population standard deviation (0 for fewer than two values)."""
    if len(xs) < 2:
        return 0.0
    m = mean(xs)
    return (sum((x - m) ** 2 for x in xs) / len(xs)) ** 0.5


def group_values(rewards: Sequence[Sequence[float]]) -> list[float]:
    """V(q_i) = mean_j R(q_i, a_i^j) for every group."""
    return [mean(group) for group in rewards]


def group_advantages(
    rewards: Sequence[float], normalize_std: bool = False, eps: float = 1e-4
) -> list[float]:
    """``r - mean`` for each reward of one group, divided by ``std + eps`` with
    ``normalize_std``; all exactly 0 for a group without variance (it carries no signal)."""
    if not rewards:
        return []
    m = sum(rewards) / len(rewards)
    centred = [r - m for r in rewards]
    sd = math.sqrt(sum(c * c for c in centred) / len(rewards))
    if sd < 1e-12:
        return [0.0] * len(rewards)
    return [c / (sd + eps) for c in centred] if normalize_std else centred


def challenger_rewards(
    values: Sequence[float], self_values: Sequence[float] | None = None
) -> list[float]:
    """LSP's Challenger reward: LSP-Zero ``-V(q_i)``; LSP ``-V(q_i) + V_Q(q_i)``, with V_Q the
    group's mean self-reward."""
    if self_values is None:
        return [-v for v in values]
    return [-v + vq for v, vq in zip(values, self_values)]


def zero_variance(group: Sequence[float], eps: float = 1e-9) -> bool:
    """True when all rewards of a group are equal: its advantages are all zero (no signal)."""
    return max(group) - min(group) <= eps if group else True

"""Advantages against hand-computed values (docs/algorithms.md §1): no model needed."""

import pytest

from lsp_mlx.games.advantages import (
    challenger_rewards,
    group_advantages,
    group_values,
    zero_variance,
)


def test_solver_advantages_are_group_centred_without_std_division():
    rewards = [[1.0, 0.0, 0.5, 0.5], [2.0, 2.0, 2.0, 6.0]]
    assert group_values(rewards) == [0.5, 3.0]
    # GRPO would divide by the std (0.3536 and 1.732); LSP does not
    assert [group_advantages(g) for g in rewards] == [
        [0.5, -0.5, 0.0, 0.0],
        [-1.0, -1.0, -1.0, 3.0],
    ]


def test_lsp_zero_challenger_advantage_is_vbar_minus_v():
    values = [0.5, 3.0, 1.0]  # Vbar = 1.5
    rewards = challenger_rewards(values)
    assert rewards == [-0.5, -3.0, -1.0]
    assert group_advantages(rewards) == pytest.approx([1.0, -1.5, 0.5])


def test_lsp_challenger_reward_adds_mean_self_reward():
    values, self_values = [0.5, 3.0], [0.25, 1.0]
    rewards = challenger_rewards(values, self_values)
    assert rewards == [-0.25, -2.0]
    assert group_advantages(rewards) == pytest.approx([0.875, -0.875])


def test_zero_variance_groups():
    assert zero_variance([1.0, 1.0, 1.0])
    assert not zero_variance([1.0, 1.0, 0.0])
    assert group_advantages([0.1, 0.1, 0.1]) == [0.0, 0.0, 0.0]  # exactly 0, not rounding noise

"""SQLM's reward math (docs/algorithms.md §2) as pure functions."""

from __future__ import annotations

import math

import pytest

from lsp_mlx.games.advantages import group_advantages
from lsp_mlx.verifiers.difficulty import (
    cluster_shares,
    majority_vote,
    proposer_reward,
    solver_rewards_majority,
)


def test_majority_vote_ignores_unparsed_and_breaks_ties_by_first_seen():
    assert majority_vote(["4", None, "4", "5"]) == ("4", 2)
    assert majority_vote(["5", "4", "4", "5"]) == ("5", 2)
    assert majority_vote([None, None]) == (None, 0)
    assert majority_vote([]) == (None, 0)


def test_solver_reward_is_agreement_with_the_majority():
    assert solver_rewards_majority(["4", None, "4", "5"], "4") == [1.0, 0.0, 1.0, 0.0]
    assert solver_rewards_majority([None, None], None) == [0.0, 0.0]  # no majority: all 0


@pytest.mark.parametrize(
    ("agree", "paper", "official"),
    [(0, 0.0, 0.0), (1, 1.0, 0.0), (2, 1.0, 1.0), (3, 1.0, 1.0), (4, 0.0, 0.0)],
)
def test_band_rules(agree: int, paper: float, official: float):
    assert proposer_reward(agree, 4, "band") == paper
    assert proposer_reward(agree, 4, "band-official") == official


def test_r_zero_uncertainty_and_repetition_penalty():
    assert proposer_reward(2, 4, "r-zero") == 1.0  # p = 1/2: most uncertain
    assert proposer_reward(4, 4, "r-zero") == 0.0
    assert math.isclose(proposer_reward(1, 4, "r-zero"), 0.5)
    assert math.isclose(proposer_reward(2, 4, "r-zero", cluster_share=0.25), 0.75)
    assert proposer_reward(1, 4, "r-zero", cluster_share=1.0) == 0.0  # never negative


def test_absolute_zero():
    assert proposer_reward(1, 4, "absolute-zero") == 0.75
    assert proposer_reward(0, 4, "absolute-zero") == 0.0
    assert proposer_reward(4, 4, "absolute-zero") == 0.0
    assert math.isclose(proposer_reward(2.5, 4, "absolute-zero"), 0.375)  # summed pass fractions


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown proposer reward"):
        proposer_reward(1, 4, "nope")
    with pytest.raises(ValueError):
        proposer_reward(5, 4)


def test_cluster_shares_of_near_duplicates():
    problems = [
        "What is 12 + 7?",
        "What is 12 + 7 ?",
        "Compute the product of 3 and 9.",
        "Name a prime.",
    ]
    shares = cluster_shares(problems, threshold=0.5)
    assert shares[0] == shares[1] == 0.5 and shares[2] == shares[3] == 0.25
    assert cluster_shares([]) == []


def test_group_advantages_grpo_and_centred():
    adv = group_advantages([1.0, 0.0, 0.0, 1.0], normalize_std=True)
    assert all(math.isclose(abs(a), 1.0, rel_tol=1e-3) for a in adv) and math.isclose(
        sum(adv), 0.0, abs_tol=1e-12
    )
    assert group_advantages([1.0, 0.0, 0.0, 1.0], normalize_std=False) == [0.5, -0.5, -0.5, 0.5]
    assert group_advantages([1.0, 1.0, 1.0], normalize_std=True) == [0.0, 0.0, 0.0]
    assert group_advantages([]) == []

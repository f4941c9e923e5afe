"""Confidence intervals and the held-out set (pure; checked against known values)."""

from __future__ import annotations

import math
import random

import pytest

from lsp_mlx.evaluation.heldout import LEVELS, grade, make_arithmetic_set
from lsp_mlx.evaluation.stats import (
    mean_interval,
    pair_outcome,
    paired_difference,
    wilson_interval,
    win_rate,
)


def test_wilson_interval_known_values():
    # 8/10 -> [0.490, 0.943] (Wilson 1927; e.g. Agresti & Coull 1998, Table 1 style check)
    ci = wilson_interval(8, 10)
    assert math.isclose(ci.low, 0.4902, abs_tol=5e-4) and math.isclose(
        ci.high, 0.9433, abs_tol=5e-4
    )
    assert wilson_interval(0, 20).low == 0.0 and wilson_interval(0, 20).high > 0.1
    assert wilson_interval(20, 20).high == 1.0
    assert wilson_interval(0, 0).n == 0
    with pytest.raises(ValueError):
        wilson_interval(11, 10)


def test_wilson_interval_covers_the_truth_about_95_percent():
    rng = random.Random(0)
    covered = 0
    for _ in range(2000):
        k = sum(rng.random() < 0.3 for _ in range(50))
        ci = wilson_interval(k, 50)
        covered += ci.low <= 0.3 <= ci.high
    assert 0.92 < covered / 2000 < 0.98


def test_paired_difference():
    before = [True] * 50 + [False] * 50
    after = [True] * 60 + [False] * 40  # 10 more right, none lost
    d = paired_difference(after, before)
    assert math.isclose(d.estimate, 0.1)
    assert d.excludes(0.0) and d.low > 0
    same = paired_difference(before, before)
    assert same.estimate == 0 and not same.excludes(0.0)
    with pytest.raises(ValueError):
        paired_difference([True], [True, False])


def test_mean_interval_matches_the_formula():
    values = [1.0, 2.0, 3.0, 4.0]
    ci = mean_interval(values)
    half = 1.959963984540054 * math.sqrt((5 / 3) / 4)
    assert math.isclose(ci.low, 2.5 - half) and math.isclose(ci.high, 2.5 + half)


def test_win_rate_cancels_position_bias():
    # a judge that always prefers the first answer: adapter wins when first, loses when second
    assert pair_outcome(1.0, 0.0) == 0.5
    outcomes = [pair_outcome(1.0, 1.0)] * 30 + [pair_outcome(1.0, 0.0)] * 10
    wr = win_rate(outcomes)
    assert math.isclose(wr.estimate, 35 / 40) and wr.high <= 1.0 and wr.excludes(0.5)


def test_heldout_set_is_deterministic_distinct_and_correct():
    a = make_arithmetic_set(seed=5, per_level=30)
    assert a == make_arithmetic_set(seed=5, per_level=30)
    assert a != make_arithmetic_set(seed=6, per_level=30)
    assert len(a) == 30 * 4 and len({p.question for p in a}) == len(a)
    graded = grade(a, [f"Answer: {p.answer}" for p in a])
    assert all(g.correct for g in graded)
    assert not any(g.correct for g in grade(a, [f"Answer: {p.answer + 1}" for p in a]))
    assert set(LEVELS) >= {"add1", "add2", "sub2", "mul1"}
    with pytest.raises(ValueError, match="unknown level"):
        make_arithmetic_set(levels=["nope"])

"""Self-play diagnostics over real `Game` records (no model needed: they are plain data)."""

from __future__ import annotations

import math

from lsp_mlx.diagnostics import Diagnostics, compute, iteration_metrics, solve_rate
from lsp_mlx.records import Answer, Game


def game(
    query: str,
    rewards: list[float],
    iteration: int = 1,
    tokens: int = 10,
    valid: bool = True,
    **extra,
) -> Game:
    answers = [
        Answer(text="a", tokens=tokens, reward=r, advantage=0.0, finish_reason="stop")
        for r in rewards
    ]
    return Game(
        iteration=iteration,
        index=0,
        game="sqlm",
        query=query,
        query_tokens=5,
        answers=answers if valid else [],
        value=sum(rewards) / max(len(rewards), 1),
        query_reward=0.0,
        query_advantage=0.0,
        valid=valid,
        extra=dict(extra),
    )


QUERIES = [
    "What is 12 + 7?",
    "Name the capital of France.",
    "Sort the list 3 1 2.",
    "Explain photosynthesis briefly.",
]


def test_zero_variance_and_solve_rate_distribution():
    games = [
        game(QUERIES[0], [1, 1, 1, 1]),
        game(QUERIES[1], [0, 0, 0, 0]),
        game(QUERIES[2], [1, 0, 0, 0]),
        game(QUERIES[3], [1, 1, 1, 0]),
        game("garbage", [], valid=False),
    ]
    m = iteration_metrics(games)
    assert m["valid_share"] == 0.8
    assert m["zero_variance_share"] == 0.5
    assert m["learnable_share"] == 0.5
    # bins are (lo, hi]: 0.25 falls in 0-25 and 0.75 in 50-75
    assert (
        m["solve_rate/bin_1"]
        == m["solve_rate/bin_0"]
        == m["solve_rate/bin_0-25"]
        == m["solve_rate/bin_50-75"]
        == 0.25
    )
    assert m["solve_rate/bin_25-50"] == m["solve_rate/bin_75-100"] == 0.0
    assert math.isclose(m["solve_rate/mean"], (1 + 0 + 0.25 + 0.75) / 4)


def test_solve_rate_prefers_the_games_own_and_skips_unbounded_rewards():
    assert solve_rate(game("q", [1, 0], solve_rate=0.9)) == 0.9
    assert solve_rate(game("q", [1, 0])) == 0.5
    assert solve_rate(game("q", [3.5, -2.0])) is None  # a reward model's scores are not rates
    assert "solve_rate/mean" not in iteration_metrics([game("q", [3.5, -2.0])])


def test_diversity_metrics():
    same = [game("What is 12 + 7?", [1, 0]) for _ in range(4)]
    m_same = iteration_metrics(same)
    m_diverse = iteration_metrics([game(q, [1, 0]) for q in QUERIES])
    assert (
        m_same["queries/near_duplicate_rate"] == 1.0
        and m_diverse["queries/near_duplicate_rate"] == 0.0
    )
    assert m_same["queries/distinct_2"] < 0.3 < m_diverse["queries/distinct_2"]
    repeat = iteration_metrics([game(QUERIES[0], [1, 0])], previous_queries=[QUERIES[0]])
    assert repeat["queries/repeat_rate"] == 1.0


def test_length_drift_and_truncation():
    d = Diagnostics()
    d.update([game(QUERIES[0], [1, 0], tokens=10)])
    m, _ = d.update([game(QUERIES[1], [1, 0], tokens=25)])
    assert m["answers/length_drift"] == 2.5
    g = game(QUERIES[0], [1, 0])
    for a in g.answers:
        a.finish_reason = "length"
    assert iteration_metrics([g])["answers/truncated_share"] == 1.0


def test_warnings_fire_once_after_patience_and_rearm():
    d = Diagnostics(patience=3)
    collapsed = [game("What is 12 + 7?", [1, 1, 1, 1]) for _ in range(4)]
    healthy = [game(q, [1, 0, 0, 1]) for q in QUERIES]
    fired = [d.update(collapsed)[1] for _ in range(5)]
    assert [len(w) for w in fired[:2]] == [0, 0]
    text = " ".join(fired[2])
    assert (
        "proposer collapse" in text
        and "solver saturation" in text
        and "rewards stopped varying" in text
    )
    assert fired[3] == fired[4] == []  # no repeat while the pattern holds
    metrics, warnings = d.update(healthy)
    assert warnings == [] and metrics["streak/solver_saturates"] == 0.0
    assert [len(d.update(collapsed)[1]) for _ in range(3)][-1] >= 3  # fires again after clearing


def test_compute_replays_a_history():
    history = [[game(QUERIES[0], [1, 1], iteration=i)] for i in range(1, 5)]
    out = compute(history, patience=2)
    assert out["metrics"]["zero_variance_share"] == 1.0
    assert any("rewards stopped varying" in w for w in out["warnings"])
    flat = [g for it in history for g in it]
    assert compute(flat, patience=2)["warnings"] == out["warnings"]
    assert compute([]) == {"metrics": {}, "warnings": []}

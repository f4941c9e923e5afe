"""What the trackers get for one iteration, on games whose numbers are worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lsp_mlx.records import Answer, Game
from lsp_mlx.tracking.names import (
    GAME_COLUMNS,
    diagnostics_scalars,
    flat_config,
    game_rows,
    iteration_scalars,
    trl_metrics,
)


def game(index: int, rewards: list[float], tokens: list[int], finish: list[str]) -> Game:
    answers = [
        Answer(text=f"a{index}{k}", tokens=t, reward=r, advantage=r - sum(rewards) / len(rewards),
               finish_reason=f)
        for k, (r, t, f) in enumerate(zip(rewards, tokens, finish))
    ]  # fmt: skip
    return Game(iteration=3, index=index, game="sqlm", query=f"q{index}", query_tokens=4,
                answers=answers, value=sum(rewards) / len(rewards), query_reward=0.5,
                query_advantage=0.25)  # fmt: skip


GAMES = [
    game(0, [1.0, 0.0, 1.0, 0.0], [10, 20, 30, 40], ["stop", "length", "stop", "length"]),
    game(1, [1.0, 1.0, 1.0, 1.0], [5, 5, 5, 5], ["stop"] * 4),
    Game(iteration=3, index=2, game="sqlm", query="unparsable", query_tokens=9, answers=[],
         value=0.0, query_reward=0.0, query_advantage=0.0, valid=False),
]  # fmt: skip


def test_trl_metrics_follow_trls_definitions() -> None:
    m = trl_metrics(GAMES)
    assert m["reward"] == pytest.approx(6 / 8)
    # group 0: Bessel std of [1, 0, 1, 0] = sqrt(1/3); group 1: 0
    assert m["reward_std"] == pytest.approx(math.sqrt(1 / 3) / 2)
    assert m["frac_reward_zero_std"] == 0.5
    assert m["completions/mean_length"] == pytest.approx(120 / 8)
    assert (m["completions/min_length"], m["completions/max_length"]) == (5.0, 40.0)
    assert m["completions/clipped_ratio"] == pytest.approx(2 / 8)
    assert m["completions/mean_terminated_length"] == pytest.approx((10 + 30 + 20) / 6)
    assert trl_metrics([GAMES[2]]) == {}


def test_iteration_scalars_keep_every_number_once_as_a_float() -> None:
    metrics = {"loss": np.float32(0.5), "kl": 0.01, "reward": 99.0, "note": "text", "flag": True}
    scalars = iteration_scalars(metrics, GAMES)
    assert scalars["loss"] == 0.5 and type(scalars["loss"]) is float
    assert scalars["reward"] == pytest.approx(6 / 8)  # TRL's, from the games, wins the name
    assert "note" not in scalars and "flag" not in scalars
    assert diagnostics_scalars({"valid_share": 1, "label": "x"}) == {"diagnostics/valid_share": 1.0}


def test_game_rows_hold_the_best_and_worst_answer_of_valid_games() -> None:
    rows = game_rows(GAMES)
    assert len(rows) == 2 and all(len(r) == len(GAME_COLUMNS) for r in rows)
    row = dict(zip(GAME_COLUMNS, rows[0]))
    assert (row["best_answer"], row["best_reward"]) == ("a00", 1.0)
    assert (row["worst_answer"], row["worst_reward"]) == ("a01", 0.0)
    assert (row["query_reward"], row["query_advantage"]) == (0.5, 0.25)


def test_flat_config_names_nested_keys_with_dots() -> None:
    flat = flat_config({"train": {"seed": 1, "report_to": ["wandb"], "run_name": None}})
    assert flat == {"train.seed": 1, "train.report_to": "['wandb']", "train.run_name": "None"}

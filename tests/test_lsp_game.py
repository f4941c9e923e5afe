"""LSP's query prefix (docs/algorithms.md §1.3) on the tiny real model, and the rename of the
SQLM-only key it replaces."""

from __future__ import annotations

import dataclasses

import pytest

from lsp_mlx import config as cfg
from lsp_mlx.distributed import World
from lsp_mlx.games import make_game
from lsp_mlx.games.prompts import QUERY_START, parse_query


@pytest.mark.parametrize(
    ("completion", "prefix", "expected"),
    [
        (" 3 + 4?</input>", "What is", ("What is 3 + 4?", True)),
        (" 3 + 4?", "What is", ("What is 3 + 4?", False)),
        ("</input>", "What is", ("", False)),
        ("   \n</input>", "What is", ("", False)),
        ("Name a colour.</input>", "", ("Name a colour.", True)),
    ],
)
def test_a_query_is_the_prefix_and_what_the_challenger_wrote(completion, prefix, expected):
    assert parse_query(completion, prefix) == expected


def test_the_prefix_ends_the_challenger_prompt_and_starts_every_query(tiny_config, tiny_backend):
    game_config = dataclasses.replace(
        tiny_config.game, name="lsp-zero", query_prefix="What is ", num_queries=3
    )
    config = dataclasses.replace(tiny_config, game=game_config)
    game = make_game(config, tiny_backend, World())
    tiny_backend.seed(0)
    rollout = game.play(tiny_backend, iteration=1)
    challenger = [s for s in rollout.samples if s.role == "challenger"]
    expected_end = tiny_backend.encode(QUERY_START + "What is")  # the trailing space dropped
    assert all(s.prompt[-len(expected_end) :] == expected_end for s in challenger)
    valid = [g for g in rollout.games if g.valid]
    assert len(rollout.games) == 3
    assert valid and all(g.query.startswith("What is") and g.query != "What is" for g in valid)


def test_the_sqlm_key_is_read_as_the_shared_one(capsys):
    config = cfg.load(None, {"sqlm.problem_prefix": "What is", "game.name": "sqlm"})
    assert config.game.query_prefix == "What is"
    with pytest.raises(cfg.ConfigError, match="both set"):
        cfg.load(None, {"sqlm.problem_prefix": "a", "game.query_prefix": "b"})


def test_a_query_the_reward_cannot_score_is_masked_out_of_both_losses(
    tiny_config, tiny_backend, tmp_path, monkeypatch
):
    """The tiny model writes bytes, never arithmetic: with the exact verifier as R every query
    is unscorable, so nothing enters the loss and no Challenger reward is paid for it."""
    game_config = dataclasses.replace(tiny_config.game, name="lsp-zero", num_queries=3)
    reward_config = dataclasses.replace(
        tiny_config.reward, function="lsp_mlx.rewards.arithmetic:exact"
    )
    config = dataclasses.replace(tiny_config, game=game_config, reward=reward_config)
    game = make_game(config, tiny_backend, World())
    tiny_backend.seed(0)
    rollout = game.play(tiny_backend, iteration=1)
    assert rollout.samples == []
    assert len(rollout.games) == 3 and not any(g.valid for g in rollout.games)
    scored = [g for g in rollout.games if "cannot score" in g.extra.get("reason", "")]
    assert scored, "the random model wrote no non-empty query to score"
    assert rollout.metrics["challenger/invalid"] == 1.0
    assert rollout.generated_tokens > sum(g.query_tokens for g in rollout.games)


def test_with_the_self_judge_each_game_records_the_solve_rate_of_r_alone(tiny_config, tiny_backend):
    """R + R_Q leaves [0, 1], so the game records mean(R) as its solve rate for the diagnostics."""
    from lsp_mlx.diagnostics import solve_rate

    game = make_game(tiny_config, tiny_backend, World())  # tiny: lsp, heuristic R, self-judge
    tiny_backend.seed(0)
    rollout = game.play(tiny_backend, iteration=1)
    live = [g for g in rollout.games if g.valid]
    assert live, "the tiny model wrote no query"
    for g in live:
        rewards = [a.reward_parts["reward"] for a in g.answers]
        assert g.extra["solve_rate"] == pytest.approx(sum(rewards) / len(rewards))
        assert solve_rate(g) == g.extra["solve_rate"]

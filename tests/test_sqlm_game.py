"""The SQLM game: masking, rewards, advantages and the Proposer schedule, then real runs.

A random tiny model cannot write a maths problem, so the first tests script the model's
*text* with `ScriptedBackend` (the game sees only the Backend interface; no weights are
involved in what is checked). The code task runs the scripted solutions in the real
sandbox, and the last tests train the real tiny MLX model through `lsp-mlx train`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import REPO, run_cli

from lsp_mlx import config as cfg
from lsp_mlx.backends.base import Completion
from lsp_mlx.distributed import World
from lsp_mlx.games.sqlm import make_sqlm

EOS = 0


class ScriptedBackend:
    """Stands in for a model's text: proposals in order, then answers looked up by problem."""

    name = "scripted"
    eos_token_id = EOS

    def __init__(self, proposals: list[str], answers: dict[str, list[str]]) -> None:
        self.proposals = proposals
        self.answers = answers
        self.proposer_prompts: list[str] = []

    def encode(self, text: str) -> list[int]:
        return [b + 1 for b in text.encode()]

    def decode(self, tokens: list[int]) -> str:
        return bytes(t - 1 for t in tokens if t > 0).decode()

    def chat_prompt(self, messages: list[dict[str, str]]) -> list[int]:
        return self.encode("\n".join(m["content"] for m in messages) + "\n")

    def generate(self, prompts, n, max_tokens, temperature=1.0, top_p=1.0, adapter=True):
        out = []
        for i, p in enumerate(prompts):
            text = self.decode(p)
            if text.rstrip().endswith(("<problem>", "<problem>What is")):  # the Proposer's prompt
                self.proposer_prompts.append(text)
                texts = [self.proposals[(i + k) % len(self.proposals)] for k in range(n)]
            else:
                problem = next(k for k in self.answers if text.startswith(k))
                texts = self.answers[problem][:n]
            out.append([Completion(self.encode(t), t, [0.0] * len(t), "stop") for t in texts])
        return out


def config_overrides(config: cfg.Config) -> dict:
    return {f"{sec}.{k}": v for sec, vals in config.to_dict().items() for k, v in vals.items()}


def sqlm_config(**overrides) -> cfg.Config:
    base = {
        "game.name": "sqlm",
        "game.num_queries": 3,
        "game.group_size": 4,
        "game.query_prefix": "What is",
    }
    return cfg.load(None, {**base, **overrides})


ARITH_PROPOSALS = [" 12 + 7?</problem>", " the colour of the sky?</problem>", " 2 + 2?</problem>"]
ARITH_ANSWERS = {
    "What is 12 + 7?": ["12 + 7 = 19", "Answer: 19", "Answer: 20", "no idea"],
    "What is 2 + 2?": ["4", "Answer: 4", "2 + 2 = 4", "The answer is 4."],
    "What is the colour of the sky?": ["blue"] * 4,
}


def test_exact_rewards_masking_and_grpo_advantages():
    config = sqlm_config(**{"sqlm.solver_reward": "exact", "sqlm.proposer_every": 1})
    backend = ScriptedBackend(ARITH_PROPOSALS, ARITH_ANSWERS)
    rollout = make_sqlm(config, backend, World()).play(backend, iteration=1)
    g0, g1, g2 = rollout.games
    assert not g1.valid and g1.extra["reason"] == "no computable arithmetic" and g1.answers == []
    assert g0.query == "What is 12 + 7?" and g0.extra["truth"] == "19"
    assert g0.rewards == [1.0, 1.0, 0.0, 0.0]
    assert [round(a.advantage, 3) for a in g0.answers] == [1.0, 1.0, -1.0, -1.0]  # (r - 0.5) / 0.5
    assert g0.query_reward == 1.0 and g0.extra["solve_rate"] == 0.5  # inside the band
    assert g2.rewards == [1.0] * 4 and g2.query_reward == 0.0  # trivial: outside the band
    assert all(a.advantage == 0.0 for a in g2.answers)
    assert math.isclose(g0.query_advantage, 1.0, rel_tol=1e-3) and math.isclose(
        g2.query_advantage, -1.0, rel_tol=1e-3
    )

    solver = [s for s in rollout.samples if s.role == "solver"]
    proposer = [s for s in rollout.samples if s.role == "proposer"]
    assert len(solver) == 8 and all(math.isclose(s.weight, 1 / (2 * 4)) for s in solver)
    assert len(proposer) == 2 and all(
        s.completion[-1] == EOS for s in proposer
    )  # masked proposal absent
    assert rollout.metrics["challenger/invalid"] == pytest.approx(1 / 3)
    assert rollout.metrics["sqlm/accuracy"] == pytest.approx(0.75)


def test_proposer_is_updated_every_k_iterations_and_flat_groups_can_be_skipped():
    config = sqlm_config(
        **{
            "sqlm.solver_reward": "exact",
            "sqlm.proposer_every": 5,
            "train.skip_zero_variance": True,
        }
    )
    backend = ScriptedBackend(ARITH_PROPOSALS, ARITH_ANSWERS)
    game = make_sqlm(config, backend, World())
    roles = {it: [s.role for s in game.play(backend, it).samples] for it in (4, 5)}
    assert roles[4] == ["solver"] * 4  # only the group with variance, no proposer
    assert roles[5] == ["solver"] * 4 + ["proposer"] * 2


def test_majority_reward_needs_no_labels():
    answers = {"What is 12 + 7?": ["Answer: 5", "5", "6", "nothing"], "What is 2 + 2?": ["3"] * 4}
    config = sqlm_config(**{"sqlm.solver_reward": "majority", "game.num_queries": 2})
    backend = ScriptedBackend([ARITH_PROPOSALS[0], ARITH_PROPOSALS[2]], answers)
    g0, g1 = make_sqlm(config, backend, World()).play(backend, 1).games
    assert (
        g0.rewards == [1.0, 1.0, 0.0, 0.0]
        and g0.extra["majority"] == "5"
        and g0.extra["agree"] == 2
    )
    assert (
        g0.extra["accuracy"] == 0.0 and g0.extra["majority_correct"] == 0.0
    )  # the honest truth is logged
    assert (
        g1.rewards == [1.0] * 4 and g1.query_reward == 0.0
    )  # unanimous (and wrong): no proposer reward


def test_band_official_and_r_zero_with_duplicates():
    answers = {"What is 12 + 7?": ["19", "20", "21", "22"]}
    backend = ScriptedBackend([ARITH_PROPOSALS[0]] * 2, answers)
    official = make_sqlm(
        sqlm_config(**{"sqlm.proposer_reward": "band-official", "game.num_queries": 2}),
        backend,
        World(),
    )
    assert [g.query_reward for g in official.play(backend, 1).games] == [
        0.0,
        0.0,
    ]  # only 1 agrees
    rzero = make_sqlm(
        sqlm_config(**{"sqlm.proposer_reward": "r-zero", "game.num_queries": 2}), backend, World()
    )
    games = rzero.play(backend, 1).games
    # p = 1/4 -> 1 - 2|1/4 - 1/2| = 0.5, minus the share of the batch in its duplicate cluster (2/2)
    assert [g.query_reward for g in games] == [0.0, 0.0] and games[0].extra["cluster_share"] == 1.0


def test_code_task_scores_in_the_sandbox():
    proposal = " Write add(a, b) returning the sum.\n```python\nassert add(1, 2) == 3\nassert add(0, 0) == 0\n```</problem>"
    solutions = [
        "```python\ndef add(a, b):\n    return a + b\n```",
        "```python\ndef add(a, b):\n    return 3\n```",
        "```python\ndef add(a, b):\n    while True:\n        pass\n```",
        "I do not know.",
    ]
    config = sqlm_config(
        **{
            "sqlm.verifier": "code",
            "game.num_queries": 1,
            "game.query_prefix": "",
            "sqlm.sandbox_timeout": 1.5,
        }
    )
    backend = ScriptedBackend([proposal], {"Write add(a, b) returning the sum.": solutions})
    (game,) = make_sqlm(config, backend, World()).play(backend, 1).games
    assert game.valid and game.extra["tests"] == ["assert add(1, 2) == 3", "assert add(0, 0) == 0"]
    assert game.rewards == [1.0, 0.5, 0.0, 0.0]
    assert game.query_reward == 1.0  # 0 < pass rate < 1


def test_invalid_code_proposals_are_masked():
    config = sqlm_config(
        **{"sqlm.verifier": "code", "game.num_queries": 1, "game.query_prefix": ""}
    )
    backend = ScriptedBackend(["Write a function.</problem>"], {})
    rollout = make_sqlm(config, backend, World()).play(backend, 1)
    assert (
        not rollout.games[0].valid
        and rollout.games[0].extra["reason"] == "no tests"
        and rollout.samples == []
    )


@pytest.mark.parametrize("preset", ["sqlm-arithmetic", "sqlm-code"])
def test_train_presets_run_on_the_tiny_model(preset: str, tiny_model: Path, tmp_path: Path):
    run_dir = tmp_path / "run"
    r = run_cli(
        "train",
        "--config",
        str(REPO / "configs" / f"{preset}.yaml"),
        "--model",
        str(tiny_model),
        "--iterations",
        "2",
        "--run-dir",
        str(run_dir),
        "--set",
        "lora.num_layers=-1",
        "--set",
        "game.num_queries=2",
        "--set",
        "game.group_size=2",
        "--set",
        "game.query_max_tokens=8",
        "--set",
        "game.answer_max_tokens=8",
        "--set",
        "sqlm.solver_reward=majority",
        "--set",
        "game.query_prefix=''",
        "--set",
        "sqlm.proposer_every=1",
    )
    assert r.returncode == 0, r.stderr[-2000:]
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    games = [e for e in events if e["type"] == "game"]
    assert len(games) == 4 and all(g["game"] == "sqlm" for g in games)
    diagnostics = [e for e in events if e["type"] == "diagnostics"]
    assert len(diagnostics) == 2 and "valid_share" in diagnostics[0]["diagnostics"]
    assert events[-1]["type"] == "run_end" and events[-1]["status"] == "finished"
    assert (run_dir / "adapters" / "adapters.safetensors").is_file()


def test_reference_buffer_varies_the_proposer_prompt_and_grows():
    seeds = ["What is 1 + 1?", "What is 5 - 3?", "What is 9 + 9?", "What is 8 - 1?"]
    config = sqlm_config(
        **{
            "sqlm.solver_reward": "exact",
            "sqlm.references": 2,
            "sqlm.seed_problems": seeds,
            "sqlm.proposer_every": 1,
        }
    )
    backend = ScriptedBackend(ARITH_PROPOSALS, ARITH_ANSWERS)
    game = make_sqlm(config, backend, World())
    rollout = game.play(backend, iteration=2)
    assert len(backend.proposer_prompts) == 3  # one prompt per proposal, each with its own draw
    shown = [[s for s in seeds if s in prompt] for prompt in backend.proposer_prompts]
    assert all(len(refs) == 2 for refs in shown) and len({tuple(r) for r in shown}) > 1
    # only the problem inside the band joins: 2 + 2 was solved by all; the masked one is no problem
    assert game.buffer == [*seeds, "What is 12 + 7?"]
    loose = cfg.load(None, {**config_overrides(config), "sqlm.buffer_band_only": False})
    other = ScriptedBackend(ARITH_PROPOSALS, ARITH_ANSWERS)
    everything = make_sqlm(loose, other, World())
    everything.play(other, iteration=2)
    assert everything.buffer == [*seeds, "What is 12 + 7?", "What is 2 + 2?"]
    proposer = [s for s in rollout.samples if s.role == "proposer"]
    assert {backend.decode(s.prompt) for s in proposer} <= set(backend.proposer_prompts)
    backend2 = ScriptedBackend(ARITH_PROPOSALS, ARITH_ANSWERS)
    make_sqlm(config, backend2, World()).play(backend2, iteration=2)
    assert backend2.proposer_prompts == backend.proposer_prompts  # seeded: resume-stable draws
    restored = make_sqlm(config, backend2, World())
    restored.load_state_dict(game.state_dict())
    assert restored.buffer == game.buffer

"""SPIN: data loading, the loss terms, and the claim that the PolicySample surrogate carries
exactly the gradient of the SPIN loss (checked with MLX autograd on the real tiny model)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import REPO, run_cli

from lsp_mlx import config as cfg
from lsp_mlx.distributed import World
from lsp_mlx.errors import UserError
from lsp_mlx.games.spin import SPINGame, load_pairs, make_spin, spin_terms


def test_load_pairs_formats_and_errors(tmp_path: Path):
    path = tmp_path / "pairs.jsonl"
    path.write_text(
        json.dumps({"prompt": "Hi", "response": "Hello!"})
        + "\n\n"
        + json.dumps({"instruction": "2+2?", "output": "4"})
        + "\n"
        + json.dumps(
            {"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]}
        )
        + "\n"
    )
    assert [(p.prompt, p.response) for p in load_pairs(path)] == [
        ("Hi", "Hello!"),
        ("2+2?", "4"),
        ("Q", "A"),
    ]
    with pytest.raises(UserError, match="not found"):
        load_pairs(tmp_path / "missing.jsonl")
    path.write_text("{not json}\n")
    with pytest.raises(UserError, match=r"pairs.jsonl:1 is not valid JSON"):
        load_pairs(path)
    path.write_text(json.dumps({"prompt": "Hi"}) + "\n")
    with pytest.raises(UserError, match="needs non-empty 'prompt' and 'response'"):
        load_pairs(path)
    assert len(load_pairs(REPO / "examples" / "spin_pairs.jsonl")) >= 20


def test_spin_terms_are_the_loss_and_its_derivative():
    for z in (-3.0, -0.5, 0.0, 0.7, 4.0):
        loss, adv = spin_terms(z, 0.1)
        assert math.isclose(loss, -math.log(1 / (1 + math.exp(-z))))
        assert math.isclose(adv, 0.1 / (1 + math.exp(z)))  # lambda * sigmoid(-z) = -dL/dz * lambda
    assert spin_terms(1000.0, 0.1) == (0.0, 0.0)
    loss, adv = spin_terms(-1000.0, 0.1)
    assert loss == 1000.0 and adv == 0.1


def test_batches_cycle_through_every_pair_each_epoch():
    config = cfg.load(None, {"game.name": "spin", "train.beta": 0.0, "spin.pairs_per_iteration": 5})
    pairs = load_pairs(REPO / "examples" / "spin_pairs.jsonl")[:10]
    game = SPINGame(config, pairs)
    epoch = game.batch(1) + game.batch(2)
    assert sorted(p.prompt for p in epoch) == sorted(p.prompt for p in pairs)
    assert game.batch(1) == SPINGame(config, pairs).batch(1)  # deterministic


def test_spin_refuses_a_kl_term():
    with pytest.raises(UserError, match="train.beta: 0"):
        make_spin(
            cfg.load(None, {"game.name": "spin", "train.beta": 0.05}), backend=None, world=World()
        )  # type: ignore[arg-type]


def test_surrogate_gradient_equals_spin_loss_gradient(tiny_model: Path, tmp_path: Path):
    import mlx.core as mx
    import mlx.nn as nn
    from mlx.utils import tree_flatten, tree_map

    from lsp_mlx.backends.mlx import MLXBackend

    data = tmp_path / "pairs.jsonl"
    data.write_text(
        "".join(
            json.dumps({"prompt": f"Say {w}", "response": f"{w}!"}) + "\n"
            for w in ("hi", "yes", "no")
        )
    )
    config = cfg.load(
        REPO / "configs" / "tiny.yaml",
        {
            "model.path": str(tiny_model),
            "game.name": "spin",
            "train.beta": 0.0,
            "spin.data": str(data),
            "spin.pairs_per_iteration": 3,
            "spin.max_tokens": 6,
            "train.micro_batch_size": 6,
        },
    )
    backend = MLXBackend(config)
    # move the adapter away from zero so policy and reference differ (z != 0)
    mx.random.seed(3)
    backend.model.update(
        tree_map(
            lambda p: p + 0.05 * mx.random.normal(p.shape), backend.model.trainable_parameters()
        )
    )
    game = make_spin(config, backend, World())
    rollout = game.play(backend, 1)
    samples = rollout.samples
    lam, b = config.spin.beta, len(samples) // 2

    _, g_surrogate, _ = backend.loss_and_gradients(samples, beta=0.0)

    def sequence_logprob(model: nn.Module, prompt: list[int], completion: list[int]) -> mx.array:
        logits = model(mx.array([prompt + completion[:-1]]))[0, len(prompt) - 1 :]
        logp = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
        return mx.take_along_axis(logp, mx.array(completion)[:, None], axis=-1).sum()

    with backend.adapter_disabled():
        ref = [sequence_logprob(backend.model, s.prompt, s.completion) for s in samples]
    ref = mx.stop_gradient(mx.stack(ref))

    def spin_loss(model: nn.Module) -> mx.array:
        seq = mx.stack([sequence_logprob(model, s.prompt, s.completion) for s in samples]) - ref
        real, fake = seq[0::2], seq[1::2]  # the game interleaves (real, generated) per pair
        z = lam * (real - fake)
        return mx.logaddexp(mx.zeros_like(z), -z).mean()

    loss, g_spin = nn.value_and_grad(backend.model, spin_loss)(backend.model)
    assert math.isclose(loss.item(), rollout.metrics["spin/loss"], rel_tol=1e-4)
    flat_s, flat_t = dict(tree_flatten(g_surrogate)), dict(tree_flatten(g_spin))
    assert flat_s.keys() == flat_t.keys() and b == 3
    norm = max(mx.abs(v).max().item() for v in flat_t.values())
    assert norm > 0
    for key, value in flat_t.items():
        assert mx.allclose(flat_s[key], value, atol=1e-5 * norm, rtol=1e-3).item(), key


def test_spin_preset_runs_on_the_tiny_model(tiny_model: Path, tmp_path: Path):
    run_dir = tmp_path / "run"
    r = run_cli(
        "train",
        "--config",
        str(REPO / "configs" / "spin.yaml"),
        "--model",
        str(tiny_model),
        "--iterations",
        "2",
        "--run-dir",
        str(run_dir),
        "--set",
        "lora.num_layers=-1",
        "--set",
        "spin.pairs_per_iteration=2",
        "--set",
        "spin.max_tokens=8",
    )
    assert r.returncode == 0, r.stderr[-2000:]
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    metrics = [e["metrics"] for e in events if e["type"] == "metrics"]
    assert len(metrics) == 2 and all("spin/loss" in m for m in metrics)
    assert math.isclose(
        metrics[0]["spin/loss"], math.log(2), rel_tol=1e-3
    )  # z = 0 before any update
    games = [e for e in events if e["type"] == "game"]
    assert len(games) == 4 and all(len(g["answers"]) == 2 for g in games)

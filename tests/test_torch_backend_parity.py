"""Parity of the torch and MLX backends on CPU: same base weights + same adapter weights give
the same log-probs, the same loss and the same update, and adapters cross in both directions.

Tolerances (fp32 on CPU, measured on the tiny llama with a random non-zero adapter):
- sequence log-probs of completions of 1-40 tokens: measured max |diff| 4.6e-5 nats on values up
  to 224 nats; tolerance 5e-4 (about 10x);
- one ``train_step`` loss: measured 1.8e-7; tolerance 2e-6; grad norm: relative 1e-5 (measured 1e-7);
- LoRA weights after one AdamW step at lr 1e-3: see ``assert_same_step`` (measured < 2e-7 on all
  but one of 8192 entries, that one 3e-6: Adam's ~lr*sign(g) step on a gradient near its eps).
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from mlx.utils import tree_flatten  # noqa: E402

from lsp_mlx import config as cfg  # noqa: E402
from lsp_mlx.backends.mlx import MLXBackend  # noqa: E402
from lsp_mlx.backends.torch import TorchBackend  # noqa: E402
from lsp_mlx.backends.torch_adapters import mlx_weights  # noqa: E402
from lsp_mlx.records import PolicySample  # noqa: E402

pytestmark = pytest.mark.torch
REPO = Path(__file__).resolve().parents[1]
LOGPROB_TOL = 5e-4
LOSS_TOL = 2e-6


def load_config(tiny: Path, backend: str, **overrides: object) -> cfg.Config:
    values = {"model.path": str(tiny), "train.backend": backend, **overrides}
    return cfg.load(REPO / "configs" / "tiny.yaml", values)


def mlx_with_random_adapter(tiny: Path, folder: Path, **overrides: object) -> MLXBackend:
    """An MLX backend whose adapter is random and non-zero (B = 0 would hide the adapter), saved to ``folder``."""
    m = MLXBackend(load_config(tiny, "mlx", **overrides))
    mx.random.seed(1)
    params = dict(tree_flatten(m.model.trainable_parameters()))
    m.model.load_weights(
        [(k, mx.random.normal(v.shape) * 0.05) for k, v in params.items()], strict=False
    )
    m.save_adapter(folder)
    return m


def mlx_adapter(m: MLXBackend) -> dict[str, np.ndarray]:
    return {k: np.array(v) for k, v in tree_flatten(m.model.trainable_parameters())}


def random_pairs(m: MLXBackend, count: int = 12) -> list[tuple[list[int], list[int]]]:
    rng = random.Random(0)
    pairs = []
    for i in range(count):
        prompt = m.chat_prompt(
            [{"role": "user", "content": f"question {i} " + "x" * rng.randint(0, 30)}]
        )
        pairs.append((prompt, [rng.randint(3, 258) for _ in range(rng.randint(1, 40))]))
    return pairs


@pytest.fixture(scope="module")
def pair(
    tiny_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[MLXBackend, TorchBackend]:
    folder = tmp_path_factory.mktemp("adapter")
    m = mlx_with_random_adapter(tiny_model, folder)
    t = TorchBackend(load_config(tiny_model, "torch"))
    t.load_adapter(folder)  # written by the MLX backend, mlx-lm format
    return m, t


def test_same_text_gives_same_tokens(pair: tuple[MLXBackend, TorchBackend]) -> None:
    m, t = pair
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi there, 2+2?"},
    ]
    assert m.chat_prompt(messages) == t.chat_prompt(messages)
    assert m.encode("héllo wörld") == t.encode("héllo wörld")
    assert t.decode(m.encode("héllo wörld")) == m.decode(m.encode("héllo wörld"))


def test_same_modules_carry_the_adapter(tiny_model: Path) -> None:
    for overrides in (
        {},
        {"lora.num_layers": 1, "lora.keys": ["self_attn.q_proj", "mlp.down_proj"]},
    ):
        m = MLXBackend(load_config(tiny_model, "mlx", **overrides))
        t = TorchBackend(load_config(tiny_model, "torch", **overrides))
        assert set(mlx_adapter(m)) == set(mlx_weights(t._lora))
        assert {k: v.shape for k, v in mlx_adapter(m).items()} == {
            k: tuple(v.shape) for k, v in mlx_weights(t._lora).items()
        }


@pytest.mark.parametrize("adapter", [True, False])
def test_sequence_logprobs_agree(pair: tuple[MLXBackend, TorchBackend], adapter: bool) -> None:
    m, t = pair
    pairs = random_pairs(m)
    a, b = m.sequence_logprobs(pairs, adapter=adapter), t.sequence_logprobs(pairs, adapter=adapter)
    assert max(abs(x - y) for x, y in zip(a, b)) < LOGPROB_TOL
    assert max(abs(x) for x in a) > 50  # long completions: the comparison is not trivially small


def test_adapter_changes_both_the_same_way(pair: tuple[MLXBackend, TorchBackend]) -> None:
    m, t = pair
    pairs = random_pairs(m, 4)
    shift_m = [
        x - y for x, y in zip(m.sequence_logprobs(pairs), m.sequence_logprobs(pairs, adapter=False))
    ]
    shift_t = [
        x - y for x, y in zip(t.sequence_logprobs(pairs), t.sequence_logprobs(pairs, adapter=False))
    ]
    assert min(abs(s) for s in shift_m) > 0.1
    assert shift_m == pytest.approx(shift_t, abs=LOGPROB_TOL)


def test_next_token_logprobs_agree(pair: tuple[MLXBackend, TorchBackend]) -> None:
    m, t = pair
    prompts = [p for p, _ in random_pairs(m, 4)]
    ids = [3, 50, 120, 258]
    for adapter in (True, False):
        a, b = (
            m.next_token_logprobs(prompts, ids, adapter=adapter),
            t.next_token_logprobs(prompts, ids, adapter=adapter),
        )
        assert np.abs(np.array(a) - np.array(b)).max() < 1e-4


def assert_same_step(a: dict[str, np.ndarray], b: dict[str, np.ndarray], lr: float) -> None:
    """Every entry within lr/10, all but 0.1% within 1e-6 (Adam's first step is ~lr*sign(g))."""
    diff = np.concatenate([np.abs(a[k] - b[k]).ravel() for k in a])
    assert diff.max() < lr / 10
    assert (diff > 1e-6).mean() < 1e-3


@pytest.mark.parametrize("estimator", ["k1", "k3"])
def test_one_update_agrees(tiny_model: Path, tmp_path: Path, estimator: str) -> None:
    m = mlx_with_random_adapter(tiny_model, tmp_path)
    t = TorchBackend(load_config(tiny_model, "torch"))
    t.load_adapter(tmp_path)
    rng = random.Random(1)
    samples = [
        PolicySample(p, c, rng.uniform(-1, 1), 1 / 12, "solver" if i % 3 else "challenger")
        for i, (p, c) in enumerate(random_pairs(m))
    ]
    sm, st = m.train_step(samples, 0.05, estimator), t.train_step(samples, 0.05, estimator)
    assert st.loss == pytest.approx(sm.loss, abs=LOSS_TOL)
    assert st.grad_norm == pytest.approx(sm.grad_norm, rel=1e-5)
    assert st.tokens == sm.tokens
    for role in ("solver", "challenger"):
        assert st.per_role[role]["loss"] == pytest.approx(sm.per_role[role]["loss"], abs=LOSS_TOL)
    # StepStats.kl is the sequence log-ratio; for k1 that is also the estimator the MLX backend reports
    if estimator == "k1":
        assert st.kl == pytest.approx(sm.kl, abs=1e-4)
    # both backends use bias-corrected AdamW (MLXBackend turns mlx's off-by-default correction on)
    assert_same_step(
        mlx_adapter(m), {k: v.numpy() for k, v in mlx_weights(t._lora).items()}, lr=1e-3
    )


def test_torch_adapter_and_optimizer_load_in_mlx(tiny_model: Path, tmp_path: Path) -> None:
    """The torch backend's checkpoint folder opens in the MLX backend and in mlx_lm.load."""
    from mlx_lm import load

    t = TorchBackend(load_config(tiny_model, "torch"))
    prompt = t.chat_prompt([{"role": "user", "content": "hello"}])
    samples = [
        PolicySample(prompt, t.encode(x), a, 0.5, "solver") for x, a in (("yes", 1.0), ("no", -1.0))
    ]
    t.train_step(samples, beta=0.05)  # a real, non-zero adapter and optimizer state
    t.save_adapter(tmp_path)
    t.save_state(tmp_path)
    pairs = [(prompt, t.encode("yes please")), (prompt, t.encode("no thanks"))]
    expected = t.sequence_logprobs(pairs)

    m = MLXBackend(load_config(tiny_model, "mlx"))
    m.load_adapter(tmp_path)
    m.load_state(tmp_path)
    assert m.sequence_logprobs(pairs) == pytest.approx(expected, abs=LOGPROB_TOL)
    assert int(m.optimizer.state["step"]) == 1

    model, _ = load(str(tiny_model), adapter_path=str(tmp_path))  # mlx-lm reads the merged config
    tokens = mx.array([prompt + t.encode("yes please")])
    logits = model(tokens)[0].astype(mx.float32)
    lp = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
    completion = t.encode("yes please")
    total = sum(lp[len(prompt) - 1 + i, tok].item() for i, tok in enumerate(completion))
    assert total == pytest.approx(expected[0], abs=LOGPROB_TOL)


def test_mlx_optimizer_state_resumes_in_torch(tiny_model: Path, tmp_path: Path) -> None:
    m = mlx_with_random_adapter(tiny_model, tmp_path)
    prompt = m.chat_prompt([{"role": "user", "content": "hello"}])
    m.train_step([PolicySample(prompt, m.encode("yes"), 1.0, 1.0, "solver")], beta=0.05)
    m.save_adapter(tmp_path)
    m.save_state(tmp_path)
    t = TorchBackend(load_config(tiny_model, "torch"))
    t.load_adapter(tmp_path)
    t.load_state(tmp_path)
    moments = {}
    for name, layer in t._lora:
        state = t.optimizer.state[layer.lora_B["default"].weight]
        moments[f"{name}.lora_b.m"] = state["exp_avg"].T.numpy()
        assert int(state["step"]) == 1
    saved = dict(tree_flatten(m.optimizer.state))
    for key, value in moments.items():
        np.testing.assert_allclose(value, np.array(saved[key]), atol=1e-7)
    assert max(np.abs(v).max() for v in moments.values()) > 0
    torch.testing.assert_close(
        mlx_weights(t._lora)["model.layers.0.self_attn.q_proj.lora_a"],
        torch.from_numpy(mlx_adapter(m)["model.layers.0.self_attn.q_proj.lora_a"]),
    )

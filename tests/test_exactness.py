"""The shared-prompt, frozen-trunk passes of the MLX backend equal the full-sequence computation.

The oracle below is the straightforward computation the backend used before it shared prompts
and the trunk: every (prompt, completion) as one right-padded row, the whole model at every
position, the vocabulary log-softmax everywhere, the reference as a second full pass. Per-token
log-probs must agree within 1e-4, the loss within 1e-6 and every gradient within 1e-5 relative,
for both KL estimators, with prompts of different lengths (and several completions sharing a
prompt) in one step.
"""

from __future__ import annotations

from pathlib import Path

import pytest

mx = pytest.importorskip("mlx.core")
import mlx.nn as nn  # noqa: E402
from mlx.utils import tree_flatten, tree_map  # noqa: E402

from lsp_mlx.records import PolicySample  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- the oracle
def oracle_token_logprobs(model, inputs, targets):
    logits = model(inputs)
    return -nn.losses.cross_entropy(logits.astype(mx.float32), targets, reduction="none")


def oracle_batch(pairs, rows=None, multiple=1):
    """Right-padded (inputs, targets, completion mask); ``rows``/``multiple`` add the zero rows
    and the length padding to a multiple of 32 of the replaced implementation (benchmarks)."""
    length = max(len(p) + len(c) - 1 for p, c in pairs)
    length = multiple * -(-length // multiple)
    rows = max(rows or 0, len(pairs))
    inputs = [[0] * length for _ in range(rows)]
    targets = [[0] * length for _ in range(rows)]
    mask = [[0.0] * length for _ in range(rows)]
    for i, (prompt, completion) in enumerate(pairs):
        full = prompt + completion
        inputs[i][: len(full) - 1] = full[:-1]
        targets[i][: len(full) - 1] = full[1:]
        for t in range(len(prompt) - 1, len(full) - 1):
            mask[i][t] = 1.0
    return mx.array(inputs), mx.array(targets), mx.array(mask)


def oracle_loss(model, inputs, targets, mask, advantages, weights, ref, beta, k3):
    tok_lp = oracle_token_logprobs(model, inputs, targets) * mask
    seq_lp = tok_lp.sum(axis=-1)
    ratio = mx.exp(seq_lp - mx.stop_gradient(seq_lp))
    log_ratio = seq_lp - ref.sum(axis=-1)
    if k3:
        r = (ref - tok_lp) * mask
        kl = ((mx.exp(r) - r - 1) * mask).sum(axis=-1)
    else:
        kl = log_ratio
    return (weights * -(ratio * advantages - beta * kl)).sum()


def oracle_loss_and_gradients(backend, samples, beta, k3, rows=4, pad=False):
    """Loss and summed gradients over micro-batches of ``rows`` full sequences (``pad``: with
    the replaced implementation's zero rows and lengths padded to a multiple of 32)."""
    loss_and_grad = nn.value_and_grad(backend.model, oracle_loss)
    total, grads_acc = 0.0, None
    for start in range(0, len(samples), rows):
        chunk = samples[start : start + rows]
        pairs = [(s.prompt, s.completion) for s in chunk]
        inputs, targets, mask = oracle_batch(pairs, rows if pad else None, 32 if pad else 1)
        extra = [0.0] * (inputs.shape[0] - len(chunk))
        adv = mx.array([s.advantage for s in chunk] + extra)
        w = mx.array([s.weight for s in chunk] + extra)
        with backend.adapter_disabled():
            ref = mx.stop_gradient(oracle_token_logprobs(backend.model, inputs, targets) * mask)
        loss, grads = loss_and_grad(backend.model, inputs, targets, mask, adv, w, ref, beta, k3)
        grads_acc = grads if grads_acc is None else tree_map(mx.add, grads_acc, grads)
        mx.eval(loss, grads_acc)
        total += loss.item()
    return total, grads_acc


def oracle_token_rows(backend, pairs, adapter=True):
    """Per-token completion log-probs of each pair, one list per pair."""
    inputs, targets, mask = oracle_batch(pairs)
    with backend._maybe_disabled(adapter):
        lp = oracle_token_logprobs(backend.model, inputs, targets)
    rows = []
    for i, (prompt, completion) in enumerate(pairs):
        start = len(prompt) - 1
        rows.append(lp[i, start : start + len(completion)].tolist())
    return rows


# ---------------------------------------------------------------- fixtures
def _backend(model_path, num_layers, micro_batch_size=4):
    from lsp_mlx import config as cfg
    from lsp_mlx.backends.mlx import MLXBackend

    config = cfg.load(
        REPO / "configs" / "tiny.yaml",
        {
            "model.path": str(model_path),
            "lora.num_layers": num_layers,
            "lora.dropout": 0.0,
            "train.micro_batch_size": micro_batch_size,
        },
    )
    return MLXBackend(config)


@pytest.fixture(scope="module")
def deep_tiny_model(tmp_path_factory):
    """A 4-block tiny llama, so LoRA on the last 2 leaves a frozen trunk of 2 blocks."""
    from lsp_mlx.models.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("deep") / "model", seed=1, num_layers=4)


def _move_adapter(backend, scale=0.05):
    """A non-zero adapter (lora_b starts at 0, where policy == reference)."""
    mx.random.seed(0)
    params = tree_map(
        lambda p: mx.random.normal(p.shape) * scale, backend.model.trainable_parameters()
    )
    backend.model.update(params)
    mx.eval(backend.model.trainable_parameters())


def _samples(backend):
    """Three prompts of different lengths; two of them shared by several completions."""
    short = backend.chat_prompt([{"role": "user", "content": "Hi?"}])
    long = backend.chat_prompt([{"role": "user", "content": "Tell me a long story about rivers."}])
    mid = backend.chat_prompt([{"role": "user", "content": "Two plus two?"}])
    texts = {
        "short": ["hello", "a longer answer than that", "x"],
        "long": ["once upon a time", "no", "the river ran to the sea and back"],
        "mid": ["four"],
    }
    prompts = {"short": short, "long": long, "mid": mid}
    samples = []
    advantages = [1.0, -0.5, 0.25, 0.7, -1.2, 0.3, 0.9]
    for name, group in texts.items():
        for text in group:
            a = advantages[len(samples)]
            role = "challenger" if name == "mid" else "solver"
            samples.append(
                PolicySample(
                    prompts[name], backend.encode(text), a, 0.1 + 0.05 * len(samples), role
                )
            )
    samples.append(PolicySample(short, [], 0.5, 0.1, "solver"))  # no completion token
    return samples


def _assert_grads_close(new, old, rel=1e-5):
    """Every gradient tensor within ``rel`` in relative norm: |new - old| / |old|."""
    flat_new, flat_old = dict(tree_flatten(new)), dict(tree_flatten(old))
    assert flat_new.keys() == flat_old.keys()
    for key, g_old in flat_old.items():
        norm = mx.sqrt(mx.sum(g_old * g_old)).item()
        diff = mx.sqrt(mx.sum((flat_new[key] - g_old) ** 2)).item()
        assert diff <= rel * max(norm, 1e-12), f"{key}: |diff| {diff:.3g} vs |g| {norm:.3g}"


# ---------------------------------------------------------------- tests
@pytest.mark.parametrize("lora_layers", [2, 4])
@pytest.mark.parametrize("estimator", ["k1", "k3"])
def test_update_equals_full_sequence_oracle(deep_tiny_model, lora_layers, estimator):
    backend = _backend(deep_tiny_model, lora_layers)
    assert backend.forward.layered and backend.forward.trunk_end == 4 - lora_layers
    _move_adapter(backend)
    samples = _samples(backend)
    k3 = estimator == "k3"
    old_loss, old_grads = oracle_loss_and_gradients(backend, samples, 0.1, k3)
    new_loss, new_grads, roles = backend.loss_and_gradients(samples, 0.1, estimator)
    assert new_loss == pytest.approx(old_loss, rel=1e-6, abs=1e-6)  # float32 sums
    _assert_grads_close(new_grads, old_grads)
    assert sum(acc["n"] for acc in roles.totals.values()) == len(samples)


def test_other_architectures_run_full_sequences_with_the_same_results(deep_tiny_model):
    """A model outside LAYERED_TYPES runs each full sequence through ``model.model``: no shared
    prompt or trunk, the same loss and gradients."""
    backend = _backend(deep_tiny_model, 2)
    backend.forward.layered, backend.forward.trunk_end = False, 0
    _move_adapter(backend)
    samples = _samples(backend)
    old_loss, old_grads = oracle_loss_and_gradients(backend, samples, 0.1, True)
    new_loss, new_grads, _ = backend.loss_and_gradients(samples, 0.1, "k3")
    assert new_loss == pytest.approx(old_loss, rel=1e-6, abs=1e-6)
    _assert_grads_close(new_grads, old_grads)


def test_token_and_sequence_logprobs_equal_oracle(deep_tiny_model):
    backend = _backend(deep_tiny_model, 2, micro_batch_size=2)  # several passes per prompt
    _move_adapter(backend)
    samples = _samples(backend)
    pairs = [(s.prompt, s.completion) for s in samples]
    for adapter in (True, False):
        rows = oracle_token_rows(backend, pairs, adapter)
        # per token: the same passes the update uses, read one token at a time
        from lsp_mlx.backends.mlx_forward import completion_positions
        from lsp_mlx.backends.passes import sequence_passes

        with backend._maybe_disabled(adapter):
            for p, completions in sequence_passes(pairs, backend._budget([30])):
                scored = completion_positions(p, completions)
                hidden = backend.forward.top(p, *backend.forward.trunk(p))
                tok = backend.forward.token_logprobs(hidden, scored.flat_positions, scored.targets)
                flat = [x for i in p.owners for x in rows[i]]
                assert max(abs(a - b) for a, b in zip(tok.tolist(), flat)) < 1e-4
        seq = backend.sequence_logprobs(pairs, adapter=adapter)
        assert seq == pytest.approx([sum(r) for r in rows], abs=1e-4)


def test_next_token_logprobs_equal_oracle(deep_tiny_model):
    backend = _backend(deep_tiny_model, 2, micro_batch_size=2)
    _move_adapter(backend)
    rubric = "Score the answer below from 0 to 7 and explain why, briefly.\n"
    prompts = [
        backend.chat_prompt([{"role": "user", "content": rubric + answer}])
        for answer in ("yes", "a much longer answer", "no", "maybe so")
    ]
    ids = [backend.encode(str(k))[0] for k in range(8)]
    got = backend.next_token_logprobs(prompts, ids, adapter=False)
    for prompt, row in zip(prompts, got):
        with backend.adapter_disabled():
            logits = backend.model(mx.array(prompt)[None])[0, -1].astype(mx.float32)
        expected = (logits - mx.logsumexp(logits))[mx.array(ids)].tolist()
        assert row == pytest.approx(expected, abs=1e-4)


def test_train_step_reports_the_oracle_loss_and_gradient_norm(deep_tiny_model):
    """train_step's StepStats on a moved adapter: the oracle's loss and (unclipped) grad norm."""
    backend = _backend(deep_tiny_model, 2)
    _move_adapter(backend)
    samples = _samples(backend)
    loss, grads = oracle_loss_and_gradients(backend, samples, 0.05, False)
    norm = mx.sqrt(sum(mx.sum(g * g) for _, g in tree_flatten(grads))).item()
    backend.config.train.max_grad_norm = 0.0  # report the raw norm
    stats = backend.train_step(samples, 0.05, "k1")
    assert stats.loss == pytest.approx(loss, rel=1e-6, abs=1e-6)
    assert stats.grad_norm == pytest.approx(norm, rel=1e-5)
    assert stats.tokens == sum(len(s.completion) for s in samples)


@pytest.mark.slow
@pytest.mark.parametrize("estimator", ["k1", "k3"])
def test_update_equals_oracle_on_smollm2(estimator):
    from lsp_mlx import config as cfg
    from lsp_mlx.backends.mlx import MLXBackend

    config = cfg.load(
        REPO / "configs" / "demo.yaml",
        {"lora.dropout": 0.0, "train.micro_batch_size": 4, "train.run_dir": "/tmp/unused"},
    )
    backend = MLXBackend(config)
    assert backend.forward.layered and backend.forward.trunk_end > 0
    _move_adapter(backend, 0.01)  # 30 blocks: a larger random adapter makes k3's exp(r) explode
    samples = _samples(backend)[:4]
    old_loss, old_grads = oracle_loss_and_gradients(backend, samples, 0.05, estimator == "k3")
    new_loss, new_grads, _ = backend.loss_and_gradients(samples, 0.05, estimator)
    assert new_loss == pytest.approx(old_loss, rel=1e-6, abs=1e-6)  # float32 sums
    _assert_grads_close(new_grads, old_grads)

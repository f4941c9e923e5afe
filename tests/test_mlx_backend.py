"""The MLX backend on a real tiny model: the loss of docs/algorithms.md §1, update direction,
KL, the adapter-off reference, shared-prefill sampling and the adapter files."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lsp_mlx.records import PolicySample


def _samples(backend, advantages, weights=None):
    prompt = backend.chat_prompt([{"role": "user", "content": "Say something."}])
    completions = [backend.encode(t) for t in ("hello there", "ok", "a longer answer here")]
    weights = weights or [1.0 / len(advantages)] * len(advantages)
    return [
        PolicySample(prompt, c, a, w, "solver") for c, a, w in zip(completions, advantages, weights)
    ]


def test_first_step_loss_and_kl_match_hand_computation(tiny_backend):
    samples = _samples(tiny_backend, [1.0, -0.5, 0.25], [0.2, 0.3, 0.5])
    stats = tiny_backend.train_step(samples, beta=0.05)
    # the adapter starts at lora_b = 0, so pi == pi_ref: KL is exactly 0 and the ratio is 1:
    # L = -sum_k w_k * A_k
    assert stats.kl == 0.0
    assert stats.loss == pytest.approx(-(0.2 * 1.0 + 0.3 * -0.5 + 0.5 * 0.25), abs=1e-6)
    assert stats.grad_norm > 0


def test_loss_with_kl_matches_sequence_logprobs(tiny_backend):
    samples = _samples(tiny_backend, [1.0, -1.0, 0.5])
    tiny_backend.train_step(samples, beta=0.0)  # move the adapter away from zero
    pairs = [(s.prompt, s.completion) for s in samples]
    lp = tiny_backend.sequence_logprobs(pairs)
    lp_ref = tiny_backend.sequence_logprobs(pairs, adapter=False)
    beta = 0.1
    expected_kl = [a - b for a, b in zip(lp, lp_ref)]
    expected = sum(-s.weight * (s.advantage - beta * k) for s, k in zip(samples, expected_kl))
    stats = tiny_backend.train_step(samples, beta=beta)
    assert stats.kl == pytest.approx(sum(expected_kl) / 3, rel=1e-4, abs=1e-5)
    assert abs(stats.kl) > 1e-4  # the adapter moved, so the policy left the reference
    assert stats.loss == pytest.approx(expected, rel=1e-4, abs=1e-5)
    # one role: its numbers are the step's (padding rows of the micro-batch count in neither)
    assert stats.per_role["solver"]["kl"] == pytest.approx(stats.kl, rel=1e-6)
    assert stats.per_role["solver"]["loss"] == pytest.approx(stats.loss, rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_update_moves_logprob_in_the_direction_of_the_advantage(tiny_backend, sign):
    prompt = tiny_backend.chat_prompt([{"role": "user", "content": "Pick one."}])
    completion = tiny_backend.encode("the chosen answer")
    pair = [(prompt, completion)]
    before = tiny_backend.sequence_logprobs(pair)[0]
    tiny_backend.train_step([PolicySample(prompt, completion, sign, 1.0, "solver")], beta=0.0)
    after = tiny_backend.sequence_logprobs(pair)[0]
    assert (after - before) * sign > 1e-3


def test_reference_is_the_base_model_with_the_adapter_off(tiny_backend):
    samples = _samples(tiny_backend, [1.0, -1.0, 0.5])
    pairs = [(s.prompt, s.completion) for s in samples]
    ref_before = tiny_backend.sequence_logprobs(pairs, adapter=False)
    for _ in range(3):
        tiny_backend.train_step(samples, beta=0.0)
    assert tiny_backend.sequence_logprobs(pairs, adapter=False) == pytest.approx(
        ref_before, abs=1e-5
    )
    assert tiny_backend.sequence_logprobs(pairs) != pytest.approx(ref_before, abs=1e-3)


def test_k3_estimator_enters_the_loss_as_a_nonnegative_penalty(tiny_backend):
    samples = _samples(tiny_backend, [1.0, -1.0, 0.5])
    assert tiny_backend.train_step(samples, beta=0.1, kl_estimator="k3").kl == 0.0
    # after a step the policy differs from the reference: with zero advantages the loss is
    # beta * sum_k w_k * k3_k, and k3 = exp(r) - r - 1 >= 0 per token
    flat = [type(s)(s.prompt, s.completion, 0.0, s.weight, s.role) for s in samples]
    stats = tiny_backend.train_step(flat, beta=0.1, kl_estimator="k3")
    assert stats.loss > 0.0
    assert stats.kl != 0.0  # StepStats.kl reports the sequence log-ratio


def test_shared_prefill_sampling_equals_plain_mlx_lm_generation(tiny_backend):
    """Greedy samples with one shared prefill per prompt equal mlx_lm.generate run one by one."""
    from mlx_lm import generate

    prompts = [
        tiny_backend.chat_prompt([{"role": "user", "content": t}]) for t in ("abc", "hello world!")
    ]
    out = tiny_backend.generate(prompts, n=3, max_tokens=12, temperature=0.0)
    for prompt, group in zip(prompts, out):
        expected = generate(tiny_backend.model, tiny_backend.tokenizer, prompt, max_tokens=12)
        assert len(group) == 3
        for c in group:
            assert c.text == expected
            assert len(c.logprobs) == len(c.tokens)
            assert c.finish_reason in ("stop", "length")
            assert all(lp <= 0 for lp in c.logprobs)


def test_sampling_logprobs_match_teacher_forced_logprobs(tiny_backend):
    """At temperature 1 the sampler's per-token logprobs are the policy's: rescoring agrees."""
    tiny_backend.seed(3)
    prompt = tiny_backend.chat_prompt([{"role": "user", "content": "x"}])
    (group,) = tiny_backend.generate([prompt], n=2, max_tokens=10, temperature=1.0)
    rescored = tiny_backend.sequence_logprobs([(prompt, c.tokens) for c in group])
    for c, lp in zip(group, rescored):
        assert sum(c.logprobs) == pytest.approx(lp, abs=1e-3)


def test_adapter_round_trip_and_mlx_lm_loads_it(tiny_backend, tiny_config, tiny_model, tmp_path):
    from lsp_mlx.backends.mlx import MLXBackend

    samples = _samples(tiny_backend, [1.0, -1.0, 0.5])
    tiny_backend.train_step(samples, beta=0.0)
    tiny_backend.save_adapter(tmp_path / "ad")
    pairs = [(s.prompt, s.completion) for s in samples]
    expected = tiny_backend.sequence_logprobs(pairs)

    other = MLXBackend(tiny_config)
    assert other.sequence_logprobs(pairs) != pytest.approx(expected, abs=1e-3)
    other.load_adapter(tmp_path / "ad")
    assert other.sequence_logprobs(pairs) == pytest.approx(expected, abs=1e-5)

    # mlx-lm's own CLI opens the adapter folder
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlx_lm",
            "generate",
            "--model",
            str(tiny_model),
            "--adapter-path",
            str(tmp_path / "ad"),
            "--prompt",
            "hi",
            "--max-tokens",
            "4",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Generation:" in proc.stdout + proc.stderr

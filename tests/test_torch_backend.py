"""The torch backend on its own: sampling, scoring, the LoRA step, adapter and state files.

Everything runs on a real tiny llama (`make_tiny_model`) through transformers + PEFT on CPU.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

import torch  # noqa: E402

from lsp_mlx import config as cfg  # noqa: E402
from lsp_mlx.backends.base import Backend  # noqa: E402
from lsp_mlx.backends.torch import TorchBackend  # noqa: E402
from lsp_mlx.backends.torch_adapters import mlx_weights  # noqa: E402
from lsp_mlx.errors import UserError  # noqa: E402
from lsp_mlx.records import PolicySample  # noqa: E402

pytestmark = pytest.mark.torch
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny(tiny_model: Path) -> Path:
    return tiny_model  # conftest's session-wide tiny llama


def make_backend(tiny: Path, **overrides: object) -> TorchBackend:
    values = {"model.path": str(tiny), "train.backend": "torch", **overrides}
    return TorchBackend(cfg.load(REPO / "configs" / "tiny.yaml", values))


def randomize_adapter(backend: TorchBackend, seed: int = 1, std: float = 0.05) -> None:
    """B starts at zero (adapter = identity); give it weights so adapter on/off differ."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, layer in backend._lora:
            for w in (layer.lora_A["default"].weight, layer.lora_B["default"].weight):
                w.copy_(torch.randn(w.shape, generator=gen) * std)


@pytest.fixture(scope="module")
def backend(tiny: Path) -> TorchBackend:
    b = make_backend(tiny)
    randomize_adapter(b)
    return b


def prompts(b: TorchBackend) -> list[list[int]]:
    return [
        b.chat_prompt([{"role": "user", "content": "Name a colour."}]),
        b.chat_prompt(
            [{"role": "user", "content": "Write one long sentence about the sea and ships."}]
        ),
        b.chat_prompt(
            [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}]
        ),
    ]


def test_info_names_device_and_dtype(backend: TorchBackend) -> None:
    assert isinstance(backend, Backend)  # every method of the protocol is there
    info = backend.info()
    assert info["backend"] == "torch"
    expected = ("cuda", "bfloat16") if torch.cuda.is_available() else ("cpu", "float32")
    if not torch.cuda.is_available() and torch.backends.mps.is_available():
        expected = ("mps", "float32")
    assert info["device"].startswith(expected[0]) and info["dtype"] == expected[1]
    assert info["lora_layers"] == 14  # 7 linear layers x 2 blocks
    assert 0 < info["trainable_params"] < info["params"]


def test_generate_returns_temperature_one_logprobs(backend: TorchBackend) -> None:
    ps = prompts(backend)
    for temperature in (1.0, 0.7):
        backend.seed(0)
        groups = backend.generate(ps, n=3, max_tokens=12, temperature=temperature)
        assert [len(g) for g in groups] == [3, 3, 3]
        pairs, sampled = [], []
        for prompt, group in zip(ps, groups):
            for c in group:
                assert len(c.tokens) == len(c.logprobs)
                assert not backend.stop_ids & set(c.tokens)
                assert (
                    c.finish_reason == "length"
                    if len(c.tokens) == 12
                    else c.finish_reason == "stop"
                )
                assert c.text == backend.decode(c.tokens)
                if c.tokens:
                    pairs.append((prompt, c.tokens))
                    sampled.append(sum(c.logprobs))
        # the KV-cached, left-padded, shared-prefill sampler scores like a teacher-forced pass,
        # and at any sampling temperature the recorded log-probs are the temperature-1 policy's
        forced = backend.sequence_logprobs(pairs)
        assert forced == pytest.approx(sampled, abs=1e-3)


def test_batched_greedy_equals_one_prompt_at_a_time(backend: TorchBackend) -> None:
    ps = prompts(backend)
    together = backend.generate(ps, n=2, max_tokens=10, temperature=0.0)
    for prompt, group in zip(ps, together):
        alone = backend.generate([prompt], n=1, max_tokens=10, temperature=0.0)[0][0]
        assert [c.tokens for c in group] == [alone.tokens, alone.tokens]


def test_seed_fixes_the_samples_and_tiny_top_p_is_greedy(backend: TorchBackend) -> None:
    ps = prompts(backend)[:2]
    backend.seed(7)
    first = [[c.tokens for c in g] for g in backend.generate(ps, n=2, max_tokens=8)]
    backend.seed(7)
    again = [[c.tokens for c in g] for g in backend.generate(ps, n=2, max_tokens=8)]
    backend.seed(8)
    other = [[c.tokens for c in g] for g in backend.generate(ps, n=2, max_tokens=8)]
    assert first == again and first != other
    greedy = backend.generate(ps, n=1, max_tokens=8, temperature=0.0)
    nucleus = backend.generate(ps, n=1, max_tokens=8, temperature=1.0, top_p=1e-6)
    assert [g[0].tokens for g in greedy] == [g[0].tokens for g in nucleus]


def test_adapter_off_is_the_base_model(backend: TorchBackend, tiny: Path) -> None:
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(tiny), dtype=torch.float32).eval()
    prompt = prompts(backend)[0]
    completion = backend.encode("blue, like the sky")
    with torch.no_grad():
        logits = base(torch.tensor([prompt + completion])).logits[0].float()
    lp = torch.log_softmax(logits, -1)
    expected = sum(lp[len(prompt) - 1 + i, t].item() for i, t in enumerate(completion))
    off, on = (
        backend.sequence_logprobs([(prompt, completion)], adapter=a)[0] for a in (False, True)
    )
    assert off == pytest.approx(expected, abs=1e-4)
    assert abs(on - off) > 0.1  # the randomized adapter changes the policy


def test_next_token_logprobs_match_one_token_completions(backend: TorchBackend) -> None:
    ps = prompts(backend)
    ids = [5, 40, 200]
    table = backend.next_token_logprobs(ps, ids)
    for prompt, row in zip(ps, table):
        assert row == pytest.approx(
            backend.sequence_logprobs([(prompt, [t]) for t in ids]), abs=1e-4
        )


def samples_for(b: TorchBackend) -> list[PolicySample]:
    ps = prompts(b)
    comps = [
        b.encode(t) for t in ("red", "the sea is wide and deep", "4", "green and blue", "five")
    ]
    advantages = [1.0, -0.5, 0.25, -0.75, 0.5]
    return [
        PolicySample(ps[i % 3], c, a, 0.2, "solver" if i % 2 else "challenger")
        for i, (c, a) in enumerate(zip(comps, advantages))
    ]


def test_first_step_from_zero_adapter_has_no_kl(tiny: Path) -> None:
    b = make_backend(tiny)  # fresh: lora_B = 0, so pi == pi_ref
    samples = samples_for(b)
    for estimator in ("k1", "k3"):
        fresh = make_backend(tiny)
        stats = fresh.train_step(samples, beta=0.05, kl_estimator=estimator)
        assert stats.kl == pytest.approx(0.0, abs=1e-6)
        assert stats.loss == pytest.approx(-sum(s.weight * s.advantage for s in samples), abs=1e-6)
        assert stats.tokens == sum(len(s.completion) for s in samples)
        assert set(stats.per_role) == {"solver", "challenger"} and stats.grad_norm > 0


def test_micro_batches_accumulate_to_the_full_batch_step(tiny: Path) -> None:
    weights = []
    for micro in (1, 5):
        b = make_backend(tiny, **{"train.micro_batch_size": micro})
        randomize_adapter(b)
        stats = b.train_step(samples_for(b), beta=0.05)
        weights.append((stats, mlx_weights(b._lora)))
    (s1, w1), (s5, w5) = weights
    assert s1.loss == pytest.approx(s5.loss, abs=1e-6) and s1.grad_norm == pytest.approx(
        s5.grad_norm, rel=1e-5
    )
    assert_same_step(w1, w5, lr=1e-3)


def assert_same_step(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], lr: float) -> None:
    """Adam's first step is about lr * sign(g): where a gradient entry is ~1e-8 (Adam's eps) a
    rounding difference moves it by up to ~lr. So: every entry within lr/10, and all but 0.1% of
    entries within 1e-6 (measured: 1 of 8192 entries differs by 8e-6 to 3e-5, the rest by < 1e-7)."""
    diff = torch.cat([(a[k] - b[k]).abs().flatten() for k in a])
    assert diff.max().item() < lr / 10
    assert (diff > 1e-6).float().mean().item() < 1e-3


def test_updates_follow_the_advantage(tiny: Path) -> None:
    b = make_backend(tiny, **{"train.learning_rate": 3e-3})
    prompt = prompts(b)[0]
    good, bad = b.encode("yes"), b.encode("no!")
    before = b.sequence_logprobs([(prompt, good), (prompt, bad)])
    for _ in range(3):
        b.train_step(
            [
                PolicySample(prompt, good, 1.0, 0.5, "solver"),
                PolicySample(prompt, bad, -1.0, 0.5, "solver"),
            ],
            beta=0.0,
        )
    after = b.sequence_logprobs([(prompt, good), (prompt, bad)])
    assert after[0] > before[0] + 0.1 and after[1] < before[1] - 0.1


def test_adapter_folder_holds_both_formats_and_reloads(
    backend: TorchBackend, tiny: Path, tmp_path: Path
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    backend.save_adapter(tmp_path)
    assert {"adapters.safetensors", "adapter_model.safetensors", "adapter_config.json"} <= {
        p.name for p in tmp_path.iterdir()
    }
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config["fine_tune_type"] == "lora" and config["lora_parameters"]["scale"] == 20.0
    assert config["peft_type"] == "LORA" and config["lora_alpha"] == 20.0 * 4 and config["r"] == 4
    prompt, completion = prompts(backend)[1], backend.encode("ships sail")
    expected = backend.sequence_logprobs([(prompt, completion)])[0]

    mlx_only = make_backend(tiny)
    mlx_only.load_adapter(tmp_path)
    assert mlx_only.sequence_logprobs([(prompt, completion)])[0] == pytest.approx(
        expected, abs=1e-5
    )

    peft_only = tmp_path / "peft-only"
    peft_only.mkdir()
    for name in ("adapter_model.safetensors", "adapter_config.json"):
        shutil.copy(tmp_path / name, peft_only / name)
    from_peft = make_backend(tiny)
    from_peft.load_adapter(peft_only)
    assert from_peft.sequence_logprobs([(prompt, completion)])[0] == pytest.approx(
        expected, abs=1e-5
    )

    # PEFT itself opens the folder natively
    base = AutoModelForCausalLM.from_pretrained(str(tiny), dtype=torch.float32)
    with pytest.warns(UserWarning, match="Unexpected keyword arguments"):  # mlx-lm's keys, ignored
        native = PeftModel.from_pretrained(base, str(tmp_path)).eval()
    with torch.no_grad():
        lp = torch.log_softmax(native(torch.tensor([prompt + completion])).logits[0].float(), -1)
    assert sum(
        lp[len(prompt) - 1 + i, t].item() for i, t in enumerate(completion)
    ) == pytest.approx(expected, abs=1e-4)


def test_resume_from_state_equals_an_uninterrupted_run(tiny: Path, tmp_path: Path) -> None:
    first, second = samples_for(make_backend(tiny))[:3], samples_for(make_backend(tiny))[2:]
    straight = make_backend(tiny)
    straight.train_step(first, beta=0.05)
    straight.save_adapter(tmp_path)
    straight.save_state(tmp_path)
    straight.train_step(second, beta=0.05)

    resumed = make_backend(
        tiny, **{"train.seed": 99}
    )  # a different LoRA init, overwritten by the load
    resumed.load_adapter(tmp_path)
    resumed.load_state(tmp_path)
    resumed.train_step(second, beta=0.05)
    a, b = mlx_weights(straight._lora), mlx_weights(resumed._lora)
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-7


def test_bad_adapters_are_one_line_errors(
    backend: TorchBackend, tiny: Path, tmp_path: Path
) -> None:
    with pytest.raises(UserError, match="no adapters.safetensors"):
        backend.load_adapter(tmp_path)
    other_rank = make_backend(tiny, **{"lora.rank": 2})
    other_rank.save_adapter(tmp_path / "r2")
    with pytest.raises(UserError, match="does not fit"):
        backend.load_adapter(tmp_path / "r2")
    other_scale = make_backend(tiny, **{"lora.scale": 5.0})
    other_scale.save_adapter(tmp_path / "s5")
    with pytest.raises(UserError, match="lora.scale=5"):
        backend.load_adapter(tmp_path / "s5")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"lora.num_layers": 3}, "has 2 blocks"),
        ({"lora.keys": ["self_attn.nope"]}, "matched no layer"),
        ({"lora.keys": ["input_layernorm"]}, "not a linear layer"),
    ],
)
def test_bad_lora_config_is_a_user_error(
    tiny: Path, overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(UserError, match=message):
        make_backend(tiny, **overrides)


def test_lora_placement_follows_keys_and_num_layers(tiny: Path) -> None:
    b = make_backend(
        tiny, **{"lora.num_layers": 1, "lora.keys": ["self_attn.q_proj", "self_attn.v_proj"]}
    )
    assert [name for name, _ in b._lora] == [
        "model.layers.1.self_attn.q_proj",
        "model.layers.1.self_attn.v_proj",
    ]
    config = b.adapter_config()
    assert config["num_layers"] == 1 and config["layers_to_transform"] == [1]
    assert sorted(config["target_modules"]) == ["self_attn.q_proj", "self_attn.v_proj"]


def test_mlx_quantized_folder_is_refused(tiny: Path, tmp_path: Path) -> None:
    from mlx_lm import convert

    quantized = tmp_path / "q4"
    convert(str(tiny), mlx_path=str(quantized), quantize=True, q_group_size=32, q_bits=4)
    with pytest.raises(UserError, match="mlx-quantized"):
        make_backend(quantized)


def test_device_override(monkeypatch: pytest.MonkeyPatch) -> None:
    from lsp_mlx.backends.torch_models import pick_device, pick_dtype

    monkeypatch.setenv("LSP_MLX_DEVICE", "cpu")
    assert pick_device() == torch.device("cpu") and pick_dtype(torch.device("cpu")) == torch.float32
    monkeypatch.setenv("LSP_MLX_DEVICE", "tpu-please")
    with pytest.raises(UserError, match="LSP_MLX_DEVICE"):
        pick_device()


def test_reward_model_scores_each_answer_like_a_single_pass(
    backend: TorchBackend, tiny: Path, tmp_path: Path
) -> None:
    """A real (randomly initialised) one-label llama reward model, saved and loaded from disk."""
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    config = AutoConfig.from_pretrained(str(tiny), num_labels=1)
    config.pad_token_id = 0
    torch.manual_seed(0)
    rm = AutoModelForSequenceClassification.from_config(config)
    rm.save_pretrained(tmp_path / "rm")
    AutoTokenizer.from_pretrained(str(tiny)).save_pretrained(tmp_path / "rm")

    scorer = backend.load_reward_model(str(tmp_path / "rm"))
    queries = ["What is 2+2?", "Name a colour."]
    answers = [["4", "four, I think, but I am not entirely sure"], ["red"]]
    scores = scorer(queries, answers)
    assert [len(s) for s in scores] == [2, 1]
    tok = AutoTokenizer.from_pretrained(str(tmp_path / "rm"))
    rm.eval()
    for q, group, row in zip(queries, answers, scores):
        for a, score in zip(group, row):
            text = tok.apply_chat_template(
                [{"role": "user", "content": q}, {"role": "assistant", "content": a}],
                tokenize=False,
            )
            with torch.no_grad():
                single = (
                    rm(**tok(text, return_tensors="pt", add_special_tokens=False))
                    .logits[0, 0]
                    .item()
                )
            assert score == pytest.approx(single, abs=1e-4)  # right padding does not change a score
    assert len({round(s, 6) for row in scores for s in row}) == 3

    with pytest.raises(UserError, match="not found"):
        backend.load_reward_model("no-such-folder")


@pytest.mark.slow
def test_embedded_model_loads_the_same_through_every_path() -> None:
    """``default`` (our fp32 conversion), the raw GGUF (transformers' GGUF loader) and the 4-bit
    MLX folder (swapped for its fp32 twin) all give the same policy."""
    from lsp_mlx.backends.torch_models import load_causal_lm
    from lsp_mlx.models import resolve_model
    from lsp_mlx.models.embedded import embedded_gguf_path

    cpu = torch.device("cpu")
    prompt_text = (
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
    )
    answer = "The capital of France is Paris."
    scores = {}
    for spec in (
        "default",
        str(embedded_gguf_path()),
        str(resolve_model("default", dequantize=False).path),
    ):
        loaded = load_causal_lm(spec, cpu, torch.float32)
        ids = loaded.tokenizer.encode(prompt_text + answer, add_special_tokens=False)
        start = len(loaded.tokenizer.encode(prompt_text, add_special_tokens=False))
        with torch.no_grad():
            lp = torch.log_softmax(loaded.model(torch.tensor([ids])).logits[0].float(), -1)
        scores[loaded.source] = sum(lp[i - 1, ids[i]].item() for i in range(start, len(ids)))
        if loaded.source != "gguf":
            assert loaded.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert set(scores) == {"embedded", "gguf", "folder"}
    assert scores["embedded"] > -5  # the model is sure of Paris
    assert scores["gguf"] == pytest.approx(scores["embedded"], abs=1e-3)
    assert scores["folder"] == pytest.approx(
        scores["embedded"], abs=1e-6
    )  # the very same fp32 folder


def _full_sequence_token_logprobs(b: TorchBackend, prompt: list[int], completion: list[int]):
    """The oracle: the whole sequence through the model, the completion's tokens read off."""
    ids = torch.tensor([prompt + completion])
    logits = b.model(input_ids=ids).logits[0, len(prompt) - 1 : -1].float()
    return torch.log_softmax(logits, -1).gather(-1, torch.tensor(completion)[:, None])[:, 0]


def test_shared_prompt_passes_equal_full_sequences(tiny: Path) -> None:
    """Each prompt run once with its KV cache shared (and the judge's common prefix once) gives
    the log-probs, loss and gradient norm of running every full sequence on its own."""
    b = make_backend(tiny, **{"train.micro_batch_size": 2, "train.max_grad_norm": 0.0})
    randomize_adapter(b)
    ps = prompts(b)
    texts = ["red", "a much longer answer than the others", "x", "four"]
    samples = [
        PolicySample(ps[i], b.encode(t), a, 0.25, "solver")
        for i, t, a in [
            (0, texts[0], 1.0),
            (0, texts[1], -0.5),
            (0, texts[2], 0.3),
            (1, texts[3], -0.8),
        ]
    ]
    samples.append(PolicySample(ps[2], [], 0.4, 0.1, "solver"))  # no completion token
    pairs = [(s.prompt, s.completion) for s in samples]
    with torch.no_grad():
        expected = [
            float(_full_sequence_token_logprobs(b, p, c).sum()) if c else 0.0 for p, c in pairs
        ]
    assert b.sequence_logprobs(pairs) == pytest.approx(expected, abs=1e-4)

    ids = [b.encode(str(k))[0] for k in range(8)]
    judged = [p + b.encode(f"Score: {k}") for k, p in enumerate(ps)]
    with torch.no_grad():
        direct = [
            torch.log_softmax(b.model(input_ids=torch.tensor([p])).logits[0, -1].float(), -1)[ids]
            for p in judged
        ]
    got = b.next_token_logprobs(judged, ids)
    for row, want in zip(got, direct):
        assert row == pytest.approx(want.tolist(), abs=1e-4)

    beta = 0.1
    params = [p for p in b.model.parameters() if p.requires_grad]
    loss = torch.zeros(())
    for s in samples:
        if not s.completion:
            loss = loss - s.weight * s.advantage
            continue
        with torch.no_grad(), b.model.disable_adapter():
            ref = _full_sequence_token_logprobs(b, s.prompt, s.completion).sum()
        lp = _full_sequence_token_logprobs(b, s.prompt, s.completion).sum()
        loss = loss - s.weight * (torch.exp(lp - lp.detach()) * s.advantage - beta * (lp - ref))
    grads = torch.autograd.grad(loss, params)
    norm = float(torch.sqrt(sum((g * g).sum() for g in grads)))
    stats = b.train_step(samples, beta=beta)
    assert stats.loss == pytest.approx(float(loss.detach()), abs=1e-6)
    assert stats.grad_norm == pytest.approx(norm, rel=1e-5)

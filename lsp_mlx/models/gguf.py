"""Convert a llama-architecture GGUF file into an ordinary mlx-lm model folder.

``mx.load`` reads GGUF natively: Q4_0/Q4_1/Q8_0 tensors come back as mlx affine-quantized
triples (``weight`` uint32-packed, ``scales``, ``biases``, group size 32), which represent
those formats exactly. We rename the tensors to Hugging Face names, undo llama.cpp's Q/K row
permutation (so ``rope_traditional`` stays false and LoRA adapters trained on the folder are
valid for the original HF checkpoint), and write config, weights and tokenizer files.

mlx is imported inside the functions: ``lsp_mlx.models`` must import without it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Any

from lsp_mlx.errors import UserError

CONVERTER_VERSION = 1
SOURCE_FILE = "lsp_mlx_source.json"
GGUF_GROUP_SIZE = 32  # every GGUF format mx.load keeps quantized uses blocks of 32

# GGUF tensor name (after "blk.{i}.") -> Hugging Face module name (after "model.layers.{i}.").
_LAYER_NAMES = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
}
_TOP_NAMES = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}

# The split regexes llama.cpp uses for tokenizer.ggml.pre values; "smollm" is GPT-2's regex
# after splitting every digit off, which is what the original HF tokenizer.json does.
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_PRE_SPLITS = {"llama3": _LLAMA3_SPLIT, "llama-v3": _LLAMA3_SPLIT, "llama-bpe": _LLAMA3_SPLIT}
_DIGIT_SPLIT_PRES = {"smollm", "starcoder", "refact"}


def is_gguf_file(path: str | Path) -> bool:
    """True if ``path`` is a regular file that starts with the GGUF magic bytes."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"GGUF"
    except OSError:
        return False


@lru_cache(maxsize=16)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def file_sha256(path: str | Path) -> str:
    """sha256 of a file, memoised per (path, size, mtime) because the cache lookup needs it often."""
    p = Path(path).resolve()
    st = p.stat()
    return _sha256_cached(str(p), st.st_size, st.st_mtime_ns)


def _py(value: Any) -> Any:
    """GGUF metadata scalars come back as 0-d mx.arrays; turn them into Python values."""
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    return value


def _unpermute_rows(w: Any, n_head: int) -> Any:
    """Inverse of llama.cpp's ``permute``: reshape(n, 2, d/2, ...).swapaxes(1, 2) on the rows.

    Quantization groups run along the input (last) axis, so applying this to the packed weight,
    its scales and its biases moves whole rows and stays exact.
    """
    rows = w.shape[0]
    return w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _hf_name(gguf_name: str, path: Path) -> str:
    stem, _, suffix = gguf_name.rpartition(".")
    if stem.startswith("blk."):
        _, layer, part = stem.split(".", 2)
        if part in _LAYER_NAMES:
            return f"model.layers.{layer}.{_LAYER_NAMES[part]}.{suffix}"
    elif stem in _TOP_NAMES:
        return f"{_TOP_NAMES[stem]}.{suffix}"
    if stem == "rope_freqs":
        raise UserError(
            f"{path} uses llama3-style RoPE scaling (rope_freqs), which the GGUF converter does not "
            "support: pass the original Hugging Face model folder or Hub id instead"
        )
    raise UserError(
        f"{path} has a tensor the llama GGUF converter does not know ({gguf_name}): "
        "pass the original Hugging Face model folder or Hub id instead"
    )


def _build_config(meta: dict[str, Any], weights: dict[str, Any], path: Path) -> dict[str, Any]:
    def get(key: str, default: Any = None) -> Any:
        return _py(meta.get(f"llama.{key}", default))

    hidden = int(get("embedding_length"))
    n_heads = int(get("attention.head_count"))
    n_kv = int(get("attention.head_count_kv", n_heads))
    head_dim = int(get("attention.key_length", hidden // n_heads))
    eps = float(get("attention.layer_norm_rms_epsilon", 1e-5))
    config: dict[str, Any] = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": hidden,
        "num_hidden_layers": int(get("block_count")),
        "intermediate_size": int(get("feed_forward_length")),
        "num_attention_heads": n_heads,
        "num_key_value_heads": n_kv,
        "head_dim": head_dim,
        # GGUF stores f32: 1e-5 reads back as 9.99999974e-06; print it the way HF configs do.
        "rms_norm_eps": float(f"{eps:.7g}"),
        "rope_theta": float(f"{float(get('rope.freq_base', 10000.0)):.7g}"),
        "rope_traditional": False,  # we undo llama.cpp's permutation, so HF (split-half) RoPE
        "max_position_embeddings": int(get("context_length", 2048)),
        "vocab_size": int(weights["token_embd.weight"].shape[0]),
        "tie_word_embeddings": "output.weight" not in weights,
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
    }
    scaling = _py(meta.get("llama.rope.scaling.type"))
    if scaling not in (None, "none"):
        if scaling != "linear":
            raise UserError(
                f"{path} uses RoPE scaling {scaling!r}, which the GGUF converter does not support: "
                "pass the original Hugging Face model folder or Hub id instead"
            )
        config["rope_scaling"] = {"type": "linear", "factor": float(get("rope.scaling.factor"))}
    if head_dim * n_heads != weights["blk.0.attn_q.weight"].shape[0]:
        raise UserError(f"{path} has attention shapes the llama converter does not understand")
    return config


def _special_ids(meta: dict[str, Any], tokens: list[str]) -> dict[str, int | None]:
    def tid(key: str) -> int | None:
        v = _py(meta.get(f"tokenizer.ggml.{key}_token_id"))
        return int(v) if v is not None and 0 <= int(v) < len(tokens) else None

    ids = {k: tid(k) for k in ("bos", "eos", "pad", "unknown")}
    if ids["pad"] is None:
        ids["pad"] = ids["eos"]
    return ids


def _write_tokenizer(meta: dict[str, Any], path: Path, out: Path) -> list[int]:
    """Build a byte-level BPE ``tokenizer.json`` from the GGUF vocab and merges.

    Done with ``tokenizers`` directly: transformers' own GGUF tokenizer reader imports torch,
    and the mlx backend must work without it. Returns the EOS ids for config.json.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

    kind = _py(meta.get("tokenizer.ggml.model"))
    if kind != "gpt2":
        raise UserError(
            f"{path} has a {kind!r} tokenizer; the GGUF converter only builds byte-level BPE "
            "(gpt2) tokenizers: pass the original Hugging Face model folder or Hub id instead"
        )
    tokens: list[str] = list(meta["tokenizer.ggml.tokens"])
    merges = [tuple(m.split(" ", 1)) for m in meta.get("tokenizer.ggml.merges", [])]
    types = meta.get("tokenizer.ggml.token_type")
    types = types.tolist() if types is not None else [1] * len(tokens)

    bpe = models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges, fuse_unk=False)
    tok = Tokenizer(bpe)
    pre = _py(meta.get("tokenizer.ggml.pre")) or "default"
    if pre in _PRE_SPLITS:
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(_PRE_SPLITS[pre]), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    else:
        steps = [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
        if pre in _DIGIT_SPLIT_PRES:
            steps.insert(0, pre_tokenizers.Digits(individual_digits=True))
        tok.pre_tokenizer = pre_tokenizers.Sequence(steps)
    tok.decoder = decoders.ByteLevel()
    # Control tokens (type 3, e.g. <|im_start|>) must stay whole instead of being BPE-split.
    tok.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t, k in zip(tokens, types) if k == 3]
    )
    tok.save(str(out / "tokenizer.json"))

    ids = _special_ids(meta, tokens)
    template = _py(meta.get("tokenizer.chat_template"))
    special = {
        name: tokens[ids[key]]
        for name, key in (("bos_token", "bos"), ("eos_token", "eos"), ("pad_token", "pad"))
        if ids[key] is not None
    }
    if ids["unknown"] is not None:
        special["unk_token"] = tokens[ids["unknown"]]
    tok_config: dict[str, Any] = {
        # PreTrainedTokenizerFast loads tokenizer.json verbatim (GPT2Tokenizer may rebuild it).
        "tokenizer_class": "PreTrainedTokenizerFast",
        **special,
        "add_bos_token": bool(_py(meta.get("tokenizer.ggml.add_bos_token", False))),
        "add_eos_token": bool(_py(meta.get("tokenizer.ggml.add_eos_token", False))),
        "clean_up_tokenization_spaces": False,
        "model_max_length": int(_py(meta.get("llama.context_length", 2048))),
    }
    if template:
        tok_config["chat_template"] = template
    (out / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2, ensure_ascii=False))
    (out / "special_tokens_map.json").write_text(json.dumps(special, indent=2, ensure_ascii=False))

    eos_ids = [ids["eos"]] if ids["eos"] is not None else []
    # A ChatML template ends assistant turns with <|im_end|>: stop there even if the file's
    # EOS is <|endoftext|> (mlx-lm stops on every id in config.json's eos_token_id).
    if template and "<|im_end|>" in template and "<|im_end|>" in tokens:
        im_end = tokens.index("<|im_end|>")
        if im_end not in eos_ids:
            eos_ids.append(im_end)
    return eos_ids


def _convert_tensors(
    weights: dict[str, Any], config: dict[str, Any], path: Path, dequantize: bool
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Rename and un-permute tensors; returns HF-named tensors and the quantization block."""
    import mlx.core as mx

    out: dict[str, Any] = {}
    bits_of: dict[str, int] = {}  # HF module name -> bits, for quantized modules
    heads = {
        "self_attn.q_proj": config["num_attention_heads"],
        "self_attn.k_proj": config["num_key_value_heads"],
    }
    for name in sorted(weights):
        if name.endswith((".scales", ".biases")):
            continue  # handled with their .weight
        hf = _hf_name(name, path)
        module = hf.rsplit(".", 1)[0]
        n_head = next((n for k, n in heads.items() if module.endswith(k)), None)
        stem = name.rsplit(".", 1)[0]
        parts = {"weight": weights[name]}
        if f"{stem}.scales" in weights:
            parts["scales"] = weights[f"{stem}.scales"]
            parts["biases"] = weights[f"{stem}.biases"]
        if n_head is not None:
            parts = {k: _unpermute_rows(v, n_head) for k, v in parts.items()}
        if "scales" not in parts:
            w = parts["weight"]
            # In 4-bit mode keep one float dtype (the scales' fp16) so activations stay uniform,
            # like mlx-community 4-bit checkpoints; fp32 mode is fp32 throughout.
            out[hf] = w.astype(mx.float32 if dequantize else mx.float16)
            continue
        bits = parts["weight"].shape[-1] // parts["scales"].shape[-1]
        if dequantize:
            # fp32 scales/biases so w = scale * q + bias is computed exactly, not in fp16.
            out[hf] = mx.dequantize(
                parts["weight"],
                parts["scales"].astype(mx.float32),
                parts["biases"].astype(mx.float32),
                group_size=GGUF_GROUP_SIZE,
                bits=bits,
            )
        else:
            bits_of[module] = bits
            for k, v in parts.items():
                out[f"{module}.{k}"] = v
    if dequantize:
        return out, None
    default_bits = Counter(bits_of.values()).most_common(1)[0][0] if bits_of else 4
    quant: dict[str, Any] = {"group_size": GGUF_GROUP_SIZE, "bits": default_bits}
    # mlx-lm reads per-module overrides from the same block (older versions do not infer them
    # from the tensor shapes), so name every module whose bits differ from the default.
    for module, bits in bits_of.items():
        if bits != default_bits:
            quant[module] = {"group_size": GGUF_GROUP_SIZE, "bits": bits}
    for hf in out:
        module = hf.rsplit(".", 1)[0]
        if hf.endswith(".weight") and module not in bits_of and "norm" not in module:
            quant[module] = False  # a float matrix in a quantized model: leave it unquantized
    return out, quant


def _base_model_id(meta: dict[str, Any]) -> str | None:
    """The Hub id the GGUF says it was made from, when it says so."""
    url = _py(meta.get("general.base_model.0.repo_url")) or _py(meta.get("general.source.repo_url"))
    prefix = "https://huggingface.co/"
    if isinstance(url, str) and url.startswith(prefix) and url[len(prefix) :].count("/") == 1:
        return url[len(prefix) :]
    return None


def convert_gguf(
    gguf_path: str | Path, out_dir: str | Path, *, dequantize: bool, overwrite: bool = True
) -> Path:
    """Write an mlx-lm model folder for a llama GGUF file; returns ``out_dir``.

    The folder is built in a temporary sibling and renamed into place, so readers never see a
    half-written folder. If ``out_dir`` already exists: ``overwrite=True`` replaces it,
    ``overwrite=False`` keeps it (another process won the race) and returns it.
    """
    path = Path(gguf_path).expanduser()
    out = Path(out_dir).expanduser()
    if not path.is_file():
        raise UserError(f"GGUF file not found: {path}: pass the path of an existing .gguf file")
    if not is_gguf_file(path):
        raise UserError(
            f"{path} is not a GGUF file (it does not start with 'GGUF'): "
            "pass a real .gguf model file, a model folder or a Hub id"
        )
    import mlx.core as mx

    try:
        weights, meta = mx.load(str(path), return_metadata=True)
    except Exception as e:  # a truncated or unsupported file; mlx raises plain RuntimeError
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"cannot read GGUF file {path} ({msg}): re-download it") from e
    arch = _py(meta.get("general.architecture"))
    if arch != "llama":
        raise UserError(
            f"{path} is a {arch!r} GGUF, but only the 'llama' architecture can be converted: "
            "pass the original Hugging Face model folder or Hub id instead"
        )

    config = _build_config(meta, weights, path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes it 0700; the finished folder is an ordinary one
    try:
        eos_ids = _write_tokenizer(meta, path, tmp)
        tensors, quant = _convert_tensors(weights, config, path, dequantize)
        del weights
        ids = _special_ids(meta, list(meta["tokenizer.ggml.tokens"]))
        config["bos_token_id"] = ids["bos"]
        config["eos_token_id"] = eos_ids[0] if len(eos_ids) == 1 else eos_ids
        config["pad_token_id"] = ids["pad"]
        config["torch_dtype"] = "float32" if dequantize else "float16"
        if quant is not None:
            config["quantization"] = quant
            config["quantization_config"] = quant  # what mlx-lm's own converter also writes
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        mx.save_safetensors(str(tmp / "model.safetensors"), tensors, metadata={"format": "mlx"})
        del tensors
        st = path.stat()
        source = {
            "gguf_path": str(path.resolve()),
            "gguf_size": st.st_size,
            "gguf_sha256_prefix": file_sha256(path)[:16],
            "dequantize": dequantize,
            "converter_version": CONVERTER_VERSION,
            "general_name": _py(meta.get("general.name")),
            "base_model": _base_model_id(meta),
        }
        (tmp / SOURCE_FILE).write_text(json.dumps(source, indent=2))
        _move_into_place(tmp, out, overwrite)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _move_into_place(tmp: Path, out: Path, overwrite: bool) -> None:
    try:
        os.rename(tmp, out)  # atomic; fails if out exists and is not an empty folder
        return
    except OSError:
        if not out.exists():
            raise
    if not overwrite:
        return  # someone else finished first; their folder is complete (it was renamed in too)
    trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    os.replace(out, trash / out.name)
    os.rename(tmp, out)
    shutil.rmtree(trash, ignore_errors=True)

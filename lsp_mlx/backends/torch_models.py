"""Where the torch backend runs and what it loads: device, dtype, causal LMs, reward models.

Device rule: CUDA if present, else Apple MPS, else CPU (``LSP_MLX_DEVICE`` overrides it).
Dtype rule: bf16 on CUDA (fp16 where the GPU has no bf16), fp32 on MPS and CPU: CPUs have no
fast half-precision matmul, and MPS bf16 support depends on the macOS version.

Models resolve through `lsp_mlx.models.resolve_model`, so ``default`` is the same cached fp32
Hugging Face-layout folder (Q/K un-permuted) the MLX backend opens: both backends start from
identical weights. A ``.gguf`` path goes through transformers' own GGUF loader.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from lsp_mlx.backends.passes import micro_batches
from lsp_mlx.errors import UserError
from lsp_mlx.models import resolve_model
from lsp_mlx.models.embedded import converted_model_dir
from lsp_mlx.models.gguf import SOURCE_FILE, is_gguf_file

DEVICE_ENV = "LSP_MLX_DEVICE"

transformers.utils.logging.disable_progress_bar()  # "Loading weights" bars would litter the run log
transformers.utils.logging.set_verbosity_error()


def pick_device() -> torch.device:
    """CUDA, else MPS, else CPU; ``LSP_MLX_DEVICE=cpu|cuda|cuda:1|mps`` forces one."""
    forced = os.environ.get(DEVICE_ENV)
    if forced:
        try:
            device = torch.device(forced)
        except RuntimeError:
            raise UserError(
                f"{DEVICE_ENV}={forced!r} is not a torch device: use cpu, cuda, cuda:N or mps"
            ) from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise UserError(
                f"{DEVICE_ENV}={forced} but torch sees no CUDA GPU: unset it or install a CUDA build of torch"
            )
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise UserError(f"{DEVICE_ENV}={forced} but MPS is not available: unset it")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_dtype(device: torch.device) -> torch.dtype:
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


@dataclass
class LoadedModel:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    path: str  # the folder (or Hub id, or .gguf file) the weights came from
    base_model: str | None  # Hub id of the original model, for adapter configs and export
    source: str  # embedded, gguf, folder or hub


def _open(
    path: str | Path,
    gguf_file: str | None,
    dtype: torch.dtype,
    trust: bool,
    cls: Any = AutoModelForCausalLM,
) -> tuple[Any, Any]:
    kwargs: dict[str, Any] = {"trust_remote_code": trust}
    if gguf_file:
        kwargs["gguf_file"] = gguf_file
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), **kwargs)
        model = cls.from_pretrained(str(path), dtype=dtype, **kwargs)
    except (OSError, ValueError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(
            f"transformers cannot open model {str(path)!r} ({first}): pass a Hugging Face model folder, "
            "a .gguf file or a cached Hub id"
        ) from None
    return model, tokenizer


def _check_unquantized(folder: Path) -> None:
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return
    if "quantization" in config:  # mlx-lm's packed affine weights: torch cannot run them
        raise UserError(
            f"{folder} holds mlx-quantized weights, which the torch backend cannot run: "
            "pass the original Hugging Face folder, a .gguf file, or use --backend mlx"
        )


def _fp32_twin(folder: Path) -> Path:
    """For a 4-bit folder we converted from a GGUF (the trainer resolves models for MLX, which
    keeps them quantized on Apple Silicon): the fp32 conversion of the same GGUF, which torch runs."""
    try:
        config = json.loads((folder / "config.json").read_text())
        gguf = json.loads((folder / SOURCE_FILE).read_text()).get("gguf_path")
    except (OSError, ValueError, AttributeError):
        return folder
    if "quantization" not in config or not gguf or not Path(gguf).is_file():
        return folder
    return converted_model_dir(gguf, dequantize=True)


def load_causal_lm(
    spec: str, device: torch.device, dtype: torch.dtype, trust_remote_code: bool = False
) -> LoadedModel:
    """Open ``default``, a ``.gguf`` file, a model folder or a Hub id as a transformers causal LM."""
    path = Path(spec).expanduser()
    if (
        spec.strip() != "default"
        and path.is_file()
        and (path.suffix.lower() == ".gguf" or is_gguf_file(path))
    ):
        model, tokenizer = _open(path.parent, path.name, dtype, trust_remote_code)
        source, where, base = "gguf", str(path), None
    else:
        try:
            resolved = resolve_model(spec, dequantize=True)
        except ImportError:
            # no mlx on this machine to convert the embedded GGUF: let transformers read it
            from lsp_mlx.models.embedded import DEFAULT_BASE_MODEL, embedded_gguf_path

            gguf = embedded_gguf_path()
            model, tokenizer = _open(gguf.parent, gguf.name, dtype, trust_remote_code)
            return _finish(
                LoadedModel(model, tokenizer, str(gguf), DEFAULT_BASE_MODEL, "embedded"), device
            )
        if resolved.source != "hub":
            resolved.path = _fp32_twin(resolved.path)
            _check_unquantized(resolved.path)
        where = str(resolved.path)
        model, tokenizer = _open(where, None, dtype, trust_remote_code)
        source, base = resolved.source, resolved.base_model
    return _finish(LoadedModel(model, tokenizer, where, base, source), device)


def _finish(loaded: LoadedModel, device: torch.device) -> LoadedModel:
    loaded.model.to(device)
    loaded.model.eval()
    for p in loaded.model.parameters():
        p.requires_grad_(False)
    return loaded


def eos_token_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> set[int]:
    """Every id that ends a reply: the tokenizer's EOS and the config/generation-config ones
    (mlx-lm's ``TokenizerWrapper.eos_token_ids`` collects the same set)."""
    ids: set[int] = set()
    for value in (
        tokenizer.eos_token_id,
        getattr(model.config, "eos_token_id", None),
        getattr(getattr(model, "generation_config", None), "eos_token_id", None),
    ):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(int(v) for v in value)
    if not ids:
        raise UserError(
            "the model defines no EOS token (tokenizer and config.json): add eos_token_id to config.json"
        )
    return ids


class TorchRewardModel:
    """A scalar reward model (``AutoModelForSequenceClassification``, one label): it scores
    (query, answer) rendered as a user/assistant chat, the way reward models are trained."""

    def __init__(
        self,
        spec: str,
        device: torch.device,
        dtype: torch.dtype,
        micro_batch_size: int = 8,
        trust_remote_code: bool = False,
    ) -> None:
        path = Path(spec).expanduser()
        if path.is_dir():
            _check_unquantized(path)
        elif not path.exists() and "/" not in spec:
            raise UserError(
                f"reward model {spec!r} not found: pass a sequence-classification model folder or a Hub id org/name"
            )
        self.model, self.tokenizer = _open(
            spec, None, dtype, trust_remote_code, AutoModelForSequenceClassification
        )
        if self.model.config.num_labels != 1:
            raise UserError(
                f"reward model {spec!r} has {self.model.config.num_labels} labels but a scalar reward model has 1: "
                "pass a reward model (sequence classification with num_labels=1)"
            )
        self.model.to(device).eval()
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if (
            self.model.config.pad_token_id is None
        ):  # the classifier head finds the last token by pad id
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.device = device
        self.micro_batch_size = micro_batch_size

    def _render(self, query: str, answer: str) -> str:
        if self.tokenizer.chat_template:
            chat = [{"role": "user", "content": query}, {"role": "assistant", "content": answer}]
            return str(self.tokenizer.apply_chat_template(chat, tokenize=False))
        return f"{query}\n\n{answer}"

    @torch.no_grad()
    def __call__(self, queries: list[str], answers: list[list[str]]) -> list[list[float]]:
        texts = [self._render(q, a) for q, group in zip(queries, answers) for a in group]
        scores: list[float] = []
        self.tokenizer.padding_side = "right"
        templated = bool(self.tokenizer.chat_template)
        for chunk in micro_batches(texts, self.micro_batch_size):
            batch = self.tokenizer(
                list(chunk),
                return_tensors="pt",
                padding=True,
                add_special_tokens=not templated,  # a chat template writes BOS itself where it wants one
            ).to(self.device)
            logits = self.model(**batch).logits
            scores.extend(logits[:, 0].float().tolist())
        out, i = [], 0
        for group in answers:
            out.append(scores[i : i + len(group)])
            i += len(group)
        return out

"""Base model + trained adapter, loaded once, answering with the adapter on or off.

``lsp-mlx chat`` and ``lsp-mlx generate`` use this. The adapter is loaded with mlx-lm's own
``load(..., adapter_path=...)``; "adapter off" zeroes every ``LoRALinear.scale`` for the
duration (ALGORITHMS.md §5: the base model is the adapted one with the adapter switched
off), so ``--compare`` holds one copy of the weights, not two.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lsp_mlx.errors import UserError
from lsp_mlx.export.source import AdapterSource, locate_base_model


class AdapterSession:
    def __init__(self, source: AdapterSource, model: str | None = None) -> None:
        from lsp_mlx import blas

        blas.preload()
        import mlx.core as mx
        import mlx.nn as nn
        from mlx_lm import load

        self.source = source
        self.base = locate_base_model(source, model)
        try:
            self.model, self.tokenizer = load(str(self.base), adapter_path=str(source.adapter_dir))
        except FileNotFoundError as e:
            raise UserError(
                f"cannot load the base model {self.base} ({e}): pass it with --model PATH"
            ) from None
        except ValueError as e:  # mlx-lm's load_adapters: the adapter does not fit this base
            first = str(e).splitlines()[0]
            raise UserError(
                f"the adapter in {source.adapter_dir} does not fit {self.base} ({first}): pass the base it was trained on with --model"
            ) from None
        quantized = any(isinstance(m, nn.QuantizedLinear) for _, m in self.model.named_modules())
        if sys.platform != "darwin" and not quantized:
            self.model.set_dtype(mx.float32)  # x86 CPUs have no fast fp16/bf16 matmul
        self.model.eval()
        self._lora = [m for _, m in self.model.named_modules() if hasattr(m, "lora_a")]
        if not self._lora:
            raise UserError(
                f"the adapter in {source.adapter_dir} adapts no layer: re-export or re-train it"
            )

    @contextlib.contextmanager
    def adapter(self, enabled: bool = True) -> Iterator[None]:
        """Answer with the adapter (default) or with the plain base model inside the block."""
        if enabled:
            yield
            return
        scales = [m.scale for m in self._lora]
        for m in self._lora:
            m.scale = 0.0
        try:
            yield
        finally:
            for m, s in zip(self._lora, scales):
                m.scale = s

    def prompt_tokens(self, messages: list[dict[str, str]]) -> list[int]:
        if self.tokenizer.chat_template is None:
            text = "\n\n".join(m["content"] for m in messages) + "\n\n"
            return list(self.tokenizer.encode(text))
        return list(self.tokenizer.apply_chat_template(messages, add_generation_prompt=True))

    def stream(
        self,
        prompt: list[int],
        *,
        adapter: bool = True,
        max_tokens: int = 256,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
    ) -> Iterator[str]:
        """Text pieces of one completion of ``prompt`` (token ids), as they are generated."""
        import mlx.core as mx
        from mlx_lm import stream_generate
        from mlx_lm.sample_utils import make_sampler

        if seed is not None:
            mx.random.seed(seed)
        sampler = make_sampler(temp=temperature, top_p=top_p if top_p < 1.0 else 0.0)
        with self.adapter(adapter):
            for response in stream_generate(
                self.model, self.tokenizer, prompt, max_tokens=max_tokens, sampler=sampler
            ):
                yield response.text

    def complete(self, prompt: list[int], **kwargs: Any) -> str:
        return "".join(self.stream(prompt, **kwargs))

    def describe(self) -> str:
        it = f" (iteration {self.source.iteration})" if self.source.iteration is not None else ""
        return f"base {self.base} + adapter {self.source.adapter_dir}{it}"


def open_session(
    path: str | Path, checkpoint: int | None = None, model: str | None = None
) -> AdapterSession:
    from lsp_mlx.export.source import resolve_source

    return AdapterSession(resolve_source(path, checkpoint), model)

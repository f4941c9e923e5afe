"""Base model + trained adapter, loaded once, answering with the adapter on or off.

``lsp-mlx chat`` and ``lsp-mlx generate`` use this. The adapter is loaded with mlx-lm's own
``load(..., adapter_path=...)``; "adapter off" zeroes every ``LoRALinear.scale`` for the
duration (docs/algorithms.md §5: the base model is the adapted one with the adapter switched
off), so ``--compare`` holds one copy of the weights, not two.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lsp_mlx.backends.base import chat_tokens
from lsp_mlx.errors import UserError
from lsp_mlx.export.source import AdapterSource, locate_base_model


class AdapterSession:
    def __init__(self, source: AdapterSource, model: str | None = None) -> None:
        from lsp_mlx import blas

        blas.preload()
        from mlx_lm import load

        from lsp_mlx.backends.mlx_common import lora_modules, use_fast_dtype

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
        use_fast_dtype(self.model)
        self.model.eval()
        self._lora = lora_modules(self.model)
        if not self._lora:
            raise UserError(
                f"the adapter in {source.adapter_dir} adapts no layer: re-export or re-train it"
            )

    def adapter(self, enabled: bool = True) -> contextlib.AbstractContextManager[None]:
        """Answer with the adapter (default) or with the plain base model inside the block."""
        from lsp_mlx.backends.mlx_common import adapter_off

        return contextlib.nullcontext() if enabled else adapter_off(self._lora)

    def prompt_tokens(self, messages: list[dict[str, str]]) -> list[int]:
        return chat_tokens(self.tokenizer, messages)

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

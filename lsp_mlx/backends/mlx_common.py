"""What the MLX backend and the export chat session both do to an mlx-lm model.

- x86 CPUs have no fast bf16/fp16 matmul, so an unquantized model runs in fp32 off macOS.
- "Adapter off" (the reference policy, ``chat --compare``) zeroes every LoRA layer's ``scale``
  for the duration: one copy of the weights serves both (docs/algorithms.md §5).
Import this module after `lsp_mlx.blas.preload`.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Sequence

import mlx.core as mx
import mlx.nn as nn


def is_quantized(model: nn.Module) -> bool:
    return any(isinstance(m, nn.QuantizedLinear) for _, m in model.named_modules())


def use_fast_dtype(model: nn.Module) -> None:
    """fp32 for an unquantized model on a machine other than a Mac (x86 has no fast half matmul)."""
    if sys.platform != "darwin" and not is_quantized(model):
        model.set_dtype(mx.float32)


def lora_modules(model: nn.Module) -> list[nn.Module]:
    return [m for _, m in model.named_modules() if hasattr(m, "lora_a")]


@contextlib.contextmanager
def adapter_off(modules: Sequence[nn.Module]) -> Iterator[None]:
    """The base model: every LoRA ``scale`` at 0 inside the block, restored after it."""
    scales = [m.scale for m in modules]
    for m in modules:
        m.scale = 0.0
    try:
        yield
    finally:
        for m, s in zip(modules, scales):
            m.scale = s

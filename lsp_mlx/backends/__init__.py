"""Backends: where the model lives. ``get_backend("mlx")`` imports mlx only when called."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lsp_mlx.errors import UserError

if TYPE_CHECKING:
    from lsp_mlx.backends.base import Backend
    from lsp_mlx.config import Config


def get_backend(config: Config) -> Backend:
    """Build the backend named by ``config.train.backend`` with the run's model and LoRA."""
    name = config.train.backend
    if name == "mlx":
        from lsp_mlx.backends.mlx import MLXBackend

        return MLXBackend(config)
    if name == "torch":
        import importlib.util

        # find_spec, not import: importing transformers without torch prints its own warning
        if any(importlib.util.find_spec(m) is None for m in ("torch", "transformers", "peft")):
            raise UserError(
                "--backend torch needs PyTorch, transformers and peft: run pip install 'lsp-mlx[torch]'"
            )
        from lsp_mlx.backends.torch import TorchBackend

        return TorchBackend(config)
    raise UserError(f"unknown backend {name!r}: use mlx or torch")

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
        try:
            import peft  # noqa: F401
            import torch  # noqa: F401
            import transformers  # noqa: F401
        except ImportError:
            raise UserError(
                "--backend torch needs PyTorch, transformers and peft: run pip install 'lsp-mlx[torch]'"
            ) from None
        from lsp_mlx.backends.torch import TorchBackend

        return TorchBackend(config)
    raise UserError(f"unknown backend {name!r}: use mlx or torch")

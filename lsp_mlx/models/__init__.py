"""Model resolution: the embedded GGUF, GGUF files, local folders and Hub ids.

Importing this package does not import mlx (the TUI imports it without mlx installed);
the conversion code imports mlx when it runs.
"""

from lsp_mlx.models.embedded import DEFAULT_BASE_MODEL
from lsp_mlx.models.resolve import ResolvedModel, resolve_model

__all__ = ["DEFAULT_BASE_MODEL", "ResolvedModel", "resolve_model"]

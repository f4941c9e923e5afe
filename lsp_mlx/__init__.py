"""lsp-mlx: language self-play (LSP, LSP-Zero and related games) with LoRA on MLX.

Importing the package is cheap and imports neither mlx nor torch: the backends are
loaded on demand (``lsp_mlx.backends.get_backend``) so the TUI, the exporter and the
config tools run without an accelerator framework.
"""

__version__ = "0.1.0"

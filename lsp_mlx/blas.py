"""Make MLX's CPU matmuls fast on Linux by loading OpenBLAS before mlx.

The Linux ``mlx-cpu`` wheel links the reference BLAS (about 7 GFLOP/s for fp32 matmul on
our 2-core machines). Loading OpenBLAS with ``RTLD_GLOBAL`` *before* ``import mlx.core``
makes the dynamic linker resolve mlx's ``cblas_*`` symbols to it (about 220 GFLOP/s).
On macOS mlx uses Accelerate and the GPU, and this does nothing.
"""

from __future__ import annotations

import ctypes
import os
import sys

_CANDIDATES = [
    "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0",
    "/usr/lib/aarch64-linux-gnu/openblas-pthread/libopenblas.so.0",
    "/usr/lib/x86_64-linux-gnu/libopenblas.so.0",
    "/usr/lib/aarch64-linux-gnu/libopenblas.so.0",
    "/usr/lib64/libopenblas.so.0",
    "/usr/lib/libopenblas.so.0",
]

_status: str | None = None


def _find_openblas() -> str | None:
    explicit = os.environ.get("LSP_MLX_OPENBLAS")
    if explicit:
        return explicit
    for path in _CANDIDATES:
        if os.path.exists(path):
            return path
    return None


def preload() -> str:
    """Load OpenBLAS if we can; returns a line saying which BLAS mlx will use. Idempotent."""
    global _status
    if _status is not None:
        return _status
    if sys.platform == "darwin":
        _status = "Accelerate (macOS)"
        return _status
    if "mlx.core" in sys.modules:
        _status = "unknown (mlx was imported before lsp_mlx.blas.preload)"
        return _status
    if os.environ.get("LSP_MLX_OPENBLAS") == "0":
        _status = "reference BLAS (OpenBLAS disabled by LSP_MLX_OPENBLAS=0)"
        return _status
    path = _find_openblas()
    if path is None:
        _status = "reference BLAS (slow: apt-get install libopenblas0-pthread for ~30x faster CPU matmuls)"
        return _status
    try:
        ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
    except OSError as e:
        _status = f"reference BLAS (could not load {path}: {e})"
        return _status
    _status = f"OpenBLAS ({path})"
    return _status


def status() -> str:
    return _status or "not loaded yet"

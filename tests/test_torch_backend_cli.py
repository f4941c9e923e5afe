"""``lsp-mlx train --backend torch`` as a real subprocess, and life without torch installed.

"Torch absent" is simulated by a ``sitecustomize`` that puts ``None`` in ``sys.modules["torch"]``:
Python then raises ModuleNotFoundError on ``import torch`` and ``importlib.util.find_spec``
returns None, exactly as when the package is not installed (uninstalling it here is not an option).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lsp_mlx.events import read_events

REPO = Path(__file__).resolve().parents[1]
INSTALL_HINT = "pip install 'lsp-mlx[torch]'"


def lsp_mlx(
    *args: str, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    # PASSIVE: torch's OpenMP threads otherwise spin-wait, which on a shared, oversubscribed
    # 2-core CI box makes each decode step ~15x slower (measured: 4.2 s vs 0.25 s per step)
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_WAIT_POLICY": "PASSIVE", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "lsp_mlx", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )


def hiding(tmp_path: Path, *modules: str) -> dict[str, str]:
    """Environment for a subprocess in which ``modules`` cannot be imported."""
    folder = tmp_path / "hide"
    folder.mkdir(exist_ok=True)
    lines = ["import sys"] + [f"sys.modules[{m!r}] = None" for m in modules]
    (folder / "sitecustomize.py").write_text("\n".join(lines) + "\n")
    path = os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {"PYTHONPATH": path}


def by_type(events: list[dict], kind: str) -> list[dict]:
    return [e for e in events if e["type"] == kind]


@pytest.mark.torch
def test_train_on_torch_writes_a_run_and_resumes(tiny_model: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("peft")
    run = tmp_path / "run"
    common = [
        "--backend",
        "torch",
        "--config",
        "configs/tiny.yaml",
        "--model",
        str(tiny_model),
        "--run-dir",
        str(run),
    ]
    done = lsp_mlx("train", *common, "--iterations", "2")
    assert done.returncode == 0, done.stderr
    assert (
        "backend torch on cpu (float32)" in done.stderr
        or "cuda" in done.stderr
        or "mps" in done.stderr
    )

    events = read_events(run / "events.jsonl")
    start = by_type(events, "run_start")[0]
    assert start["backend"] == "torch" and start["info"]["backend"] == "torch"
    assert len(by_type(events, "game")) == 2 * 2  # N = 2 queries per iteration
    assert [e["iteration"] for e in by_type(events, "metrics")] == [1, 2]
    assert by_type(events, "run_end")[-1]["status"] == "finished"
    latest = run / "checkpoints" / (run / "checkpoints" / "latest").read_text().strip()
    assert latest.name == "iter-000002"
    for name in (
        "adapters.safetensors",
        "adapter_model.safetensors",
        "adapter_config.json",
        "optimizer.safetensors",
        "torch_rng.safetensors",
        "state.json",
    ):
        assert (latest / name).is_file(), name
    assert json.loads((latest / "adapter_config.json").read_text())["fine_tune_type"] == "lora"
    assert (run / "adapters" / "adapters.safetensors").is_file()

    shot = tmp_path / "tui.svg"
    tui = lsp_mlx("tui", "--attach", str(run), "--screenshot", str(shot), "--size", "120x40")
    assert tui.returncode == 0, tui.stderr
    assert (
        "torch&#160;·&#160;" in shot.read_text()
    )  # the Run panel's "Backend  torch · cpu · ..." line

    resumed = lsp_mlx("train", *common, "--iterations", "3", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    events = read_events(run / "events.jsonl")
    assert by_type(events, "run_start")[-1]["resumed"] is True
    assert [e["iteration"] for e in by_type(events, "metrics")] == [1, 2, 3]


def test_backend_torch_without_torch_is_one_line_exit_2(tiny_model: Path, tmp_path: Path) -> None:
    done = lsp_mlx(
        "train",
        "--backend",
        "torch",
        "--config",
        "configs/tiny.yaml",
        "--model",
        str(tiny_model),
        "--run-dir",
        str(tmp_path / "run"),
        env=hiding(tmp_path, "torch"),
    )
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and INSTALL_HINT in errors[0], done.stderr
    assert "Traceback" not in done.stderr


def test_mlx_training_runs_without_torch(tiny_model: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    done = lsp_mlx(
        "train",
        "--config",
        "configs/tiny.yaml",
        "--model",
        str(tiny_model),
        "--iterations",
        "1",
        "--run-dir",
        str(run),
        env=hiding(tmp_path, "torch"),
    )
    assert done.returncode == 0, done.stderr
    assert by_type(read_events(run / "events.jsonl"), "run_end")[-1]["status"] == "finished"


def test_package_games_and_rewards_import_neither_torch_nor_mlx(tmp_path: Path) -> None:
    script = (
        "import importlib, pkgutil, sys\n"
        "import lsp_mlx, lsp_mlx.cli, lsp_mlx.games, lsp_mlx.rewards, lsp_mlx.records\n"
        "lsp_mlx.cli.build_parser()\n"
        "for pkg in (lsp_mlx.games, lsp_mlx.rewards):\n"
        "    for info in pkgutil.iter_modules(pkg.__path__, pkg.__name__ + '.'):\n"
        "        importlib.import_module(info.name)\n"
        "loaded = [m for m, mod in sys.modules.items() if mod is not None and m.split('.')[0] in ('torch', 'mlx', 'mlx_lm')]\n"
        "assert not loaded, loaded\n"
    )
    env = {**os.environ, **hiding(tmp_path, "torch", "mlx", "mlx.core", "mlx_lm")}
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.slow
@pytest.mark.torch
def test_one_iteration_on_the_embedded_model(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("peft")
    run = tmp_path / "run"
    small = [
        "game.num_queries=2",
        "game.group_size=2",
        "game.query_max_tokens=16",
        "game.answer_max_tokens=16",
        "lora.num_layers=2",
        "train.micro_batch_size=4",
    ]
    sets = [arg for s in small for arg in ("--set", s)]
    done = lsp_mlx(
        "train",
        "--backend",
        "torch",
        "--config",
        "configs/demo.yaml",
        "--model",
        "default",
        "--iterations",
        "1",
        "--run-dir",
        str(run),
        *sets,
    )
    assert done.returncode == 0, done.stderr
    events = read_events(run / "events.jsonl")
    assert by_type(events, "run_start")[0]["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    games = by_type(events, "game")
    assert len(games) == 2 and all(len(g["answers"]) == 2 for g in games)
    assert any(a["text"].strip() for g in games for a in g["answers"])  # a real model writes text
    metrics = by_type(events, "metrics")[0]["metrics"]
    assert metrics["trained_tokens"] > 0 and metrics["grad_norm"] > 0
    assert (run / "checkpoints" / "iter-000001" / "adapter_model.safetensors").is_file()

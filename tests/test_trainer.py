"""The whole `lsp-mlx train` on the tiny model, as real subprocesses: events, checkpoints,
control commands and Ctrl-C (resume equality: tests/test_resume.py)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, run_cli, tiny_train_args

from lsp_mlx.events import SCHEMA_VERSION, read_events
from lsp_mlx.records import Game

REQUIRED_METRICS = {
    "reward/solver_mean",
    "reward/solver_std",
    "reward/challenger_mean",
    "reward/challenger_std",
    "self_reward/mean",
    "advantage/solver_abs_mean",
    "advantage/challenger_abs_mean",
    "kl",
    "loss",
    "zero_variance_groups",
    "answer_tokens_mean",
    "tokens_per_sec",
    "time/generate",
    "time/score",
    "time/update",
    "memory/peak_gb",
}


def train(tiny_model: Path, run_dir: Path, *extra: str, iterations: int = 2):
    return run_cli("train", *tiny_train_args(tiny_model, run_dir, iterations, *extra))


def test_events_file_schema_and_checkpoints(tiny_model, tmp_path):
    run_dir = tmp_path / "run"
    proc = train(tiny_model, run_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # the log names the BLAS; a progress line per iteration
    assert "BLAS:" in proc.stderr and "2/2" in proc.stderr
    for command in ("lsp-mlx tui --attach", "lsp-mlx chat --adapter", "lsp-mlx export --adapter"):
        assert f"{command} {run_dir}" in proc.stderr  # what to do next, with this run's folder
    events = read_events(run_dir)
    assert all(e["v"] == SCHEMA_VERSION and "type" in e and "time" in e for e in events)
    types = [e["type"] for e in events]
    assert types[0] == "run_start" and types[-1] == "run_end"
    assert events[-1]["status"] == "finished"
    start = events[0]
    assert (
        start["base_model"] is None
        and start["model"] == str(tiny_model)
        and start["iterations"] == 2
    )
    games = [Game.from_dict(e) for e in events if e["type"] == "game"]
    assert {g.iteration for g in games} == {1, 2} and len(games) == 4  # N=2 queries per iteration
    for g in games:
        if g.valid:
            assert len(g.answers) == 2
            assert sum(a.advantage for a in g.answers) == pytest.approx(0.0, abs=1e-9)
            assert all(
                "reward" in a.reward_parts and "self_reward" in a.reward_parts for a in g.answers
            )
    metrics = [e for e in events if e["type"] == "metrics"]
    assert [m["iteration"] for m in metrics] == [1, 2]
    assert REQUIRED_METRICS <= set(metrics[0]["metrics"])
    assert metrics[0]["metrics"]["kl"] == 0.0  # the adapter starts as the reference
    # checkpoints: every iteration (tiny.yaml), atomic names, mlx-lm adapter files
    ckpts = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert ckpts == ["iter-000001", "iter-000002", "latest"]
    assert (run_dir / "checkpoints" / "latest").read_text().strip() == "iter-000002"
    for name in (
        "adapters.safetensors",
        "adapter_config.json",
        "optimizer.safetensors",
        "state.json",
    ):
        assert (run_dir / "checkpoints" / "iter-000002" / name).is_file()
    config = json.loads((run_dir / "adapters" / "adapter_config.json").read_text())
    assert config["fine_tune_type"] == "lora" and config["lora_parameters"]["rank"] == 4
    assert (run_dir / "config.yaml").is_file()


def _start(tiny_model: Path, run_dir: Path, iterations: int) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lsp_mlx",
            "train",
            *tiny_train_args(tiny_model, run_dir, iterations, "--set", "train.checkpoint_every=0"),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(run_dir: Path, predicate, timeout: float = 300.0) -> list[dict]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        events = read_events(run_dir) if (run_dir / "events.jsonl").exists() else []
        if predicate(events):
            return events
        time.sleep(0.2)
    raise AssertionError(f"timed out; events: {[e['type'] for e in events]}")


@pytest.mark.parametrize("how", ["sigint", "control"])
def test_stop_saves_a_checkpoint_and_exits_cleanly(tiny_model, tmp_path, how):
    from lsp_mlx.control import send

    run_dir = tmp_path / "run"
    proc = _start(tiny_model, run_dir, iterations=1000)
    try:
        _wait_for(run_dir, lambda ev: sum(e["type"] == "metrics" for e in ev) >= 1)
        if how == "sigint":
            proc.send_signal(signal.SIGINT)
        else:
            send(run_dir, "stop")
        proc.wait(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, proc.stderr.read()[-2000:]
    events = read_events(run_dir)
    assert events[-1]["type"] == "run_end" and events[-1]["status"] == "stopped"
    done = events[-1]["iteration"]
    assert done >= 1
    assert (run_dir / "checkpoints" / f"iter-{done:06d}" / "adapters.safetensors").is_file()
    assert any(e["type"] == "checkpoint" and e["iteration"] == done for e in events)


def test_pause_resume_and_checkpoint_now(tiny_model, tmp_path):
    from lsp_mlx.control import send

    run_dir = tmp_path / "run"
    proc = _start(tiny_model, run_dir, iterations=1000)
    try:
        _wait_for(run_dir, lambda ev: any(e["type"] == "metrics" for e in ev))
        send(run_dir, "pause")
        events = _wait_for(
            run_dir, lambda ev: any(e["type"] == "state" and e["state"] == "paused" for e in ev)
        )
        n_metrics = sum(e["type"] == "metrics" for e in events)
        time.sleep(3)  # paused: at most the iteration in flight finishes
        assert sum(e["type"] == "metrics" for e in read_events(run_dir)) <= n_metrics + 1
        send(run_dir, "checkpoint")
        send(run_dir, "resume")
        _wait_for(
            run_dir,
            lambda ev: any(e["type"] == "checkpoint" and e["reason"] == "control" for e in ev),
        )
        send(run_dir, "stop")
        proc.wait(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0

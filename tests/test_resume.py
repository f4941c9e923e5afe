"""A resumed run is the run it would have been: every game, on the real tiny MLX model.

For each game, 4 iterations straight vs 2, stop, ``--resume`` to 4 must give bit-identical
adapter weights, optimizer state and game state, and the same game, metric and diagnostics
events (timings aside). The runs go in-process through `Trainer` (the CLI's own path, without
a Python start-up per run); one more run is a real subprocess killed with SIGKILL after its
checkpoint at iteration 2, then resumed.

The rewards are cheap and deterministic: LSP uses the python heuristic reward; SQLM
arithmetic uses the label-free majority with a reference buffer that every valid problem
joins (so the game state changes every iteration); SQLM code states its test in
``game.query_prefix`` so each proposal is valid and every answer is scored by the sandbox.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import REPO

from lsp_mlx import config as cfg
from lsp_mlx.events import read_events
from lsp_mlx.trainer import Trainer

N = 4
GAMES: dict[str, dict[str, Any]] = {
    "lsp": {},
    "lsp-zero": {"game.name": "lsp-zero"},
    "sqlm-arithmetic": {
        "game.name": "sqlm",
        "game.query_prefix": "What is",
        "sqlm.references": 2,
        "sqlm.seed_problems": ["What is 2 + 3?", "What is 9 - 4?", "What is 7 + 1?"],
        "sqlm.buffer_band_only": False,
        "sqlm.proposer_every": 2,
    },
    "sqlm-code": {
        "game.name": "sqlm",
        "sqlm.verifier": "code",
        "game.query_prefix": "Write f(x) that returns x + 1.\nassert f(1) == 2\n",
        "sqlm.proposer_every": 2,
        "sqlm.sandbox_timeout": 2.0,
    },
    "spin": {
        "game.name": "spin",
        "train.beta": 0.0,
        "spin.data": str(REPO / "examples" / "spin_pairs.jsonl"),
        "spin.pairs_per_iteration": 2,
        "spin.max_tokens": 6,
    },
}
# metrics that measure the machine, not the run
VOLATILE = ("time/", "tokens_per_sec", "memory/")


def make_config(tiny_model: Path, run_dir: Path, game: str, iterations: int) -> cfg.Config:
    return cfg.load(
        REPO / "configs" / "tiny.yaml",
        {
            "model.path": str(tiny_model),
            "train.run_dir": str(run_dir),
            "train.iterations": iterations,
            "train.print_games": 0,
            **GAMES[game],
        },
    )


def tensors(path: Path) -> dict[str, np.ndarray]:
    import mlx.core as mx

    return {k: np.array(v) for k, v in mx.load(str(path)).items()}


def the_run(run_dir: Path) -> dict[str, Any]:
    """What must be equal between two runs: final state and the game's events."""
    last = run_dir / "checkpoints" / f"iter-{N:06d}"
    events = []
    for e in read_events(run_dir):
        if e["type"] in ("game", "diagnostics"):
            events.append({k: v for k, v in e.items() if k != "time"})
        elif e["type"] == "metrics":
            metrics = {k: v for k, v in e["metrics"].items() if not k.startswith(VOLATILE)}
            events.append({"type": "metrics", "iteration": e["iteration"], "metrics": metrics})
    return {
        "adapter": tensors(last / "adapters.safetensors"),
        "optimizer": tensors(last / "optimizer.safetensors"),
        "game_state": json.loads((last / "game_state.json").read_text()),
        "events": events,
    }


def assert_same(a: dict[str, Any], b: dict[str, Any]) -> None:
    for part in ("adapter", "optimizer"):
        assert a[part].keys() == b[part].keys(), part
        for k in a[part]:
            assert np.array_equal(a[part][k], b[part][k]), f"{part} {k}"
    assert a["game_state"] == b["game_state"]
    assert [(e["type"], e.get("iteration")) for e in a["events"]] == [
        (e["type"], e.get("iteration")) for e in b["events"]
    ]
    assert a["events"] == b["events"]


@pytest.mark.parametrize("game", list(GAMES))
def test_resume_equals_an_uninterrupted_run(tiny_model, tmp_path, game):
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert Trainer(make_config(tiny_model, straight, game, N)).run() == 0
    assert Trainer(make_config(tiny_model, split, game, N // 2)).run() == 0
    assert Trainer(make_config(tiny_model, split, game, N), resume=True).run() == 0
    a, b = the_run(straight), the_run(split)
    assert_same(a, b)
    if game == "sqlm-arithmetic":  # the reference buffer grew: the state test is not vacuous
        assert len(a["game_state"]["buffer"]) > len(GAMES[game]["sqlm.seed_problems"])
    checkpoints = [e for e in read_events(split) if e["type"] == "checkpoint"]
    assert (N // 2) in [e["iteration"] for e in checkpoints]  # the resumed-from one is kept


def test_resume_after_kill_9_equals_an_uninterrupted_run(tiny_model, tmp_path):
    game = "sqlm-arithmetic"
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert Trainer(make_config(tiny_model, straight, game, N)).run() == 0
    overrides = [f"--set={k}={json.dumps(v)}" for k, v in GAMES[game].items()]
    proc = subprocess.Popen(
        [sys.executable, "-m", "lsp_mlx", "train", "--config", "configs/tiny.yaml",
         "--model", str(tiny_model), "--run-dir", str(killed), "--iterations", "1000",
         "--set", "train.print_games=0", *overrides],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.time() + 240
        while not (killed / "checkpoints" / f"iter-{N // 2:06d}").is_dir():
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
            assert time.time() < deadline, "no checkpoint at iteration 2 in time"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert Trainer(make_config(tiny_model, killed, game, N), resume=True).run() == 0
    assert_same(the_run(straight), the_run(killed))
    iterations = [e["iteration"] for e in read_events(killed) if e["type"] == "metrics"]
    assert iterations == list(range(1, N + 1))  # each iteration once


def test_a_checkpoint_without_game_state_resumes_with_a_warning(tiny_model, tmp_path, capsys):
    run_dir = tmp_path / "run"
    game = "sqlm-arithmetic"
    assert Trainer(make_config(tiny_model, run_dir, game, N // 2)).run() == 0
    (run_dir / "checkpoints" / f"iter-{N // 2:06d}" / "game_state.json").unlink()
    capsys.readouterr()
    assert Trainer(make_config(tiny_model, run_dir, game, N // 2 + 1), resume=True).run() == 0
    warnings = [x for x in capsys.readouterr().err.splitlines() if "warning" in x]
    assert len(warnings) == 1 and "game_state.json" in warnings[0] and "sqlm" in warnings[0]

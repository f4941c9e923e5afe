"""Faults of a training run on the real tiny MLX model: bad input leaves no run folder, a
diverging run keeps its last finite checkpoint, a full disk (a real small tmpfs) is one line,
damaged checkpoints are passed over, a kill before the first checkpoint resumes clean, and
``lsp-mlx launch`` checks before spawning and takes its ranks with it when killed.

Most runs go in-process through the CLI entry point (`lsp_mlx.cli.main`, stderr captured);
the kills are real subprocesses.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO

from lsp_mlx import checkpoint as ckpt
from lsp_mlx.cli import main
from lsp_mlx.events import read_events


def train_args(
    tiny_model: Path, run_dir: Path | str, *extra: str, iterations: int = 2
) -> list[str]:
    return ["train", "--config", str(REPO / "configs" / "tiny.yaml"), "--model", str(tiny_model), "--run-dir",
            str(run_dir), "--iterations", str(iterations), "--set", "train.print_games=0", *extra]  # fmt: skip


def error_lines(err: str) -> list[str]:
    assert "Traceback" not in err, err[-3000:]
    return [line for line in err.splitlines() if line.startswith("lsp-mlx: error:")]


def run_main(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(args)
    return code, capsys.readouterr().err


def iterations_of(run_dir: Path) -> list[int]:
    return [e["iteration"] for e in read_events(run_dir) if e["type"] == "metrics"]


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(REPO)
    # in-process runs install the trainer's signal handlers; put the previous ones back
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


# ------------------------------------------------------------------ nothing written
BAD_RUNS = {
    "missing model": ["--model", "/nonexistent/model"],
    "fake GGUF": ["--model", "FAKE_GGUF"],
    "lora.num_layers above the blocks": ["--set", "lora.num_layers=99"],
    "lora.keys unknown": ["--set", "lora.keys=[self_attn.nope]"],
    "missing spin data": ["--set", "game.name=spin", "--set", "train.beta=0",
                          "--set", "spin.data=/nonexistent/pairs.jsonl"],
    "bogus LSP_MLX_DEVICE": ["--backend", "torch"],
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_RUNS))
def test_bad_input_leaves_no_run_folder(tiny_model, tmp_path, capsys, monkeypatch, case):
    run_dir = tmp_path / "run"
    args = train_args(tiny_model, run_dir)
    extra = BAD_RUNS[case]
    if extra[0] == "--model":
        fake = tmp_path / "model.gguf"
        fake.write_bytes(b"GGUF" + b"\x00" * 60)
        args[args.index("--model") + 1] = str(fake) if extra[1] == "FAKE_GGUF" else extra[1]
        extra = []
    if case == "bogus LSP_MLX_DEVICE":
        pytest.importorskip("torch")
        monkeypatch.setenv("LSP_MLX_DEVICE", "warp-drive")
    code, err = run_main([*args, *extra], capsys)
    assert code == 2 and len(error_lines(err)) == 1, err
    assert not run_dir.exists()


def test_empty_run_dir_is_an_error(tiny_model, tmp_path, capsys):
    code, err = run_main(train_args(tiny_model, ""), capsys)
    assert code == 2 and "run_dir is empty" in error_lines(err)[0].replace("run dir", "run_dir")


# ------------------------------------------------------------------ divergence
def test_divergence_stops_with_one_line_and_keeps_a_finite_checkpoint(
    tiny_model, tmp_path, capsys, monkeypatch
):
    # config validation keeps the learning rate in range; a reward near float32's largest value
    # still drives the loss past it (advantages of +-1.5e38)
    (tmp_path / "huge_reward.py").write_text(
        "def reward(queries, answers):\n"
        "    return [[3e38 if j % 2 else 0.0 for j in range(len(g))] for g in answers]\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    run_dir = tmp_path / "run"
    args = ["--set", "reward.function=huge_reward:reward", "--set", "game.name=lsp-zero"]
    code, err = run_main(train_args(tiny_model, run_dir, *args, iterations=6), capsys)
    (line,) = error_lines(err)
    assert code == 2 and "diverged" in line and "train.learning_rate" in line, err
    events = read_events(run_dir)
    assert events[-1]["type"] == "run_end" and events[-1]["status"] == "error"
    for folder in ckpt.checkpoints(run_dir):  # whatever was saved is finite
        assert ckpt.nonfinite_tensors(folder / ckpt.ADAPTER_WEIGHTS) == []


def test_a_nan_reward_is_named_as_the_cause(tiny_model, tmp_path, capsys, monkeypatch):
    (tmp_path / "nan_reward.py").write_text(
        "def reward(queries, answers):\n    return [[float('nan')] * len(g) for g in answers]\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    args = ["--set", "reward.function=nan_reward:reward", "--set", "game.name=lsp-zero"]
    code, err = run_main(train_args(tiny_model, tmp_path / "run", *args), capsys)
    (line,) = error_lines(err)
    assert code == 2 and "returned nan" in line and "finite" in line, err
    assert not (tmp_path / "run" / "checkpoints").exists()


# ------------------------------------------------------------------ disk full
@pytest.fixture
def small_disk(tmp_path: Path):
    mount = tmp_path / "small"
    mount.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(mount)], capture_output=True
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {proc.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_disk_full_is_one_line_and_events_stay_whole(tiny_model, small_disk, capsys):
    run_dir = small_disk / "run"
    code, err = run_main(
        train_args(tiny_model, run_dir, "--set", "train.keep_checkpoints=0", iterations=1000),
        capsys,
    )
    (line,) = error_lines(err)
    assert code == 2 and "is full" in line, err
    data = (run_dir / "events.jsonl").read_bytes()
    assert data.endswith(b"\n")
    assert all(json.loads(x) for x in data.splitlines())  # no torn line
    ckpt.check_checkpoint(ckpt.checkpoints(run_dir)[-1])  # the newest checkpoint is whole


# ------------------------------------------------------------------ damaged checkpoints
DAMAGE = {
    "truncated adapter": (ckpt.ADAPTER_WEIGHTS, lambda b: b[: len(b) // 2]),
    "empty state": (ckpt.STATE_FILE, lambda b: b""),
    "garbage state": (ckpt.STATE_FILE, lambda b: b"\x00{not json"),
    "truncated optimizer": (ckpt.OPTIMIZER_STATE, lambda b: b[:9]),
}


@pytest.fixture(scope="module")
def three_iterations(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished 3-iteration run (a checkpoint per iteration), copied by each test."""
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        assert main(train_args(tiny_model, run_dir, iterations=3)) == 0
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    return run_dir


def copy_of(run_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    return copy


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_resume_passes_over_a_damaged_checkpoint(
    tiny_model, three_iterations, tmp_path, capsys, damage
):
    run_dir = copy_of(three_iterations, tmp_path)
    name, spoil = DAMAGE[damage]
    target = run_dir / "checkpoints" / "iter-000003" / name
    target.write_bytes(spoil(target.read_bytes()))
    with open(run_dir / "events.jsonl", "ab") as fh:
        fh.write(b'{"type": "met')  # a torn last line, as a kill mid-write would leave
    capsys.readouterr()
    code, err = run_main(train_args(tiny_model, run_dir, "--resume", iterations=4), capsys)
    assert code == 0, err
    warnings = [x for x in err.splitlines() if x.startswith("lsp-mlx: warning:")]
    assert len(warnings) == 1 and "resuming from iter-000002" in warnings[0], err
    assert iterations_of(run_dir) == [1, 2, 3, 4]
    assert (run_dir / "events.jsonl").read_bytes().endswith(b"\n")


def test_missing_optimizer_state_needs_reset_optimizer(
    tiny_model, three_iterations, tmp_path, capsys
):
    run_dir = copy_of(three_iterations, tmp_path)
    (run_dir / "checkpoints" / "iter-000003" / ckpt.OPTIMIZER_STATE).unlink()
    capsys.readouterr()
    code, err = run_main(train_args(tiny_model, run_dir, "--resume", iterations=4), capsys)
    assert code == 2 and "--reset-optimizer" in error_lines(err)[0]
    assert iterations_of(run_dir) == [1, 2, 3]  # nothing was written
    code, err = run_main(
        train_args(tiny_model, run_dir, "--resume", "--reset-optimizer", iterations=4), capsys
    )
    assert code == 0, err
    assert iterations_of(run_dir) == [1, 2, 3, 4]


def test_resume_on_the_other_backend_carries_adapter_and_optimizer(tiny_model, tmp_path, capsys):
    pytest.importorskip("torch")
    import mlx.core as mx

    run_dir = tmp_path / "run"
    assert main(train_args(tiny_model, run_dir, iterations=1)) == 0
    capsys.readouterr()
    code, err = run_main(
        train_args(tiny_model, run_dir, "--resume", "--backend", "torch", iterations=2), capsys
    )
    assert code == 0, err
    warnings = [x for x in err.splitlines() if x.startswith("lsp-mlx: warning:")]
    assert len(warnings) == 1 and "backend mlx with backend torch" in warnings[0]
    assert iterations_of(run_dir) == [1, 2]
    state = mx.load(str(run_dir / "checkpoints" / "iter-000002" / ckpt.OPTIMIZER_STATE))
    assert state["step"].item() == 2  # the torch step continued the MLX optimizer


# ------------------------------------------------------------------ kills
def test_kill_before_the_first_checkpoint_resumes_clean(tiny_model, tmp_path, capsys):
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "lsp_mlx", *train_args(tiny_model, run_dir, iterations=1000),
         "--set", "train.checkpoint_every=0"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.time() + 240
        while not (run_dir / "events.jsonl").exists() or not iterations_of(run_dir):
            assert proc.poll() is None and time.time() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert not (run_dir / "checkpoints").exists()
    code, err = run_main(train_args(tiny_model, run_dir, "--resume", iterations=2), capsys)
    assert code == 0, err
    assert iterations_of(run_dir) == [1, 2]  # each iteration once
    assert sum(e["type"] == "run_start" for e in read_events(run_dir)) == 1


# ------------------------------------------------------------------ launch
LAUNCH_ERRORS = {
    "no config": (["--", "--run-dir", "RUN"], "needs the run's config"),
    "too few queries": (["-n", "3", "--", "--config", "configs/tiny.yaml", "--run-dir", "RUN"],
                        "at least 3"),
    "sqlm": (["--", "--config", "configs/tiny.yaml", "--run-dir", "RUN", "--set", "game.name=sqlm"],
             "does not run data-parallel"),
    "no ranks": (["-n", "0", "--", "--config", "configs/tiny.yaml"], "-n must be >= 1"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(LAUNCH_ERRORS))
def test_launch_checks_before_spawning(tmp_path, capsys, case):
    args, expected = LAUNCH_ERRORS[case]
    args = [str(tmp_path / "run") if a == "RUN" else a for a in args]
    code, err = run_main(["launch", *args], capsys)
    (line,) = error_lines(err)
    assert code == 2 and expected in line, err
    assert "mlx.launch" not in err  # nothing was spawned
    assert not (tmp_path / "run").exists()


def test_launch_refuses_an_existing_run(tiny_model, three_iterations, capsys):
    code, err = run_main(["launch", "--", *train_args(tiny_model, three_iterations)[1:]], capsys)
    assert code == 2 and "already holds a run" in error_lines(err)[0]


@pytest.mark.parametrize("k", ["0", "-2"])
def test_train_distributed_needs_a_rank_count(capsys, k):
    code, err = run_main(["train", "--distributed", k], capsys)
    assert code == 2 and len(error_lines(err)) == 1 and "at least 1" in err


def _ranks_of(launcher_pid: int) -> list[int]:
    """Processes that inherited this launcher's id (its ranks)."""
    tag = f"LSP_MLX_LAUNCHER={socket.gethostname()}:{launcher_pid}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != launcher_pid:
            try:
                if tag in (entry / "environ").read_bytes().split(b"\0"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the ranks through /proc (Linux)")
def test_killing_launch_ends_its_ranks(tiny_model, tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "lsp_mlx", "launch", "-n", "2", "--",
         *train_args(tiny_model, run_dir, iterations=1000)[1:], "--set", "train.checkpoint_every=0"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "OPENBLAS_NUM_THREADS": "1"},
    )  # fmt: skip
    try:
        deadline = time.time() + 300
        while not (run_dir / "events.jsonl").exists() or not iterations_of(run_dir):
            assert proc.poll() is None, "launch ended before training"
            assert time.time() < deadline, "no iteration in time"
            time.sleep(0.2)
        ranks = _ranks_of(proc.pid)
        assert ranks, "the ranks carry the launcher's id"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.time() + 30
        while _ranks_of(proc.pid) and time.time() < deadline:
            time.sleep(0.2)
        assert _ranks_of(proc.pid) == []
    finally:
        proc.kill()
        for pid in _ranks_of(proc.pid):
            os.kill(pid, signal.SIGKILL)


# ------------------------------------------------------------------ events
def test_a_failing_listener_costs_one_warning_never_the_events(tmp_path, capsys):
    from lsp_mlx.events import EventWriter

    seen: list[str] = []

    class Broken:
        name = "broken tracker"

        def __call__(self, event: dict) -> None:
            raise RuntimeError("offline")

    class Counting:
        def __call__(self, event: dict) -> None:
            seen.append(event["type"])

        def close(self) -> None:
            seen.append("closed")

    writer = EventWriter(tmp_path, listeners=[Broken(), Counting()])
    writer.emit("log", message="one")
    writer.emit("log", message="two")
    writer.close()
    err = capsys.readouterr().err
    assert err.count("warning") == 1 and "broken tracker" in err
    assert seen == ["log", "log", "closed"]
    assert [e["message"] for e in read_events(tmp_path)] == ["one", "two"]

"""The dashboard driving a real ``lsp-mlx train`` child on the tiny model, and the command line.

These start real trainer processes (``python -m lsp_mlx train``) on a tiny random llama
(conftest's ``tiny_model``), so they test the whole path: flags forwarded, events tailed while the
file grows, control files read by the real trainer, the final checkpoint, crash reports
from ``train.log``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from textual.pilot import Pilot

from lsp_mlx.commands import tui as tui_command
from lsp_mlx.commands.train import add_train_arguments
from lsp_mlx.events import read_events
from lsp_mlx.tui.app import DashboardApp
from lsp_mlx.tui.format import significant
from lsp_mlx.tui.screens import ConfirmScreen
from lsp_mlx.tui.source import LaunchedRun, Stopper
from lsp_mlx.tui.widgets import PLOTS, TILES

ROOT = Path(__file__).resolve().parents[1]
TINY_CONFIG = ROOT / "configs" / "tiny.yaml"
RECORDED = Path(__file__).parent / "data" / "tui_events.jsonl"


def sync(test: Callable[..., Any]) -> Callable[..., None]:
    @functools.wraps(test)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return wrapper


def screen_text(app: DashboardApp) -> str:
    console = Console(width=app.size.width, height=app.size.height, file=io.StringIO(), record=True)
    console.print(
        app.screen._compositor.render_update(full=True, screen_stack=app._background_screens)
    )
    return console.export_text()


async def wait_until(
    pilot: Pilot, condition: Callable[[], bool], timeout: float, what: str
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await pilot.pause(0.1)


def cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lsp_mlx", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


@sync
async def test_real_run_shows_games_pauses_and_q_stops_with_a_checkpoint(
    tiny_model: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    flags = [
        "--config",
        str(TINY_CONFIG),
        "--model",
        str(tiny_model),
        "--iterations",
        "200",
        "--run-dir",
        str(run_dir),
    ]
    source = LaunchedRun(flags, run_dir)
    app = DashboardApp(source, stop_timeout=60)
    async with app.run_test(size=(100, 30)) as pilot:
        state = app.state
        await wait_until(
            pilot, lambda: state.metrics_version >= 1 and state.games, 120, "the first iteration"
        )
        await pilot.pause(0.3)
        text = screen_text(app)
        assert "running" in text and "/ 200" in text
        # the reward line shows the live value
        assert significant(state.latest["reward/solver_mean"]) in text

        await pilot.press("p")  # pause: the real trainer reads the control file and says so
        await wait_until(pilot, lambda: state.status == "paused", 60, "the trainer to pause")
        paused_at = state.iteration
        await pilot.pause(1.5)
        assert state.iteration == paused_at  # nothing moves while paused
        await pilot.press("p")
        await wait_until(pilot, lambda: state.status == "running", 30, "the trainer to resume")

        await pilot.press("q")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await wait_until(
            pilot, lambda: not app.is_running, 90, "the trainer to stop and the app to exit"
        )
    assert app.return_value == 0
    assert source.returncode == 0
    events = read_events(run_dir)
    assert events[-1]["type"] in ("run_end", "log")
    end = next(e for e in reversed(events) if e["type"] == "run_end")
    assert end["status"] == "stopped"
    last_ckpt = [e for e in events if e["type"] == "checkpoint"][-1]
    assert Path(last_ckpt["path"]).is_dir() and (run_dir / "checkpoints" / "latest").is_file()
    assert "[" in (run_dir / "train.log").read_text()  # the child's progress went to train.log
    # Every metric the dashboard draws is one the real trainer emits.
    wanted = set(TILES) | {key for _, _, series in PLOTS for _, key in series}
    assert wanted <= set(app.state.latest), sorted(wanted - set(app.state.latest))


@sync
async def test_a_trainer_that_fails_shows_its_error_from_train_log(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    # The trainer rejects the unknown key before it writes any event: only train.log knows why.
    source = LaunchedRun(
        ["--config", str(TINY_CONFIG), "--set", "train.no_such_key=1", "--run-dir", str(run_dir)],
        run_dir,
    )
    app = DashboardApp(source)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: app.state.status == "error", 60, "the child to fail")
        await pilot.pause(0.3)
        text = screen_text(app)
        assert "exited with code 2" in text
        assert "unknown config key 'train.no_such_key'" in text
        await pilot.press("q")  # nothing runs any more: no question
    assert app.return_value == 1


def test_train_flags_are_forwarded_unchanged() -> None:
    tui_parser = argparse.ArgumentParser()
    tui_command.add_parser(tui_parser.add_subparsers())
    given = [
        "--config",
        "c.yaml",
        "--seed",
        "3",
        "--set",
        "a.b=1",
        "--set",
        "c.d=[1, 2]",
        "--resume",
        "--run-dir",
        "r",
    ]
    args = tui_parser.parse_args(["tui", *given])
    forwarded = tui_command.train_argv(args, args.tui_train_actions)
    train_parser = argparse.ArgumentParser()
    add_train_arguments(train_parser)
    again, want = vars(train_parser.parse_args(forwarded)), vars(train_parser.parse_args(given))
    assert again == want
    assert tui_command.train_argv(tui_parser.parse_args(["tui"]), args.tui_train_actions) == []


def test_launch_preset_picks_a_fresh_run_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    preset = tmp_path / "p.yaml"
    preset.write_text("train:\n  run_dir: runs/p\n")
    first = tui_command.launch_preset(preset)
    assert first.run_dir == Path("runs/p") and "--run-dir" not in first.command
    (tmp_path / "runs" / "p").mkdir(parents=True)
    (tmp_path / "runs" / "p" / "events.jsonl").write_text("")
    second = tui_command.launch_preset(preset)
    assert second.run_dir == Path("runs/p-2")
    assert second.command[-2:] == ["--run-dir", "runs/p-2"] and second.command[3:6] == [
        "train",
        "--config",
        str(preset),
    ]


def test_cli_errors_come_before_the_dashboard_opens(tmp_path: Path) -> None:
    (tmp_path / "events.jsonl").write_text(RECORDED.read_text())
    taken = cli("tui", "--config", str(TINY_CONFIG), "--run-dir", str(tmp_path))
    assert taken.returncode == 2 and "already holds a run" in taken.stderr
    mixed = cli("tui", "--attach", str(tmp_path), "--seed", "1")
    assert mixed.returncode == 2 and "drop the training flags (--seed 1)" in mixed.stderr
    missing = cli("tui", "--attach", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "not found" in missing.stderr
    bad = cli("tui", "--config", str(tmp_path / "nope.yaml"))
    assert bad.returncode == 2 and "not found" in bad.stderr


def test_screenshot_of_an_attached_run(tmp_path: Path) -> None:
    (tmp_path / "events.jsonl").write_text(RECORDED.read_text())
    svg = tmp_path / "shot.svg"
    done = cli("tui", "--attach", str(tmp_path), "--screenshot", str(svg), "--size", "100x30")
    assert done.returncode == 0, done.stderr
    text = svg.read_text()
    assert text.startswith("<svg") and "Solver&#160;R" in text and "12&#160;/&#160;40" in text
    png = tmp_path / "shot.png"
    refused = cli("tui", "--attach", str(tmp_path), "--screenshot", str(png))
    assert refused.returncode == 2 and not png.exists()
    assert refused.stderr.count("\n") == 1 and "name the file with .svg" in refused.stderr


# A stand-in trainer for the stop protocol: the real one on the tiny model finishes every phase
# within about a second, too fast to show what happens when a stop file waits for a long phase.
STAND_IN = """
import signal, sys, time
from lsp_mlx.control import ControlReader
from lsp_mlx.events import EventWriter
reader, events, busy = ControlReader(sys.argv[1]), EventWriter(sys.argv[1]), sys.argv[2] == "busy"
def stop(signum, frame):
    events.emit("run_end", status="stopped", how="signal")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
print("ready", flush=True)
while True:
    time.sleep(0.05)
    if not busy and "stop" in reader.poll():
        events.emit("run_end", status="stopped", how="file")
        sys.exit(0)
"""


def stand_in(run_dir: Path, mode: str) -> LaunchedRun:
    run = LaunchedRun([], run_dir)
    run.command = [sys.executable, "-c", STAND_IN, str(run_dir), mode]
    run.start()
    deadline = time.monotonic() + 30
    while "ready" not in (run_dir / "train.log").read_text():
        assert time.monotonic() < deadline and run.returncode is None
        time.sleep(0.05)
    return run


@pytest.mark.parametrize(
    "mode, how, signals", [("polling", "file", []), ("busy", "signal", ["SIGTERM"])]
)
def test_stop_uses_the_file_and_signals_only_a_busy_trainer(
    tmp_path: Path, mode: str, how: str, signals: list[str]
) -> None:
    run = stand_in(tmp_path, mode)
    stopper = Stopper(run, timeout=30)
    started = time.monotonic()
    while not stopper.step():
        assert time.monotonic() - started < 20
        time.sleep(0.05)
    assert run.returncode == 0 and stopper.signalled == signals
    assert read_events(tmp_path)[-1]["how"] == how


def test_stop_escalates_to_sigkill_and_hurry_skips_the_wait(tmp_path: Path) -> None:
    run = stand_in(tmp_path, "busy")
    os.kill(run.process.pid, signal.SIGSTOP)  # a trainer that reacts to nothing
    try:
        stopper = Stopper(run, timeout=0.5)
        stopper.KILL_AFTER = 0.5
        started = time.monotonic()
        while not stopper.step():
            assert time.monotonic() - started < 20
            time.sleep(0.05)
        assert stopper.signalled == ["SIGTERM", "SIGKILL"] and run.returncode == -signal.SIGKILL
    finally:
        if run.returncode is None:
            run.process.kill()
    second = stand_in(tmp_path / "b", "busy")
    stopper = Stopper(second, timeout=300)
    assert stopper.hurry() and stopper.signalled == [
        "SIGTERM"
    ]  # no 3 s grace when the user insists
    second.process.wait(timeout=20)
    assert second.returncode == 0

"""The real ``lsp-mlx tui --attach`` in a real terminal (tmux): keys in, screen read back.

A detached tmux session of fixed size runs the command; the test appends events to the run
folder as a trainer would, sends keys with ``send-keys`` and reads the screen with
``capture-pane -p``. Skipped only where tmux is not installed.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from lsp_mlx.control import ControlReader
from lsp_mlx.events import read_events

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")

ROOT = Path(__file__).resolve().parents[1]
RECORDED = Path(__file__).parent / "data" / "tui_events.jsonl"


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, timeout=10).stdout


def append(run_dir: Path, events: list[dict[str, Any]]) -> None:
    with open(run_dir / "events.jsonl", "a") as fh:
        fh.write("".join(json.dumps(e) + "\n" for e in events))


def test_attach_in_tmux(tmp_path: Path) -> None:
    events = read_events(RECORDED)
    events[0] = {**events[0], "pid": os.getpid()}  # this test plays the trainer: the run is live
    first = [
        e for e in events if e.get("iteration", 0) <= 6 and e["type"] not in ("state", "run_end")
    ]
    later = [
        e
        for e in events
        if 6 < e.get("iteration", 0) <= 12 and e["type"] not in ("state", "run_end")
    ]
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    append(run_dir, first)

    session = f"lsp-tui-{uuid.uuid4().hex[:8]}"
    command = f"{shlex.quote(sys.executable)} -m lsp_mlx tui --attach {shlex.quote(str(run_dir))}; echo TUI-EXIT=$?; sleep 60"
    subprocess.run(
        [
            "tmux",
            "new-session",
            "-d",
            "-s",
            session,
            "-x",
            "100",
            "-y",
            "30",
            "-c",
            str(ROOT),
            command,
        ],
        check=True,
        timeout=10,
    )

    def screen() -> str:
        return tmux("capture-pane", "-p", "-t", session)

    def wait_for(text: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            shown = screen()
            if text in shown:
                return shown
            time.sleep(0.2)
        raise AssertionError(f"{text!r} not on screen after {timeout} s:\n{screen()}")

    def keys(*names: str) -> None:
        tmux("send-keys", "-t", session, *names)

    try:
        shown = wait_for("6 / 40 · running")
        assert "Solver R" in shown and "Games (Enter: open)" in shown
        append(run_dir, later)  # the file grows while the TUI reads it
        wait_for("12 / 40 · running")
        keys("g")
        wait_for("Games · running")
        keys("Enter")
        wait_for("Iteration 12 · game 4")  # the game view's title: the last game, whole
        shown = wait_for("Previous game")  # its footer: the screen is drawn completely
        assert "Answer 1" in shown and "Query" in shown
        keys("Escape")
        wait_for("Games · running")
        keys("d")
        wait_for("Dashboard · running")
        keys("p")
        shown = wait_for("sent 'pause'")
        # The answer to the key is a toast, top right, never over the pinned warnings.
        assert "judge output unparsable" in shown
        reader, sent = ControlReader(run_dir), []
        deadline = time.monotonic() + 10
        while not sent and time.monotonic() < deadline:
            sent = reader.poll()
            time.sleep(0.1)
        assert sent == ["pause"]
        keys("q")
        wait_for("Quit (y)")
        keys("y")
        wait_for("TUI-EXIT=0")
    finally:
        tmux("kill-session", "-t", session)

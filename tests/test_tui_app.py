"""Pilot tests of the dashboard (`App.run_test`) on the invented run in tests/data (edge cases).

The app follows a real run folder here: the events are the recorded file (or parts of
it, written while the app runs), and the controls are checked by reading the control
folder with the trainer's own `ControlReader`.
"""

from __future__ import annotations

import asyncio
import functools
import io
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from textual.pilot import Pilot
from textual.widgets import Static

from lsp_mlx.control import ControlReader
from lsp_mlx.events import read_events
from lsp_mlx.tui.app import DashboardApp
from lsp_mlx.tui.screens import ConfirmScreen, GameScreen, HelpScreen
from lsp_mlx.tui.source import AttachedRun
from lsp_mlx.tui.start import StartScreen
from lsp_mlx.tui.widgets import GamesTable

RECORDED = Path(__file__).parent / "data" / "tui_events.jsonl"
NOW = 1_700_000_500.0  # the app's clock in these tests


def recorded(upto: int | None = None, live: bool = False) -> list[dict[str, Any]]:
    """The recorded run; ``upto`` cuts it after that iteration (and drops its end), ``live`` makes
    run_start name this test process as the trainer, so the app treats the run as going on."""
    events = read_events(RECORDED)
    if upto is not None:
        events = [
            e
            for e in events
            if e.get("iteration", 0) <= upto and e["type"] not in ("run_end", "state")
        ]
    if live:
        events[0] = {**events[0], "pid": os.getpid()}
    return events


def write(run_dir: Path, events: list[dict[str, Any]], mode: str = "w") -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "events.jsonl", mode) as fh:
        fh.write("".join(json.dumps(e) + "\n" for e in events))


def make_app(run_dir: Path, **kwargs: Any) -> DashboardApp:
    return DashboardApp(AttachedRun(run_dir), clock=lambda: NOW, **kwargs)


def screen_text(app: DashboardApp) -> str:
    """What the terminal shows, as plain text (the same render `App.export_screenshot` makes)."""
    console = Console(
        width=app.size.width,
        height=app.size.height,
        file=io.StringIO(),
        force_terminal=True,
        color_system=None,
        record=True,
        legacy_windows=False,
    )
    console.print(
        app.screen._compositor.render_update(full=True, screen_stack=app._background_screens)
    )
    return console.export_text()


async def wait_until(pilot: Pilot, condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await pilot.pause(0.05)


def sync(test: Callable[..., Any]) -> Callable[..., None]:
    """Run an async test with asyncio.run (no pytest async plugin needed); fixtures still apply."""

    @functools.wraps(test)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return wrapper


def commands(run_dir: Path) -> list[str]:
    return ControlReader(run_dir).poll()


@sync
async def test_dashboard_shows_the_recorded_run(tmp_path: Path) -> None:
    write(tmp_path, recorded())
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        table = app.query_one("#recent-games", GamesTable)
        assert table.row_count == 48 and table.cursor_row == 47  # follows the newest game
        text = screen_text(app)
        assert "12 / 40 · stopped" in text
        assert "0:01:37 · ETA —" in text  # run_start to run_end, not the clock
        assert "Solver R" in text and "0.669" in text  # the latest reward/solver_mean
        assert "judge output unparsable" in text  # warnings reach the dashboard's problem pane
        assert "[bold]Canberra" in text  # model text is shown as written, never as markup
        await pilot.press("o")
        assert "Rewards" in screen_text(app)
        await pilot.press("l")
        assert "checkpoint saved at iteration 10" in screen_text(app)
        await pilot.press("g")
        assert app.query_one("#games", GamesTable).row_count == 48
        assert "Adv b/w" not in screen_text(app)  # 80 columns: the texts get the room


@sync
async def test_selecting_a_game_opens_it_whole(tmp_path: Path) -> None:
    events = recorded()
    write(tmp_path, events)
    games = [e for e in events if e["type"] == "game"]
    long_one = next(
        i for i, g in enumerate(games) if any(len(a["text"]) > 300 for a in g["answers"])
    )
    long_text = max((a["text"] for a in games[long_one]["answers"]), key=len)
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("g")
        table = app.query_one("#games", GamesTable)
        table.move_cursor(row=long_one)
        await pilot.press("enter")
        assert isinstance(app.screen, GameScreen)
        content = str(app.screen.query_one("#game-content", Static).content)
        assert long_text.strip() in content  # the table cut it; the detail view does not
        assert games[long_one]["query"] in content
        assert "…" not in content
        await pilot.press("right")
        assert app.screen.number == long_one + 1
        assert games[long_one + 1]["query"] in str(
            app.screen.query_one("#game-content", Static).content
        )
        await pilot.press("p")  # dashboard keys do not act behind the game view
        assert commands(tmp_path) == []
        await pilot.press("escape")
        assert not isinstance(app.screen, GameScreen)


@sync
async def test_controls_write_commands_the_trainer_reads(tmp_path: Path) -> None:
    write(tmp_path, recorded(upto=6, live=True))
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert app.state.status == "running"
        await pilot.press("p")
        assert commands(tmp_path) == ["pause"]
        write(tmp_path, [{"v": 1, "type": "state", "time": NOW, "state": "paused"}], mode="a")
        app.tick()
        await pilot.pause()
        assert app.state.status == "paused" and "6 / 40 · paused" in screen_text(app)
        await pilot.press("p")
        assert commands(tmp_path) == ["resume"]
        await pilot.press("c")
        assert commands(tmp_path) == ["checkpoint"]
        await pilot.press("s")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        assert commands(tmp_path) == []
        await pilot.press("s", "y")
        assert commands(tmp_path) == ["stop"]
        await pilot.press("l")
        assert "sent 'stop'" in screen_text(app)  # the dashboard's own notes go to the Log


@sync
async def test_controls_on_an_ended_run_say_why_they_do_nothing(tmp_path: Path) -> None:
    write(tmp_path, recorded())
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("p", "c", "s")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen)
        assert commands(tmp_path) == []
        said = [line.message for line in app.state.logs if line.level == "tui"]
        assert said == [
            f"{command}: The run is over (stopped): there is no trainer to control."
            for command in ("pause", "checkpoint", "stop")
        ]
        assert not app.state.pinned()[1:]  # notes are not pinned as warnings


@sync
async def test_follows_a_growing_file_at_a_bounded_redraw_rate(tmp_path: Path) -> None:
    write(tmp_path, recorded(upto=2, live=True))
    app = make_app(tmp_path, poll_interval=0.25)
    rest = [e for e in recorded(upto=12) if e.get("iteration", 0) > 2]
    flood = [
        {
            "v": 1,
            "type": "metrics",
            "time": NOW,
            "iteration": it,
            "metrics": {"loss": 1.0 / it, "kl": 0.01},
        }
        for it in range(13, 3013)
    ]

    def trainer() -> None:  # a fast trainer: 3000 events in about a second, in small appends
        write(tmp_path, rest, mode="a")
        for start in range(0, len(flood), 100):
            write(tmp_path, flood[start : start + 100], mode="a")
            time.sleep(0.03)

    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert app.state.iteration == 2
        redraws, started = app.redraws, time.monotonic()
        thread = threading.Thread(target=trainer)
        thread.start()
        await wait_until(pilot, lambda: app.state.iteration == 3012, timeout=20)
        thread.join()
        elapsed = time.monotonic() - started
        await pilot.pause(0.3)
        assert app.state.games_seen == 48
        assert app.query_one("#recent-games", GamesTable).row_count == 48
        # One redraw per tick at most, however many events arrived.
        assert app.redraws - redraws <= elapsed / 0.25 + 3
        assert "3012 / 40" in screen_text(app)


@sync
async def test_crash_shows_error_and_keeps_everything(tmp_path: Path) -> None:
    events = recorded(upto=3, live=True)
    tb = 'Traceback (most recent call last):\n  File "lsp_mlx/trainer.py", line 210, in run\nRuntimeError: boom at iteration 4'
    events.append({"v": 1, "type": "run_end", "time": events[-1]["time"] + 1, "status": "error",
                   "error": "RuntimeError: boom at iteration 4", "traceback": tb})  # fmt: skip
    write(tmp_path, events)
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        banner = app.query_one("#error-banner", Static)
        assert banner.display
        text = screen_text(app)
        assert "Trainer failed: RuntimeError: boom at iteration 4" in text
        assert 'File "lsp_mlx/trainer.py", line 210' in text
        assert app.query_one("#recent-games", GamesTable).row_count == 12
        assert "3 / 40 · error" in text
        await pilot.press("l")
        assert "RuntimeError: boom at iteration 4" in screen_text(app)
        await pilot.press("q")  # nothing runs any more: quit without asking
    assert app.return_value == 0


@sync
async def test_a_vanished_trainer_is_reported_with_its_log(tmp_path: Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    events = recorded(upto=2)
    events[0] = {**events[0], "pid": int(dead.stdout)}
    write(tmp_path, events)
    (tmp_path / "train.log").write_text("[info] iteration 2\nKilled: out of memory\n")
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert app.state.status == "lost"
        text = screen_text(app)
        assert "is gone and wrote no run_end" in text and "Killed: out of memory" in text
        assert app.query_one("#recent-games", GamesTable).row_count == 8


@sync
async def test_quit_asks_while_the_run_goes_on(tmp_path: Path) -> None:
    write(tmp_path, recorded(upto=4, live=True))
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("q")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        assert not isinstance(app.screen, ConfirmScreen) and app.is_running
        await pilot.press("q", "y")
        await wait_until(pilot, lambda: not app.is_running, timeout=5)
    assert app.return_value == 0
    assert commands(tmp_path) == []  # quitting a dashboard never stops a run it only follows


@sync
async def test_resizes_and_view_switches_at_many_sizes(tmp_path: Path) -> None:
    write(tmp_path, recorded())
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        widths = {}
        # Each size is drawn in a different view, then the plots and games at the smallest.
        for size, view in [
            ((80, 24), "o"),
            ((200, 60), "g"),
            ((40, 12), "l"),
            ((20, 6), "d"),
            ((80, 24), "g"),
        ]:
            await pilot.resize_terminal(*size)
            await pilot.press(view)
            assert screen_text(app).strip()
            widths[size] = app.query_one("#games", GamesTable).columns["query"].width  # type: ignore[index]
        await pilot.resize_terminal(20, 6)
        for view in "og":  # the two views with computed widths, at the smallest size
            await pilot.press(view)
            assert screen_text(app).strip()
        await pilot.resize_terminal(80, 24)
        assert widths[(200, 60)] > widths[(80, 24)] >= 6
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await wait_until(pilot, lambda: "Pause or resume the trainer" in screen_text(app))
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


DESCRIPTION = (
    "# A preset whose description is much longer than the sixty columns the old start screen"
    "\n# gave it, so its end is only visible when nothing is cut."
)


@sync
async def test_start_screen_lists_runs_and_attaches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "mine.yaml").write_text(
        DESCRIPTION + "\nmodel:\n  path: default\ntrain:\n  run_dir: runs/mine\n"
    )
    (tmp_path / "configs" / "tiny.yaml").write_text("# needs a model\ngame:\n  name: lsp\n")
    write(tmp_path / "loose", recorded(upto=2))  # a run folder right in the working directory
    write(tmp_path / "elsewhere" / "far", recorded(upto=1))  # found through --runs-dir
    time.sleep(0.01)
    write(tmp_path / "runs" / "recorded", recorded())  # the newest: first in the list
    picked: list[Path] = []

    def launcher(preset: Path) -> Any:
        # A stand-in for launch_preset, which would start a real trainer (tested in test_tui_launch).
        picked.append(preset)
        return AttachedRun(tmp_path / "runs" / "recorded")

    def start_app() -> DashboardApp:
        return DashboardApp(
            None, clock=lambda: NOW, launcher=launcher, runs_dirs=[tmp_path / "elsewhere"]
        )

    app = start_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, StartScreen)
        text = screen_text(app)
        assert "configs/mine.yaml" in text and "runs/recorded" in text and "stopped" in text
        assert "loose" in text and "elsewhere/far" in text
        assert "end is only visible when nothing is cut." in text  # the whole description
        assert "configs/tiny.yaml  (needs --model)" in text
        app.screen.query_one("#runs").focus()
        await pilot.press("enter")
        await pilot.pause()
        assert not isinstance(app.screen, StartScreen)
        assert isinstance(app.source, AttachedRun) and app.state.games_seen == 48
    app = start_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        await pilot.press("down", "enter")  # tiny.yaml: names no model, so it is refused
        await pilot.pause()
        assert isinstance(app.screen, StartScreen) and picked == []
        await pilot.press("up", "enter")  # the preset list has the focus first
        await pilot.pause()
        assert picked[0].name == "mine.yaml"
        assert app.config_label == str(picked[0]) and app.state.games_seen == 48


def test_app_never_imports_mlx_or_torch() -> None:
    code = (
        "import sys, lsp_mlx.tui.app, lsp_mlx.commands.tui, lsp_mlx.cli;"
        "lsp_mlx.cli.build_parser();"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('mlx', 'mlx_lm', 'torch', 'transformers')];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


if __name__ == "__main__":  # pragma: no cover - handy for looking at the data by hand
    asyncio.run(make_app(Path(sys.argv[1])).run_async())

"""Pilot tests of what the dashboard's views show, on the run recorded from the real model.

``tests/data/recorded_run/events.jsonl`` is a real ``lsp-mlx train --config configs/demo.yaml``
run of the embedded SmolLM2-135M-Instruct (made by ``tests/data/record_run.py``); invented
events appear only where a case cannot be recorded on demand (a warning, a long live run).
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from test_tui_app import screen_text
from textual.widgets import Static

from lsp_mlx.events import read_events
from lsp_mlx.records import Game
from lsp_mlx.tui.app import DashboardApp
from lsp_mlx.tui.format import significant
from lsp_mlx.tui.glossary import METRICS, explain
from lsp_mlx.tui.render import render_game, reward_name
from lsp_mlx.tui.screens import GameScreen, HelpScreen, help_text
from lsp_mlx.tui.source import AttachedRun
from lsp_mlx.tui.state import Checkpoint, RunState
from lsp_mlx.tui.widgets import (
    PLOTS,
    TILES,
    GamePreview,
    GamesTable,
    LogPane,
    MetricPlot,
    MetricRow,
    ProblemsPane,
    _checkpoint_text,
)

REAL = Path(__file__).parent / "data" / "recorded_run" / "events.jsonl"
NOW = 1_700_000_500.0


def real(upto: int | None = None, live: bool = False) -> list[dict[str, Any]]:
    """The recorded real run; ``upto`` keeps the iterations up to that one, without its end."""
    events = read_events(REAL)
    if upto is not None:
        events = [
            e
            for e in events
            if (e.get("iteration") or 0) <= upto and e["type"] not in ("run_end", "state")
        ]
    if live:
        events[0] = {**events[0], "pid": os.getpid()}  # this test plays the trainer
    return events


def write(run_dir: Path, events: list[dict[str, Any]], mode: str = "w") -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "events.jsonl", mode) as fh:
        fh.write("".join(json.dumps(e) + "\n" for e in events))


def sync(test: Callable[..., Any]) -> Callable[..., None]:
    @functools.wraps(test)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return wrapper


def app_for(run_dir: Path) -> DashboardApp:
    return DashboardApp(AttachedRun(run_dir), clock=lambda: NOW)


# ---------------------------------------------------------------- 1. sparklines and glossary
@sync
async def test_sparklines_have_one_column_per_iteration_and_their_range(tmp_path: Path) -> None:
    write(tmp_path, real())
    app = app_for(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        iterations = app.state.iteration or 0
        assert iterations >= 3
        rows = list(app.query(MetricRow))
        # A metric the run does not emit gets no line (LSP-Zero: no self-reward).
        assert [r.key for r in rows if not r.display] == [
            k for k in TILES if k not in app.state.latest
        ] or len([r for r in rows if r.display]) == 7
        for row in [r for r in rows if r.display]:
            line = row.query_one(".metric-spark").render().plain
            values = app.state.values(row.key)
            bars = line[: len(line) - 15]
            assert len(bars.strip()) == len(values) == iterations  # one column each, no stretch
            assert bars.rstrip() == bars  # right-aligned: the newest iteration is the last column
            lo, hi = METRICS[row.key].bounds or (min(values), max(values))
            if row.key.startswith(("reward/", "self_reward/")):  # a reward's bars start at 0
                lo, hi = min(lo, 0.0), max(hi, 0.0)
            labels = {f"{significant(lo, d)}..{significant(hi, d)}" for d in (3, 2, 1)}
            assert line.split()[-1] in labels or lo == hi, line


@sync
async def test_every_number_on_screen_is_explained(tmp_path: Path) -> None:
    drawn = set(TILES) | {key for _, _, series in PLOTS for _, key in series}
    assert drawn <= set(METRICS)
    text = help_text().plain
    for key in drawn:
        assert METRICS[key].meaning in text and METRICS[key].label in text
    assert "negative" in METRICS["kl"].meaning  # why the k1 KL of a sequence can be < 0
    for term in ("total = R + R_Q", "V(q)", "advantage", "Total b/w"):
        assert term in text
    write(tmp_path, real())
    app = app_for(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        assert not app.query_one("#metric-help").display
        row = next(r for r in app.query(MetricRow) if r.key == "kl")
        row.focus()
        await pilot.pause()
        shown = app.query_one("#metric-help", Static)
        assert shown.display and str(shown.render()) == explain("kl")
        assert row.tooltip == explain("kl")
        await pilot.press("g")
        assert not app.query_one("#metric-help").display


# ---------------------------------------------------------------- 2. plots
def axis_labels(plot: MetricPlot) -> tuple[list[str], list[str]]:
    """(y labels, x labels) of a drawn plot, read from its text."""
    lines = plot.render().plain.splitlines()
    ys = [line.split("┤")[0].strip() for line in lines if "┤" in line]
    bottom = next(i for i, line in enumerate(lines) if "└" in line)
    return [y for y in ys if y], lines[bottom + 1].split()


@sync
async def test_plots_have_whole_iterations_fitting_ranges_and_outside_legends(
    tmp_path: Path,
) -> None:
    write(tmp_path, real())
    for size in ((80, 24), (120, 40)):
        async with app_for(tmp_path).run_test(size=size) as pilot:
            app = pilot.app
            await pilot.press("o")
            await pilot.pause()
            plots = [p for p in app.query(MetricPlot) if p.display]
            assert len(plots) == 6
            for plot in plots:
                ys, xs = axis_labels(plot)
                assert xs and all(re.fullmatch(r"\d+", x) for x in xs), (plot.id, xs)
                assert int(xs[0]) == 1 and int(xs[-1]) == app.state.iteration
                assert ys and all(len(re.sub(r"[^0-9]", "", y).lstrip("0")) <= 4 for y in ys), ys
                if plot.id == "plot-zero-var":
                    assert {float(y) for y in ys} <= {0.0, 0.25, 0.5, 0.75, 1.0}
                if plot.id == "plot-reward":  # rewards from 0: both roles on one honest scale
                    assert min(float(y) for y in ys) <= 0.0
                if len(plot.series) > 1:  # the legend is in the border, never on the lines
                    legend = str(plot.border_subtitle)
                    assert all(name in legend for name, _ in plot.series)
                    assert not any(name in plot.render().plain for name, _ in plot.series)


# ---------------------------------------------------------------- 3. games
@sync
async def test_games_use_the_width_and_name_the_reward_parts(tmp_path: Path) -> None:
    write(tmp_path, real())
    app = app_for(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("g")
        await pilot.pause()
        table = app.query_one("#games", GamesTable)
        widths = {key: table.columns[key].width for key in table.keys}  # type: ignore[index]
        used = sum(widths.values()) + 2 * table.cell_padding * len(widths)
        assert table.size.width - used <= 3  # the text columns share all the free width
        assert widths["query"] >= 35  # the advantages are in the preview below, not here
        preview = app.query_one(GamePreview)
        game = app.state.game(table.selected())  # type: ignore[arg-type]
        shown = preview.render().plain  # type: ignore[union-attr]
        assert game is not None and " ".join(game.query.split())[:60] in " ".join(shown.split())
        await pilot.press("enter")
        assert isinstance(app.screen, GameScreen)
        content = str(app.screen.query_one("#game-content", Static).content)
        for answer in game.answers:  # LSP-Zero: R alone, named after its source
            assert f"R {answer.reward_parts['reward']:.3f} (exact)" in content
        footer = screen_text(app)
        assert "←" in footer and "→" in footer and " k " not in footer


@sync
async def test_cursor_follows_the_newest_game_unless_moved(tmp_path: Path) -> None:
    events = real(upto=1, live=True)
    write(tmp_path, events)
    later = [e for e in real(live=True) if (e.get("iteration") or 0) > 1 and e["type"] == "game"]
    app = app_for(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        table = app.query_one("#recent-games", GamesTable)
        assert table.cursor_row == table.row_count - 1
        cursor = table.get_component_rich_style("datatable--cursor")
        plain = table.get_component_rich_style("datatable--odd-row")
        assert cursor.bgcolor is not None and cursor.bgcolor != plain.bgcolor and cursor.bold
        table.move_cursor(row=0)
        write(tmp_path, later[:2], mode="a")
        app.tick()
        await pilot.pause()
        assert table.cursor_row == 0  # the user moved it: it stays
        table.move_cursor(row=table.row_count - 1)
        write(tmp_path, later[2:], mode="a")
        app.tick()
        await pilot.pause()
        assert table.cursor_row == table.row_count - 1  # back at the end: it follows again


# ---------------------------------------------------------------- 4. warnings
@sync
async def test_trainer_warnings_stay_pinned_until_dismissed(tmp_path: Path) -> None:
    events = real(upto=1, live=True)
    warning = "100% of answers hit game.answer_max_tokens: raise it or ask for shorter answers"
    events.append({"v": 1, "type": "log", "time": events[-1]["time"], "level": "warning",
                   "message": warning})  # fmt: skip
    write(tmp_path, events)
    app = app_for(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        for n in range(30):  # the dashboard's own notes and the trainer's info lines
            app.state.note("tui", f"note {n}")
        write(tmp_path, [{**events[-1], "level": "info", "message": f"info {n}"} for n in range(30)],
              mode="a")  # fmt: skip
        app.tick()
        await pilot.pause()
        pane = app.query_one(ProblemsPane)
        text = screen_text(app)
        assert pane.display and warning[:60] in text
        assert "note 29" not in text and "info 29" not in text
        await pilot.press("x")
        await pilot.pause()
        assert not pane.display and warning[:60] not in screen_text(app)
        await pilot.press("l")
        await pilot.pause()
        log = app.query_one("#log", LogPane)
        assert any(warning[:30] in strip.text for strip in log.lines)  # still in the log


# ---------------------------------------------------------------- 5. small things
@sync
async def test_help_says_how_to_close_and_fits_80x24(tmp_path: Path) -> None:
    write(tmp_path, real())
    app = app_for(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        text = screen_text(app)
        assert "Close: Esc, q or ?" in text and "Esc, q or ? closes" in text
        box = app.screen.query_one("#help-box")
        assert box.region.right <= 80 and box.region.bottom <= 24
        await pilot.press("end")  # the rest scrolls into view
        await pilot.pause()
        assert "SIGUSR1" in screen_text(app)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


def test_checkpoint_count_is_the_folders_kept() -> None:
    state = RunState()
    state.apply_all(real())
    paths = [c.path for c in state.checkpoints]
    assert f"({len(set(paths))} kept)" in _checkpoint_text(state)
    state.info["config"]["train"]["keep_checkpoints"] = 2
    state.checkpoints = [Checkpoint(i, None, f"c/iter-{i}", "periodic") for i in (3, 6, 9, 9)]
    assert _checkpoint_text(state).endswith("(2 kept)")  # 9 saved twice, 3 removed


def test_lsp_reward_parts_are_named_total_r_and_r_q() -> None:
    # The recorded demo is LSP-Zero (R alone); an LSP game of the invented fixture has both parts.
    invented = read_events(Path(__file__).parent / "data" / "tui_events.jsonl")
    game = Game.from_dict(next(e for e in invented if e["type"] == "game"))
    info = {"config": {"reward": {"source": "python", "function": "pkg.mod:quality"}}}
    text = render_game(game, reward_name(info)).plain
    for answer in game.answers:
        r, rq = answer.reward_parts["reward"], answer.reward_parts["self_reward"]
        total = f"total {answer.reward:.3f} = R {r:.3f} (quality) + R_Q {rq:.3f} (judge)"
        assert total in text
    assert "(reward " not in text

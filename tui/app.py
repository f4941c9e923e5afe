"""The Textual dashboard: polls a run's events at a bounded rate, draws them, sends controls.

Rates: `DashboardApp.tick` runs every ``poll_interval`` seconds (default 0.25, i.e. 4 Hz),
reads every event written since the last tick, folds them into one `RunState` and redraws
once, so the redraw rate never depends on how fast the trainer writes. Controls go through
the run folder's control channel (`lsp_mlx.control`), which works the same for a trainer
this app started and for one it only attached to.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical
from textual.widget import Widget
from textual.widgets import ContentSwitcher, DataTable, Footer, Header, Static

from lsp_mlx.control import CONTROL_DIR
from lsp_mlx.errors import UserError

from .format import duration
from .glossary import explain
from .render import reward_name
from .screens import ConfirmScreen, GameScreen, HelpScreen
from .source import AttachedRun, LaunchedRun, RunSource, Stopper
from .start import StartScreen, find_presets, find_runs, preset_dirs
from .state import RunState
from .widgets import (
    PLOTS,
    SHOWN_PLOTS,
    SHOWN_TILES,
    TILES,
    GamePreview,
    GamesTable,
    LogPane,
    MetricPlot,
    MetricRow,
    ProblemsPane,
    RunPanel,
)

VIEWS = {"dashboard": "Dashboard", "plots": "Plots", "games": "Games", "log": "Log"}
PROCESS_CHECK_SECONDS = 2.0  # how often an attached run's trainer pid is checked


class DashboardApp(App[int]):
    """``lsp-mlx tui``. ``source`` None opens the start screen (presets and recent runs)."""

    CSS_PATH = "dashboard.tcss"
    TITLE = "lsp-mlx"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [
        Binding("d", "view('dashboard')", "Dash"),
        Binding("o", "view('plots')", "Plots"),
        Binding("g", "view('games')", "Games"),
        Binding("l", "view('log')", "Log"),
        Binding("1", "view('dashboard')", show=False),
        Binding("2", "view('plots')", show=False),
        Binding("3", "view('games')", show=False),
        Binding("4", "view('log')", show=False),
        Binding("p", "pause", "Pause"),
        Binding("c", "checkpoint", "Ckpt"),
        Binding("s", "stop", "Stop"),
        Binding("x", "dismiss_problems", "Dismiss warnings", show=False),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("q", "quit", "Quit"),
        Binding("ctrl+q", "quit", show=False, priority=True),
    ]

    def __init__(
        self,
        source: RunSource | None = None,
        *,
        clock: Callable[[], float] = time.time,
        poll_interval: float = 0.25,
        stop_timeout: float = 120.0,
        config_label: str | None = None,
        launcher: Callable[[Path], LaunchedRun] | None = None,
        runs_dirs: list[Path] | None = None,
    ) -> None:
        super().__init__()
        self.source = source
        self.clock = clock  # injectable: snapshot tests pass a fixed clock
        self.poll_interval = poll_interval
        self.stop_timeout = stop_timeout
        self.config_label = config_label
        self.launcher = launcher
        self.runs_dirs = runs_dirs or []  # where the start screen looks for runs, besides ./runs
        self.state = RunState()
        self.view = "dashboard"
        self.redraws = 0  # ticks that changed something on screen (tests check the rate)
        self._drawn: tuple[object, ...] | None = None
        self._exit_seen = False
        self._next_pid_check = 0.0
        self._stopper: Stopper | None = None  # set once a stop of the launched trainer is under way
        self._quitting = False  # leave once the trainer has exited

    # ------------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        yield Static(id="error-banner")
        with ContentSwitcher(initial="dashboard", id="views"):
            with Vertical(id="dashboard"):
                with Horizontal(id="top"):
                    yield RunPanel(self.config_label, id="run-panel")
                    with Vertical(id="tiles"):
                        for key in TILES:
                            yield MetricRow(key)
                yield Static(id="metric-help")
                yield ProblemsPane(id="problems")
                with Vertical(id="dash-games"):
                    yield GamesTable(compact=True, id="recent-games")
                    yield GamePreview(id="dash-preview")
            with Grid(id="plots"):
                for plot_id, title, series in PLOTS:
                    yield MetricPlot(title, series, id=plot_id)
            with Vertical(id="games-view"):
                yield GamesTable(id="games")
                yield GamePreview(id="game-preview")
            yield LogPane(id="log")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#run-panel").border_title = "Run"
        self.query_one("#tiles").border_title = "Latest · per iteration · range"
        self.query_one("#tiles").border_subtitle = "Tab: meaning"
        self.query_one("#recent-games").border_title = "Games (Enter: open)"
        self.query_one("#metric-help").display = False
        self.query_one("#recent-games").focus()
        if self.source is None:
            self._show_start()
        else:
            self._begin()
        self.set_interval(self.poll_interval, self.tick)

    def _show_start(self) -> None:
        presets = find_presets(preset_dirs())
        runs = find_runs(presets, extra=self.runs_dirs)
        self.push_screen(StartScreen(presets, runs, now=self.clock()), self._picked)

    def _picked(self, choice: tuple[str, Path] | None) -> None:
        if choice is None:
            return
        kind, path = choice
        if kind == "config" and self.launcher is not None:
            try:
                self.source = self.launcher(path)
            except UserError as e:  # a preset that does not load: say why and offer the list again
                self.notify(str(e), title="Cannot train this preset", severity="error", timeout=15)
                self.state.note("tui", f"cannot train {path}: {e}")
                self._show_start()
                return
            self.config_label = str(path)
            self.query_one(RunPanel).config_label = str(path)
        else:
            self.source = AttachedRun(path)
        self._begin()

    def _begin(self) -> None:
        assert self.source is not None
        # The last two parts (e.g. runs/demo): a long path would push the status off the header.
        self.title = "lsp-mlx · " + "/".join(self.source.run_dir.parts[-2:])
        if isinstance(self.source, LaunchedRun) and self.source.process is None:
            try:
                self.source.start()
            except OSError as e:
                self.state.mark_lost(f"could not start the trainer: {e}", [], status="error")
            else:
                self.state.note(
                    "tui", "started: " + " ".join(self.source.command[1:]), self.clock()
                )
        self.tick()

    def on_resize(self) -> None:
        # Short terminals get the plots in 3 columns of 2, so each is tall enough to read.
        self.query_one("#plots").set_class(self.size.height < 34, "short")

    # ------------------------------------------------------------------ the loop
    def tick(self) -> None:
        """Read new events, notice a dead trainer, drive a pending quit, then redraw once."""
        # a tick can fire while the app shuts down and its widgets are being removed
        if self.source is None or not self.is_running:
            return
        self.state.apply_all(self.source.poll())
        self._check_process()
        if self._stopper is not None and self._stopper.step() and self._quitting:
            self.exit(self._exit_code())
        self.redraw()

    def redraw(self) -> None:
        now = self.clock()
        key = (self.state.version, self.view, int(now), self._quitting)
        if key == self._drawn:
            return
        self._drawn = key
        self.redraws += 1
        state = self.state
        self.query_one(RunPanel).update_from(state, now)
        rows = list(self.query(MetricRow))
        _show_first(rows, [[r.key] for r in rows], state, SHOWN_TILES)
        for row in rows:
            row.update_from(state)
        plots = list(self.query(MetricPlot))
        _show_first(plots, [[key for _, key in p.series] for p in plots], state, SHOWN_PLOTS)
        for plot in plots:
            plot.update_from(state)
        for table in self.query(GamesTable):
            table.update_from(state)
        for pane in self.query(LogPane):
            pane.update_from(state)
        self.query_one(ProblemsPane).update_from(state)
        self._update_preview()
        self._update_banner()
        progress = f"it {state.iteration or 0}/{state.total or '?'}"
        status = "stopping, waiting for the checkpoint" if self._quitting else state.status
        self.sub_title = f"{VIEWS[self.view]} · {status} · {progress}"

    def _update_banner(self) -> None:
        banner = self.query_one("#error-banner", Static)
        if self.state.status not in ("error", "lost"):
            banner.display = False
            return
        text = Text(f" Trainer failed: {self.state.error or 'unknown error'}", style="bold")
        for line in self.state.traceback[-6:]:
            text.append("\n  " + line)
        text.append(
            "\n All data so far stays on screen; the full traceback is in the log (l).",
            style="italic",
        )
        banner.update(text)
        banner.display = True

    def _check_process(self) -> None:
        source, state = self.source, self.state
        if source is None:
            return
        if isinstance(source, LaunchedRun):
            code = source.returncode
            if code is None or self._exit_seen:
                return
            self._exit_seen = True
            state.apply_all(source.poll())  # the last events may have landed just before it exited
            if not state.ended:
                # Asked to stop before its run started (SIGTERM while loading): not a failure.
                status = "stopped" if self._stopper is not None else "error"
                state.mark_lost(
                    f"the trainer exited with code {code} before its run ended",
                    source.crash_lines(),
                    when=state.last_time,
                    status=status,
                )
            state.note("tui", f"trainer process exited with code {code}", state.last_time)
            return
        now = time.monotonic()
        if not state.live or now < self._next_pid_check:
            return
        self._next_pid_check = now + PROCESS_CHECK_SECONDS
        if source.process_alive(state.info) is False:
            state.apply_all(source.poll())
            if state.live:
                pid = state.info.get("pid")
                state.mark_lost(
                    f"the trainer (pid {pid}) is gone and wrote no run_end", source.crash_lines()
                )

    # ------------------------------------------------------------------ controls
    def _trainer_alive(self) -> bool:
        if isinstance(self.source, LaunchedRun):
            return self.source.returncode is None and self.source.process is not None
        return self.state.live

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # p/c/s stay active on an ended run so that pressing them says why nothing happens
        # (a disabled binding would be silent).
        return True

    def _not_running(self) -> str | None:
        """Why the trainer cannot take a command now, or None when it can."""
        if self.source is None:
            return "No run is open."
        if self._trainer_alive():
            return None
        if self.state.ended:
            return f"The run is over ({self.state.status}): there is no trainer to control."
        return "The trainer is not running (yet): nothing to control."

    def _send(self, command: str) -> None:
        why = self._not_running()
        if why is not None:
            self._tell(f"{command}: {why}", severity="warning")
            return
        if command == "stop" and isinstance(self.source, LaunchedRun):
            self._stop_launched()
            return
        assert self.source is not None
        path = self.source.send(command)
        self._tell(f"sent {command!r} ({path.parent.name}/{path.name})")
        self.redraw()

    def _stop_launched(self) -> None:
        assert isinstance(self.source, LaunchedRun)
        if self._stopper is None:
            self._stopper = Stopper(
                self.source, self.stop_timeout, starting=self.state.status == "waiting"
            )
            self._note(
                f"sent 'stop' ({CONTROL_DIR}/{self._stopper.file.name if self._stopper.file else '?'})"
            )
        self.redraw()

    def _note(self, message: str) -> None:
        self.state.note("tui", message, self.state.last_time)

    def _tell(self, message: str, severity: str = "information") -> None:
        """Answer a key: a short toast (top right, clear of the warnings) and a line in the Log."""
        self._note(message)
        self.notify(message, severity=severity, timeout=4)  # type: ignore[arg-type]

    def action_pause(self) -> None:
        self._send("resume" if self.state.status == "paused" else "pause")

    def action_checkpoint(self) -> None:
        self._send("checkpoint")

    def action_stop(self) -> None:
        why = self._not_running()
        if why is not None:
            self._tell(f"stop: {why}", severity="warning")
            return
        self.push_screen(
            ConfirmScreen("Stop training? The trainer saves a checkpoint and exits.", yes="Stop"),
            lambda yes: self._send("stop") if yes else None,
        )

    def action_view(self, view: str) -> None:
        self.view = view
        focus = {"dashboard": "#recent-games", "games": "#games", "log": "#log"}.get(view)
        self.query_one("#views", ContentSwitcher).current = (
            "games-view" if view == "games" else view
        )
        if focus:
            self.query_one(focus).focus()
        self.redraw()

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    async def action_quit(self) -> None:
        if self._quitting and self._stopper is not None:
            # q again while waiting for the checkpoint: escalate (SIGTERM, then SIGKILL, then leave).
            sent = self._stopper.signalled[-1:] if self._stopper.hurry() else []
            if not sent:
                self.exit(1)
            self._note(f"sent {sent[0]} to the trainer" if sent else "leaving")
            return
        if isinstance(self.source, LaunchedRun) and self._trainer_alive():
            self.push_screen(
                ConfirmScreen(
                    "Training is still running. Stop it (it saves a checkpoint) and quit?",
                    yes="Stop and quit",
                ),
                self._quit_confirmed,
            )
        elif self.source is not None and self._trainer_alive():
            self.push_screen(
                ConfirmScreen(
                    "The run keeps training after the dashboard closes. Quit the dashboard?",
                    yes="Quit",
                ),
                lambda yes: self.exit(0) if yes else None,
            )
        else:
            self.exit(self._exit_code())

    def _quit_confirmed(self, yes: bool | None) -> None:
        if not yes:
            return
        self._quitting = True
        self._stop_launched()
        self._note(
            f"waiting up to {duration(self.stop_timeout)} for the final checkpoint (q again: hurry)"
        )

    def _exit_code(self) -> int:
        return (
            1
            if isinstance(self.source, LaunchedRun) and self.state.status in ("error", "lost")
            else 0
        )

    # ------------------------------------------------------------------ games
    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if isinstance(event.data_table, GamesTable) and event.row_key.value is not None:
            source = reward_name(self.state.info)
            self.push_screen(GameScreen(self.state.game, int(event.row_key.value), source))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id in ("games", "recent-games"):
            self._update_preview()

    def _update_preview(self) -> None:
        """The game under the cursor of the visible games table, below it."""
        table, preview = {
            "games": ("#games", "#game-preview"),
            "dashboard": ("#recent-games", "#dash-preview"),
        }.get(self.view, (None, None))
        if table is not None and preview is not None:
            number_ = self.query_one(table, GamesTable).selected()
            self.query_one(preview, GamePreview).show(self.state, number_)

    # ------------------------------------------------------------------ warnings, metric help
    def action_dismiss_problems(self) -> None:
        count = self.state.dismiss_problems()
        if count:
            self._note(f"dismissed {count} warning(s); they stay in the log")
        self.redraw()

    def on_descendant_focus(self, event: object) -> None:
        self._show_metric_help(self.focused)

    def on_descendant_blur(self, event: object) -> None:
        self.call_after_refresh(self._show_metric_help, None)

    def _show_metric_help(self, widget: Widget | None) -> None:
        widget = widget if widget is not None else self.focused
        line = self.query_one("#metric-help", Static)
        if isinstance(widget, MetricRow):
            line.update(Text(explain(widget.key)))
            line.display = True
        else:
            line.display = False


def _show_first(widgets: list[Widget], keys: list[list[str]], state: RunState, limit: int) -> None:
    """Show the first ``limit`` widgets whose metrics the run emits (all, before any metrics)."""
    shown = 0
    for widget, wanted in zip(widgets, keys):
        has_data = not state.latest or any(key in state.latest for key in wanted)
        widget.display = has_data and shown < limit
        shown += widget.display

"""The dashboard's widgets. Each one redraws from a `RunState` when the app tells it to.

They never read files or the clock themselves: the app polls events at a bounded rate and
then calls ``update_from`` once per batch, so a trainer writing thousands of events a
second costs one redraw per tick. Model text is always wrapped in `rich.text.Text`,
never parsed as markup: a Solver answer containing ``[bold]`` is shown as written.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from rich.style import Style
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import DataTable, Label, RichLog, Sparkline, Static
from textual_plotext import PlotextPlot

from lsp_mlx.records import Game

from .format import clip, duration, number, printable, signed
from .state import LogLine, RunState

LEVEL_LABELS = {"warning": "WARN", "error": "ERROR", "info": "INFO", "tui": "TUI", "debug": "DEBUG"}
STATUSES = ("waiting", "running", "paused", "stopping", "finished", "stopped", "error", "lost")

# (label, metric key) for the compact sparkline rows of the dashboard.
TILES: list[tuple[str, str]] = [
    ("Solver R", "reward/solver_mean"),
    ("Chall. R", "reward/challenger_mean"),
    ("Self-rew", "self_reward/mean"),
    ("Loss", "loss"),
    ("KL", "kl"),
    ("Zero-var", "zero_variance_groups"),
    ("Tokens/s", "tokens_per_sec"),
]

# (plot id, title, [(legend, metric key)]) for the plots view.
PLOTS: list[tuple[str, str, list[tuple[str, str]]]] = [
    (
        "plot-reward",
        "Reward per role",
        [("Solver", "reward/solver_mean"), ("Challenger", "reward/challenger_mean")],
    ),
    ("plot-self-reward", "Self-reward (quality)", [("self-reward", "self_reward/mean")]),
    (
        "plot-loss",
        "Loss",
        [("total", "loss"), ("solver", "loss/solver"), ("challenger", "loss/challenger")],
    ),
    ("plot-kl", "KL to the reference", [("KL", "kl")]),
    ("plot-zero-var", "Zero-variance groups (share)", [("share", "zero_variance_groups")]),
    ("plot-tokens", "Tokens / s", [("tokens/s", "tokens_per_sec")]),
]
PLOT_COLORS = ["cyan", "orange", "green"]
SPARK_POINTS = 300  # newest points a sparkline summarises


class MetricRow(Horizontal):
    """One metric on one line: name, latest value and a sparkline of its history."""

    def __init__(self, label: str, key: str) -> None:
        super().__init__(classes="metric-row")
        self.label, self.key = label, key
        self._shown: tuple[int, ...] | None = None

    def compose(self) -> ComposeResult:
        yield Label(self.label, classes="metric-name")
        yield Label("—", classes="metric-value")
        yield Sparkline([], classes="metric-spark")

    def update_from(self, state: RunState) -> None:
        values = state.values(self.key)[-SPARK_POINTS:]
        latest = state.latest.get(self.key)
        if self._shown == (state.metrics_version,):
            return
        self._shown = (state.metrics_version,)
        self.query_one(".metric-value", Label).update(number(latest))
        self.query_one(Sparkline).data = values


class MetricPlot(PlotextPlot):
    """A plotext chart of one or more metrics against the iteration."""

    def __init__(self, title: str, series: list[tuple[str, str]], id: str) -> None:
        super().__init__(id=id, classes="metric-plot")
        self.title = title
        self.series = series
        self._shown = -1

    def update_from(self, state: RunState) -> None:
        if self._shown == state.metrics_version:
            return
        self._shown = state.metrics_version
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title(self.title)
        drawn = 0
        for (legend, key), color in zip(self.series, PLOT_COLORS):
            xs, ys = state.points(key)
            if not xs:
                continue
            plt.plot(
                xs,
                ys,
                label=legend if len(self.series) > 1 else None,
                marker="braille",
                color=color,
            )
            drawn += 1
        if not drawn:
            plt.title(f"{self.title}: no data yet")
        self.refresh()


class RunPanel(Static):
    """Model, backend, config, progress, timing, memory and checkpoints of the run."""

    # The colour of each status, set in dashboard.tcss.
    COMPONENT_CLASSES = {f"status--{s}" for s in STATUSES}

    def __init__(self, config_label: str | None = None, **kwargs: object) -> None:
        super().__init__("", **kwargs)  # type: ignore[arg-type]
        self.config_label = config_label
        self._shown: tuple[str, ...] | None = None

    def update_from(self, state: RunState, now: float, view: str = "") -> None:
        rows = self.rows(state, now)
        key = tuple(v for _, v in rows)
        if key == self._shown:
            return
        self._shown = key
        grid = Table.grid(padding=(0, 1))
        grid.add_column(style="bold", no_wrap=True, min_width=10)
        grid.add_column(overflow="ellipsis", no_wrap=True)
        status = dict(rows).get("Status", "")
        for name, value in rows:
            if name == "Status":
                continue
            cell = Text(value)
            if name == "Iteration":
                cell.append(" · ")
                cell.append(status, style=self._style(f"status--{status}"))
            grid.add_row(name, cell)
        self.update(grid)

    def _style(self, component: str) -> Style | str:
        return (
            self.get_component_rich_style(component) if component in self.COMPONENT_CLASSES else ""
        )

    def rows(self, state: RunState, now: float) -> list[tuple[str, str]]:
        info = state.info
        config = info.get("config") if isinstance(info.get("config"), dict) else {}
        model = str(info.get("model") or "—")
        base = info.get("base_model")
        backend = " · ".join(
            _tidy(str(info[k])) for k in ("backend", "device", "blas") if info.get(k)
        )
        name = model.rstrip("/").rsplit("/", 1)[-1]  # the folder name; the full path is in the log
        progress = f"{state.iteration if state.iteration is not None else 0} / {state.total or '?'}"
        eta = "paused" if state.status == "paused" else duration(state.eta())
        memory = state.peak_memory_gb()
        rows = [
            (
                "Model",
                name + (f" ({base})" if base and str(base) not in model else ""),
            ),
            ("Backend", backend or "—"),
            (
                "Config",
                " · ".join(x for x in (self.config_label, _config_summary(config)) if x) or "—",
            ),
            ("Iteration", progress),
            ("Status", state.status),
            ("Elapsed", f"{duration(state.elapsed(now))} · ETA {eta}"),
            ("Memory", f"{memory:.2f} GB peak" if memory is not None else "—"),
            ("Checkpoint", _checkpoint_text(state)),
        ]
        return rows


class GamesTable(DataTable):
    """One row per game; long texts are cut to the column, the detail view shows them whole.

    ``compact`` (the dashboard's preview) leaves out the advantage columns so the texts
    stay readable at 80 columns; the games view shows them all.
    """

    # (key, header, width): an int is a fixed width, a float a share of what the fixed ones leave.
    COLUMNS: list[tuple[str, str, int | float]] = [
        ("it", "It", 3),
        ("query", "Challenger query", 0.4),
        ("best", "Best answer", 0.3),
        ("worst", "Worst answer", 0.3),
        ("rewards", "R best/wst", 10),
        ("adv", "Advantages", 11),
        ("ch", "Ch adv", 6),
    ]
    COMPACT = ("it", "query", "best", "worst", "rewards")
    MIN_TEXT = 36  # below this much room for the texts the table scrolls sideways

    def __init__(self, follow: bool = True, compact: bool = False, **kwargs: object) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)  # type: ignore[arg-type]
        self.follow = follow
        self.keys = [c[0] for c in self.COLUMNS if not compact or c[0] in self.COMPACT]
        self.seen = 0
        self.generation = -1

    def on_mount(self) -> None:
        for key, label, width in self.COLUMNS:
            if key in self.keys:
                self.add_column(label, key=key, width=width if isinstance(width, int) else 10)
        self._fit_columns()

    def on_resize(self) -> None:
        self._fit_columns()

    def _fit_columns(self) -> None:
        specs = [(k, w) for k, _, w in self.COLUMNS if k in self.keys]
        fixed = sum(w for _, w in specs if isinstance(w, int))
        padding = 2 * self.cell_padding * len(specs)
        free = max(self.scrollable_content_region.width - fixed - padding, self.MIN_TEXT)
        for key, share in specs:
            if isinstance(share, float):
                column = self.columns[key]  # type: ignore[index]
                column.width = max(int(free * share), 6)
                column.auto_width = False
        self._require_update_dimensions = True
        self.refresh()

    def update_from(self, state: RunState) -> None:
        if self.generation != state.generation:
            self.generation = state.generation
            self.seen = 0
            self.clear()
        new = state.new_games(self.seen)
        if not new:
            return
        at_end = self.row_count == 0 or self.cursor_row >= self.row_count - 1
        for number_, game in new:
            cells = _game_cells(game)
            self.add_row(*[cells[k] for k in self.keys], key=str(number_))
        self.seen = state.games_seen
        if self.follow and at_end:
            self.move_cursor(row=self.row_count - 1)


class LogPane(RichLog):
    """Log lines of the run; ``levels`` limits which ones (the dashboard shows only problems)."""

    # Colours per level and for the times, set in dashboard.tcss.
    COMPONENT_CLASSES = {
        "log--time",
        "log--message-error",
        *(f"log--{level}" for level in LEVEL_LABELS),
    }

    def __init__(self, levels: set[str] | None = None, wrap: bool = True, **kwargs: object) -> None:
        super().__init__(max_lines=5000, wrap=wrap, markup=False, **kwargs)  # type: ignore[arg-type]
        self.levels = levels
        self.seen = 0
        self.generation = -1

    def update_from(self, state: RunState) -> None:
        if self.generation != state.generation:
            self.generation = state.generation
            self.seen = 0
            self.clear()
        for line in state.new_logs(self.seen):
            if self.levels is None or line.level in self.levels:
                self.write(format_log(line, state.start_time, self._style))
        self.seen = state.logs_seen

    def _style(self, component: str) -> Style | str:
        return (
            self.get_component_rich_style(component) if component in self.COMPONENT_CLASSES else ""
        )


def format_log(
    line: LogLine, start: float | None, style: Callable[[str], Style | str] = lambda _: ""
) -> Text:
    """``+H:MM:SS LEVEL message``; times are relative to the run start, so they never depend on the clock zone."""
    when = duration(line.time - start) if line.time is not None and start is not None else "—"
    level = LEVEL_LABELS.get(line.level, line.level.upper()[:5])
    text = Text(f"+{when} " if when != "—" else "", style=style("log--time"))
    text.append(f"{level:<5} ", style=style(f"log--{line.level}"))
    text.append(
        printable(line.message), style=style("log--message-error") if line.level == "error" else ""
    )
    return text


def _game_cells(game: Game) -> dict[str, Text]:
    best, worst = game.best(), game.worst()

    def cell(text: str, style: str = "") -> Text:
        return Text(clip(text, 400), style=style, no_wrap=True, overflow="ellipsis")

    return {
        "it": Text(str(game.iteration)),
        "query": cell(game.query) if game.valid else cell("✗ " + game.query, "dim strike"),
        "best": cell(best.text) if best else Text("—"),
        "worst": cell(worst.text) if worst else Text("—"),
        "rewards": Text(f"{best.reward:.2f}/{worst.reward:.2f}" if best and worst else "—"),
        "adv": Text(
            f"{signed(best.advantage)}/{signed(worst.advantage)}" if best and worst else "—"
        ),
        "ch": Text(signed(game.challenger_advantage)),
    }


def _tidy(value: str) -> str:
    """ "Device(cpu, 0)" -> "cpu:0"; "OpenBLAS (/usr/lib/...so.0)" -> "OpenBLAS": what fits a line."""
    match = re.fullmatch(r"Device\((\w+), (\d+)\)", value)
    if match:
        return f"{match.group(1)}:{match.group(2)}"
    return value.split(" (")[0]


def _config_summary(config: dict[str, object]) -> str:
    game = config.get("game") if isinstance(config.get("game"), dict) else {}
    train = config.get("train") if isinstance(config.get("train"), dict) else {}
    if not game and not train:
        return ""
    parts = [str(game.get("name", "?"))]  # type: ignore[union-attr]
    if "num_queries" in game and "group_size" in game:  # type: ignore[operator]
        parts.append(f"N={game['num_queries']} G={game['group_size']}")  # type: ignore[index]
    if "learning_rate" in train:  # type: ignore[operator]
        parts.append(f"lr {train['learning_rate']:g}")  # type: ignore[index]
    return " · ".join(parts)


def _checkpoint_text(state: RunState) -> str:
    if not state.checkpoints:
        return "none yet"
    last = state.checkpoints[-1]
    at = (
        f" +{duration(last.time - state.start_time)}"
        if last.time is not None and state.start_time is not None
        else ""
    )
    where = f"it {last.iteration}" if last.iteration is not None else "saved"
    return f"{where}{at} ({len(state.checkpoints)} saved)"

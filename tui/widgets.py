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
from textual.widget import Widget
from textual.widgets import DataTable, Label, RichLog, Static
from textual_plotext import PlotextPlot

from lsp_mlx.records import Game

from .format import (
    clip,
    duration,
    iteration_ticks,
    nice_range,
    printable,
    signed,
    significant,
)
from .glossary import explain, metric
from .render import render_game, reward_name
from .state import LogLine, RunState

LEVEL_LABELS = {"warning": "WARN", "error": "ERROR", "info": "INFO", "tui": "TUI", "debug": "DEBUG"}
STATUSES = ("waiting", "running", "paused", "stopping", "finished", "stopped", "error", "lost")

# Metric keys of the sparkline rows of the dashboard (labels from the glossary): the first
# `SHOWN_TILES` that the run emits are shown (LSP-Zero and SQLM have no self-reward).
SHOWN_TILES = 7
TILES: list[str] = [
    "reward/solver_mean",
    "reward/challenger_mean",
    "self_reward/mean",
    "loss",
    "kl",
    "zero_variance_groups",
    "tokens_per_sec",
    "answer_tokens_mean",
]

# (plot id, title, [(legend, metric key)]) for the plots view: the first `SHOWN_PLOTS` with data.
SHOWN_PLOTS = 6
PLOTS: list[tuple[str, str, list[tuple[str, str]]]] = [
    (
        "plot-reward",
        "Rewards",
        [("Solver", "reward/solver_mean"), ("Query", "reward/challenger_mean")],
    ),
    ("plot-self-reward", "Self-reward R_Q", [("R_Q", "self_reward/mean")]),
    (
        "plot-loss",
        "Loss",
        [("sum", "loss"), ("Sol", "loss/solver"), ("Query", "loss/challenger")],
    ),
    ("plot-kl", "KL (nats/seq)", [("KL", "kl")]),
    ("plot-zero-var", "Zero-var share", [("share", "zero_variance_groups")]),
    ("plot-tokens", "Tokens / s", [("tokens/s", "tokens_per_sec")]),
    ("plot-answer-tokens", "Answer tokens", [("tokens", "answer_tokens_mean")]),
]
PLOT_COLORS = ["cyan", "orange", "green"]
BLOCKS = "▁▂▃▄▅▆▇█"
REWARD_KEYS = ("reward/", "self_reward/")  # plotted from 0: a reward's scale starts there


def spark(
    points: list[tuple[int, float]],
    last: int,
    width: int,
    bounds: tuple[float, float] | None,
    from_zero: bool = False,
) -> tuple[str, tuple[float, float] | None]:
    """One character per iteration for the ``width`` iterations up to ``last``, right-aligned.

    A missing iteration is a blank, never a zero. The bars span ``bounds`` when the quantity
    has its own range (a share: 0..1), else the min..max of the shown values, widened to
    include 0 when ``from_zero`` (a reward: 1.26 -> 1.35 stays a small step); that span is
    returned so it can be printed beside the line.
    """
    if width <= 0 or not points:
        return " " * max(width, 0), None
    first = last - width + 1
    shown = {i: v for i, v in points if first <= i <= last}
    if not shown:
        return " " * width, None
    lo, hi = bounds if bounds is not None else (min(shown.values()), max(shown.values()))
    if from_zero and bounds is None:
        lo, hi = min(lo, 0.0), max(hi, 0.0)
    span = hi - lo
    chars = []
    for i in range(first, last + 1):
        value = shown.get(i)
        if value is None:
            chars.append(" ")
        elif span <= 0:
            chars.append(BLOCKS[3])  # a constant: a flat line in the middle
        else:
            level = round((min(max(value, lo), hi) - lo) / span * (len(BLOCKS) - 1))
            chars.append(BLOCKS[level])
    return "".join(chars), (lo, hi)


class SparkLine(Widget):
    """The bars of one metric (see `spark`) and, at the right, the span they are drawn on.

    It draws from its own width on every render, so a resize never leaves stale bars.
    """

    RANGE_WIDTH = 14

    def __init__(
        self, bounds: tuple[float, float] | None, from_zero: bool, **kwargs: object
    ) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.bounds = bounds
        self.from_zero = from_zero
        self.points: list[tuple[int, float]] = []
        self.last = 0

    def show(self, points: list[tuple[int, float]], last: int) -> None:
        self.points, self.last = points, last
        self.refresh()

    def render(self) -> Text:
        width = self.size.width
        bars_width = max(width - self.RANGE_WIDTH - 1, 0)
        bars, span = spark(self.points, self.last, bars_width, self.bounds, self.from_zero)
        text = Text(bars, style=self.get_component_rich_style("metric-spark--bars"))
        if span is not None:
            for digits in (3, 2, 1):
                lo, hi = significant(span[0], digits), significant(span[1], digits)
                label = f"{lo}..{hi}" if lo != hi else lo
                if len(label) <= self.RANGE_WIDTH:
                    break
            text.append(" " + label.rjust(self.RANGE_WIDTH), style="dim")
        return text

    COMPONENT_CLASSES = {"metric-spark--bars"}


class MetricRow(Horizontal, can_focus=True):
    """One metric on one line: name, latest value, one column per iteration, the bars' span.

    Focusable, so the selected metric's explanation can be shown (`DashboardApp`), and its
    tooltip carries the same line for the mouse.
    """

    def __init__(self, key: str) -> None:
        super().__init__(classes="metric-row")
        self.key = key
        self.info = metric(key)
        self.tooltip = explain(key)
        self._shown: int | None = None

    def compose(self) -> ComposeResult:
        yield Label(self.info.label, classes="metric-name")
        yield Label("—", classes="metric-value")
        from_zero = self.key.startswith(REWARD_KEYS)  # as in the plots
        yield SparkLine(self.info.bounds, from_zero, classes="metric-spark")

    def update_from(self, state: RunState) -> None:
        if self._shown == state.metrics_version:
            return
        self._shown = state.metrics_version
        self.query_one(".metric-value", Label).update(significant(state.latest.get(self.key)))
        points = state.series.get(self.key, [])
        last = max(state.iteration or 0, points[-1][0] if points else 0)
        self.query_one(SparkLine).show(points, last)


class MetricPlot(PlotextPlot):
    """A plotext chart of one or more metrics against the iteration.

    The title (top) and the legend (bottom) live in the border, outside the data; the x axis
    is the iteration, its ticks whole numbers; the y ticks have at most 4 significant digits;
    the y range is the quantity's own when it has one (0..1 for a share), and a reward's
    starts at 0, so both roles' rewards and small changes are drawn to scale.
    """

    def __init__(self, title: str, series: list[tuple[str, str]], id: str) -> None:
        super().__init__(id=id, classes="metric-plot")
        self.title = title
        self.series = series
        self._shown: tuple[int, int, int] | None = None
        self._state: RunState | None = None

    def on_resize(self) -> None:
        if self._state is not None:  # the ticks depend on the size
            self.update_from(self._state)

    def update_from(self, state: RunState) -> None:
        self._state = state
        key_ = (state.metrics_version, self.size.width, self.size.height)
        if self._shown == key_:
            return
        self._shown = key_
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        legend = Text()
        xs_all: list[int] = []
        ys_all: list[float] = []
        for (name, key), color in zip(self.series, PLOT_COLORS):
            xs, ys = state.points(key)
            if not xs:
                continue
            plt.plot(xs, ys, marker="braille", color=color)
            xs_all += xs
            ys_all += ys
            if len(self.series) > 1:
                legend.append(" ● " if legend else "● ", style=_COLOR_STYLES[color])
                legend.append(name)
        self.border_title = self.title
        self.border_subtitle = legend if legend else None
        if not xs_all:
            self.border_title = f"{self.title}: no data yet"
            self.refresh()
            return
        first, last = min(xs_all), max(xs_all)
        ticks = iteration_ticks(first, last, max(min(self.size.width // 8, 8), 2))
        plt.xticks(ticks, [str(t) for t in ticks])
        plt.xlim(first - 0.5 if first == last else first, last + 0.5 if first == last else last)
        bounds = metric(self.series[0][1]).bounds
        if bounds is not None:
            lo, hi = bounds
            lo, hi = min(lo, min(ys_all)), max(hi, max(ys_all))
        else:
            lo, hi = min(ys_all), max(ys_all)
            if self.series[0][1].startswith(REWARD_KEYS):
                lo, hi = min(lo, 0.0), max(hi, 0.0)
        count = max(min((self.size.height - 3) // 2, 5), 1)
        lo, hi, yticks = nice_range(lo, hi, count)
        plt.ylim(lo, hi)
        plt.yticks(yticks, [significant(t) for t in yticks])
        self.refresh()


_COLOR_STYLES = {"cyan": "cyan", "orange": "dark_orange", "green": "green"}


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
        grid = Table.grid(padding=(0, 1), expand=True)  # expand: a long value ends in …
        grid.add_column(style="bold", no_wrap=True, min_width=10)
        grid.add_column(overflow="ellipsis", no_wrap=True, ratio=1)
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
        # The base model's short name when known (a converted copy's folder name adds nothing
        # but length), else the folder name; the full path is in the log.
        name = str(base or model).rstrip("/").rsplit("/", 1)[-1]
        progress = f"{state.iteration if state.iteration is not None else 0} / {state.total or '?'}"
        eta = "paused" if state.status == "paused" else duration(state.eta())
        memory = state.peak_memory_gb()
        rows = [
            (
                "Model",
                name,
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
    """One row per game; long texts are cut to the column, the detail shows them whole.

    The fixed columns (iteration, rewards, advantages) keep their width and the query and the
    two answers share the rest. ``compact`` (the dashboard's preview) and any table narrower
    than `WIDE` leave out the advantages so the texts stay readable. The cursor follows the
    newest game until the user moves it off the last row, and again once they return there.
    """

    # (key, header, width): an int is a fixed width, a float a share of what the fixed ones leave.
    COLUMNS: list[tuple[str, str, int | float]] = [
        ("it", "It", 3),
        ("query", "Query", 0.4),
        ("best", "Best answer", 0.3),
        ("worst", "Worst answer", 0.3),
        ("rewards", "Total b/w", 9),
        ("adv", "Adv b/w", 11),
        ("ch", "Q adv", 6),
    ]
    COMPACT = ("it", "query", "best", "worst", "rewards")
    WIDE = 150  # from this width on the full table shows the advantages (always in the preview)
    MIN_TEXT = 36  # below this much room for the texts the table scrolls sideways

    def __init__(self, follow: bool = True, compact: bool = False, **kwargs: object) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)  # type: ignore[arg-type]
        self.follow = follow
        self.compact = compact
        self.keys: list[str] = []
        self.seen = 0
        self.generation = -1
        self._state: RunState | None = None

    def _wanted_keys(self) -> list[str]:
        narrow = self.compact or self.size.width < self.WIDE
        return [c[0] for c in self.COLUMNS if not narrow or c[0] in self.COMPACT]

    def on_mount(self) -> None:
        self._rebuild()

    def on_resize(self) -> None:
        if self._wanted_keys() != self.keys:
            self._rebuild()
        else:
            self._fit_columns()

    def _rebuild(self) -> None:
        """Columns for the current width, and the rows again (a column set change needs both)."""
        row = self.cursor_row
        self.clear(columns=True)
        self.keys = self._wanted_keys()
        for key, label, width in self.COLUMNS:
            if key in self.keys:
                self.add_column(label, key=key, width=width if isinstance(width, int) else 10)
        self._fit_columns()
        self.seen = 0
        if self._state is not None:
            self._add_rows(self._state)
            if self.row_count:
                self.move_cursor(row=min(row, self.row_count - 1), animate=False)

    def _fit_columns(self) -> None:
        specs = [(k, w) for k, _, w in self.COLUMNS if k in self.keys]
        fixed = sum(w for _, w in specs if isinstance(w, int))
        padding = 2 * self.cell_padding * len(specs)
        free = max(self.scrollable_content_region.width - fixed - padding, self.MIN_TEXT)
        shares = [(k, w) for k, w in specs if isinstance(w, float)]
        total = sum(w for _, w in shares)
        left = free
        for n, (key, share) in enumerate(shares):
            column = self.columns[key]  # type: ignore[index]
            width = left if n == len(shares) - 1 else max(int(free * share / total), 6)
            column.width = max(width, 6)
            column.auto_width = False
            left -= width
        self._require_update_dimensions = True
        self.refresh()

    @property
    def following(self) -> bool:
        """True while the cursor is on the newest game (or there is none yet)."""
        return self.row_count == 0 or self.cursor_row >= self.row_count - 1

    def update_from(self, state: RunState) -> None:
        self._state = state
        if self.generation != state.generation:
            self.generation = state.generation
            self.seen = 0
            self.clear()
        if not state.new_games(self.seen) or not self.keys:
            return
        at_end = self.following
        self._add_rows(state)
        if self.follow and at_end:
            self.move_cursor(row=self.row_count - 1, animate=False)

    def _add_rows(self, state: RunState) -> None:
        for number_, game in state.new_games(self.seen):
            cells = _game_cells(game)
            self.add_row(*[cells[k] for k in self.keys], key=str(number_))
        self.seen = state.games_seen

    def selected(self) -> int | None:
        """The absolute number of the game under the cursor, if any."""
        if not self.row_count:
            return None
        try:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        except Exception:  # noqa: BLE001 - the cursor may sit past rows being rebuilt
            return None
        return int(key) if key is not None else None


class ProblemsPane(Static):
    """The trainer's warnings and errors, each message once with its count, until dismissed."""

    COMPONENT_CLASSES = {"log--time", "log--message-error", "log--warning", "log--error"}

    def __init__(self, **kwargs: object) -> None:
        super().__init__("", **kwargs)  # type: ignore[arg-type]
        self._shown: tuple[int, int, int] | None = None

    def update_from(self, state: RunState) -> None:
        key = (len(state.problems), state.problems_dismissed, state.generation)
        if key == self._shown:
            return
        self._shown = key
        pinned = state.pinned()
        self.display = bool(pinned)
        text = Text()
        for n, (line, count) in enumerate(pinned[-4:]):
            if n:
                text.append("\n")
            text.append_text(format_log(line, state.start_time, self._style))
            if count > 1:
                text.append(f" (×{count})", style="bold")
        hidden = len(pinned) - 4
        self.border_title = "Warnings and errors from the trainer"
        self.border_subtitle = (
            f"{hidden} older in the log · " if hidden > 0 else ""
        ) + "x: dismiss"
        self.update(text)

    def _style(self, component: str) -> Style | str:
        return (
            self.get_component_rich_style(component) if component in self.COMPONENT_CLASSES else ""
        )


class GamePreview(Static):
    """The game under the games table's cursor, wrapped to the width (the whole game: Enter)."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__("", **kwargs)  # type: ignore[arg-type]
        self._shown: tuple[int | None, int] | None = None

    def show(self, state: RunState, number_: int | None) -> None:
        key = (number_, state.generation)
        if key == self._shown:
            return
        self._shown = key
        game = state.game(number_) if number_ is not None else None
        if game is None:
            self.update(Text("no game yet", style="dim"))
            return
        self.border_title = (
            f"Iteration {game.iteration} · game {game.index + 1} (Enter: whole game)"
        )
        self.update(render_game(game, reward_name(state.info)))


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
        "ch": Text(signed(game.query_advantage)),
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
        parts.append(f"{game['num_queries']}×{game['group_size']}")  # type: ignore[index]
    if "learning_rate" in train:  # type: ignore[operator]
        parts.append(f"lr {significant(train['learning_rate'], 2)}")  # type: ignore[index]
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
    # One iteration can be saved twice (periodic, then final): count folders, as the trainer
    # keeps them (train.keep_checkpoints newest, 0 = all).
    folders = len({c.path for c in state.checkpoints})
    config = state.info.get("config") if isinstance(state.info.get("config"), dict) else {}
    train = config.get("train") if isinstance(config.get("train"), dict) else {}  # type: ignore[union-attr]
    keep = train.get("keep_checkpoints", 3)  # type: ignore[union-attr]
    if isinstance(keep, int) and keep > 0:
        folders = min(folders, keep)
    return f"{where}{at} ({folders} kept)"

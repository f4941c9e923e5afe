"""Screens over the dashboard: one game in full, the key help, and a yes/no question."""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Label, Static

from lsp_mlx.records import Game

from .glossary import metric
from .render import render_game, render_title
from .widgets import PLOTS, TILES


class GameScreen(ModalScreen[None]):
    """A whole game: the query and every Solver answer, best first, untruncated.

    Modal so the dashboard's keys (views, controls) do not act behind it.
    """

    BINDINGS = [
        Binding("escape,q,enter", "close", "Back", key_display="Esc"),
        Binding("left,k", "step(-1)", "Previous game", key_display="←"),
        Binding("right,j", "step(1)", "Next game", key_display="→"),
    ]

    def __init__(
        self, lookup: Callable[[int], Game | None], number_: int, source: str = ""
    ) -> None:
        super().__init__()
        self.lookup = lookup
        self.number = number_
        self.source = source  # the reward source's name, for the reward parts

    def compose(self) -> ComposeResult:
        yield Static(id="game-title")
        with VerticalScroll(id="game-body"):
            yield Static(id="game-content")
        yield Footer()

    def on_mount(self) -> None:
        self.show()

    def show(self) -> None:
        game = self.lookup(self.number)
        title = self.query_one("#game-title", Static)
        content = self.query_one("#game-content", Static)
        if game is None:
            title.update(Text(f"Game {self.number} is no longer kept", style="bold"))
            content.update("")
            return
        title.update(render_title(game))
        content.update(render_game(game, self.source))
        self.query_one("#game-body").scroll_home(animate=False)

    def action_close(self) -> None:
        self.dismiss(None)

    def action_step(self, delta: int) -> None:
        if self.lookup(self.number + delta) is not None:
            self.number += delta
            self.show()


KEYS = [
    ("d 1", "Dashboard: run panel, metric lines, recent games, pinned warnings"),
    ("o 2", "Plots: rewards, self-reward, loss, KL, zero-var share, tokens/s"),
    ("g 3", "All games, the selected one below; Enter opens it whole"),
    ("l 4", "The full log, with the dashboard's own notes"),
    ("p", "Pause or resume the trainer (only while it runs)"),
    ("c", "Save a checkpoint now (only while it runs)"),
    ("s", "Stop: the trainer saves a checkpoint and exits (asks first)"),
    ("x", "Dismiss the pinned warnings (they stay in the log)"),
    ("Tab", "Next panel; on a metric line it shows what the metric means"),
    ("q", "Quit (asks first while training is still running)"),
    ("?", "This help"),
]
GAME_KEYS = "In a game: ←/→ previous/next game, Esc back."
CONTROL = (
    "Pause, resume, checkpoint and stop are files dropped into RUN_DIR/control/; the trainer "
    "reads them between the phases of an iteration, so a command can take until the current "
    "phase ends. From a shell: lsp-mlx control RUN_DIR pause. A headless trainer also takes "
    "signals: SIGINT/SIGTERM stop with a checkpoint, SIGUSR1 saves one."
)
RUN_TERMS = [
    ("Config", "the preset · the game · N queries × G answers · the learning rate"),
    ("Iteration i / N", "the last iteration with metrics, of the run's train.iterations"),
    ("Elapsed · ETA", "time since run_start (frozen at the end) · time left at the recent pace"),
    ("Memory", "the highest memory/peak_gb of any iteration"),
    ("Checkpoint", "the last one: iteration, time after the start, checkpoint folders kept"),
    ("+H:MM:SS", "in the log and the warnings: time after the run started"),
]
GAME_TERMS = [
    (
        "total = R + R_Q",
        "an answer's reward: R from the reward source, plus R_Q from the "
        "reference judge in LSP (LSP-Zero and SQLM: R alone)",
    ),
    ("V(q)", "mean total reward of a query's answers"),
    ("advantage", "an answer's total minus V(q): what the update pushes up or down"),
    (
        "query reward",
        "-V(q) in LSP-Zero, -V(q) + V_Q(q) in LSP (high when the Solver found "
        "the query hard), 1 for a problem inside the band in SQLM",
    ),
    ("Total b/w", "the best and the worst answer's total reward in a game"),
    ("Adv b/w, Q adv", "their advantages, and the query's (from 150 columns)"),
    ("It", "the iteration the game was played in"),
    ("query advantage", "the query's reward minus the mean over the iteration's queries"),
    ("tokens", "the length of a query or an answer"),
    ("cut off", "the answer hit game.answer_max_tokens"),
]


def help_text() -> Text:
    """The help: keys, then every metric on screen (meaning, good direction, unit), then games."""
    out = Text()
    out.append("Close: Esc, q or ?  ·  Scroll: ↑/↓, PgUp/PgDn\n\n", style="bold reverse")
    out.append("Keys\n", style="bold underline")
    for keys, action in KEYS:
        out.append(f"{keys:<5}", style="bold")
        out.append(f" {action}\n")
    out.append(GAME_KEYS + "\n\n")
    out.append("Metrics (the dashboard's lines and plots)\n", style="bold underline")
    shown = [*TILES, *(key for _, _, series in PLOTS for _, key in series)]
    for key in dict.fromkeys(shown):
        m = metric(key)
        out.append(f"{m.label}", style="bold")
        out.append(f" ({key}): {m.meaning}. ")
        out.append(f"Good: {m.good}. ", style="green")
        out.append(f"Unit: {m.unit}.\n", style="dim")
    out.append(
        "Each metric line has one column per iteration (newest on the right, blank where there is "
        "no value); the bars span the range printed beside them: a share's 0..1, a reward's "
        "values and 0, any other metric's lowest and highest value.\n\n"
    )
    out.append("Run panel\n", style="bold underline")
    for term, meaning in RUN_TERMS:
        out.append(term, style="bold")
        out.append(f": {meaning}\n")
    out.append("\nGames\n", style="bold underline")
    for term, meaning in GAME_TERMS:
        out.append(term, style="bold")
        out.append(f": {meaning}\n")
    out.append("\nControl channel\n", style="bold underline")
    out.append(CONTROL + "\n")
    return out


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape,q,question_mark", "close", "Close", key_display="Esc"),
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box"):
            yield Static(help_text(), id="help-text")

    def on_mount(self) -> None:
        box = self.query_one("#help-box")
        box.border_title = "Help"
        box.border_subtitle = "Esc, q or ? closes"
        box.focus()

    def action_close(self) -> None:
        self.dismiss(None)


class ConfirmScreen(ModalScreen[bool]):
    """A yes/no question; ``y``/``Enter`` answer yes, ``n``/``Esc`` no."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, question: str, yes: str = "Yes", no: str = "Cancel") -> None:
        super().__init__()
        self.question, self.yes, self.no = question, yes, no

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box"):
            yield Label(Text(self.question), id="confirm-question")
            with Horizontal(id="confirm-buttons"):
                yield Button(f"{self.yes} (y)", variant="error", id="yes")
                yield Button(f"{self.no} (n)", variant="primary", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)

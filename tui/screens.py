"""Screens over the dashboard: one game in full, the key help, and a yes/no question."""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Label, Markdown, Static

from lsp_mlx.records import Game

from .format import number, printable, signed


class GameScreen(ModalScreen[None]):
    """A whole game: the Challenger's query and every Solver answer, best first, untruncated.

    Modal so the dashboard's keys (views, controls) do not act behind it.
    """

    BINDINGS = [
        Binding("escape,q,enter", "close", "Back"),
        Binding("left,k", "step(-1)", "Previous game"),
        Binding("right,j", "step(1)", "Next game"),
    ]

    def __init__(self, lookup: Callable[[int], Game | None], number_: int) -> None:
        super().__init__()
        self.lookup = lookup
        self.number = number_

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
        content.update(render_game(game))
        self.query_one("#game-body").scroll_home(animate=False)

    def action_close(self) -> None:
        self.dismiss(None)

    def action_step(self, delta: int) -> None:
        if self.lookup(self.number + delta) is not None:
            self.number += delta
            self.show()


def render_title(game: Game) -> Text:
    text = Text(f" Iteration {game.iteration} · game {game.index + 1} · {game.game}", style="bold")
    text.append(
        f"   V(q) {number(game.value)} · Challenger reward {number(game.challenger_reward)}"
        f" · advantage {signed(game.challenger_advantage)}"
    )
    if not game.valid:
        text.append("   query invalid: masked out of the loss", style="bold red")
    return text


def render_game(game: Game) -> Text:
    """The game as plain text: query, then the answers from best to worst with their numbers."""
    out = Text()
    out.append("Challenger query", style="bold underline")
    out.append(f"  ({game.query_tokens} tokens)\n", style="dim")
    out.append(printable(game.query.rstrip()) + "\n\n")
    ranked = sorted(enumerate(game.answers), key=lambda pair: pair[1].reward, reverse=True)
    for rank, (position, answer) in enumerate(ranked, 1):
        out.append(f"Answer {position + 1}", style="bold underline")
        parts = ", ".join(f"{k} {number(v)}" for k, v in answer.reward_parts.items())
        out.append(
            f"  #{rank} · reward {number(answer.reward)}"
            + (f" ({parts})" if parts else "")
            + f" · advantage {signed(answer.advantage)} · {answer.tokens} tokens",
            style="cyan",
        )
        if answer.finish_reason != "stop":
            out.append(f" · cut off ({answer.finish_reason})", style="yellow")
        out.append("\n")
        out.append(printable(answer.text.rstrip()) + "\n\n")
    if game.extra:
        out.append("Extra\n", style="bold underline")
        for key, value in game.extra.items():
            out.append(f"{key}: ", style="bold")
            out.append(printable(f"{value}") + "\n")
    return out


HELP = """\
# lsp-mlx dashboard

| Key | Action |
|---|---|
| `d` `1` | Dashboard: run panel, metric sparklines, recent games, problems |
| `o` `2` | Plots of rewards, self-reward, loss, KL, zero-variance groups, tokens/s |
| `g` `3` | All games; `Enter` opens the selected game whole |
| `l` `4` | The full log |
| `p` | Pause or resume the trainer |
| `c` | Save a checkpoint now |
| `s` | Stop: the trainer saves a checkpoint and exits cleanly |
| `q` | Quit (asks first while training is still running) |
| `?` | This help |

In a game: `←`/`→` previous/next game, `Esc` back.

**Control channel.** Pause, resume, checkpoint and stop are files the TUI drops into
`RUN_DIR/control/`; the trainer reads them between the phases of an iteration, so a
command can take until the current phase ends. The same works from a shell:
`lsp-mlx control RUN_DIR pause`, and for a headless trainer also signals:
`SIGINT`/`SIGTERM` stop with a checkpoint, `SIGUSR1` saves one. A trainer this dashboard
started that leaves a `stop` unread for 3 s (a long phase) gets SIGTERM, which stops it at
once with the last finished iteration saved.
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "close", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box"):
            yield Markdown(HELP)

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

"""A game as text: the title line and the whole game, shared by the games view and the game screen.

Reward parts are named for what they are (docs/algorithms.md §1): the total that entered the
advantage is ``R + R_Q``, R from the run's reward source (named from run_start's config) and
R_Q the reference model's judgement (the self-reward).
"""

from __future__ import annotations

from typing import Any

from rich.text import Text

from lsp_mlx.records import Game

from .format import number, printable, signed

# Names of the parts of a total reward, by their key in `Answer.reward_parts`.
PART_NAMES = {"reward": "R", "self_reward": "R_Q", "log_ratio": "log-ratio"}


def _section(data: Any, key: str) -> dict[str, Any]:
    value = data.get(key) if isinstance(data, dict) else None
    return value if isinstance(value, dict) else {}


def reward_name(info: dict[str, Any]) -> str:
    """The reward source of a run, from run_start's config: ``quality`` (a Python function),
    ``judge``, ``reward model NAME``; empty when unknown."""
    reward = _section(_section(info, "config"), "reward")
    source = str(reward.get("source") or "")
    if source == "python" and reward.get("function"):
        return str(reward["function"]).rsplit(":", 1)[-1]
    if source == "reward_model" and reward.get("reward_model"):
        return "reward model " + str(reward["reward_model"]).rstrip("/").rsplit("/", 1)[-1]
    return source


def reward_parts(parts: dict[str, float], source: str = "") -> str:
    """``R 1.000 (quality) + R_Q 0.519 (judge)`` for LSP's parts; other parts by their key."""
    out = []
    for key, value in parts.items():
        name = PART_NAMES.get(key, key)
        note = {"reward": source, "self_reward": "judge"}.get(key, "")
        out.append(f"{name} {number(value)}" + (f" ({note})" if note else ""))
    return " + ".join(out)


def render_title(game: Game) -> Text:
    text = Text(f" Iteration {game.iteration} · game {game.index + 1} · {game.game}", style="bold")
    text.append(
        f"   V(q) {number(game.value)} · query reward {number(game.query_reward)}"
        f" · query advantage {signed(game.query_advantage)}"
    )
    if not game.valid:
        text.append("   query invalid: masked out of the loss", style="bold red")
    return text


def render_game(game: Game, source: str = "") -> Text:
    """The game as plain text: query, then the answers from best to worst with their numbers."""
    out = Text()
    out.append("Query", style="bold underline")
    out.append(f"  ({game.query_tokens} tokens)\n", style="dim")
    out.append(printable(game.query.rstrip()) + "\n\n")
    ranked = sorted(enumerate(game.answers), key=lambda pair: pair[1].reward, reverse=True)
    for rank, (position, answer) in enumerate(ranked, 1):
        out.append(f"Answer {position + 1}", style="bold underline")
        parts = reward_parts(answer.reward_parts, source)
        if len(answer.reward_parts) > 1:
            reward = f"total {number(answer.reward)} = {parts}"
        else:
            reward = parts or f"reward {number(answer.reward)}"
        advantage = signed(answer.advantage)
        out.append(
            f"  #{rank} · {reward} · advantage {advantage} · {answer.tokens} tokens",
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

"""What every self-play game gives the trainer: a `Rollout` per iteration.

A game plays one iteration through the `Backend` interface (generate, score) and returns
plain data: the `Game` records for the log and the `PolicySample`s for the loss. The
trainer owns the optimizer step, the events and the checkpoints, so a new game is one file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from lsp_mlx.records import Game, PolicySample

if TYPE_CHECKING:
    from lsp_mlx.backends.base import Backend


@dataclass
class Rollout:
    games: list[Game]
    samples: list[PolicySample]  # the terms of the loss; empty means "no update this iteration"
    metrics: dict[str, float] = field(default_factory=dict)  # reward/..., self_reward/..., judge/...
    timings: dict[str, float] = field(default_factory=dict)  # seconds: "generate", "score"
    generated_tokens: int = 0


class SelfPlayGame(Protocol):
    name: str

    def play(self, backend: Backend, iteration: int) -> Rollout: ...

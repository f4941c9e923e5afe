"""What every self-play game gives the trainer, and the steps the games share.

A game plays one iteration through the `Backend` interface (generate, score) and returns
plain data, a `Rollout`: the `Game` records for the log and the `PolicySample`s for the loss.
The trainer owns the optimizer step, the events and the checkpoints, so a new game is one
file that holds only its own rules; the steps below are the same in every game:

- the trained-token rule (`trained_tokens`): a sample trains on the completion plus the EOS
  token when the model stopped, so it also learns when to stop;
- the loss weights (`loss_weights`): answers ``1/(N*G)``, queries ``alpha_Ch/N``
  (``game.query_weight``) over the N live queries (docs/algorithms.md §1);
- the record of a query that could not be used (`invalid_game`);
- the metrics every game reports (`shared_metrics`; names kept from LSP, e.g.
  ``reward/challenger_mean`` is the query-writer's reward in every game).

Game state: `state_dict` returns what a checkpoint must keep so that a resumed run equals
an uninterrupted one (JSON-serialisable); every random draw a game makes either derives from
``(train.seed, iteration)`` or lives in that state. `Stateless` is the empty one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from lsp_mlx.games.advantages import mean, std, zero_variance
from lsp_mlx.records import Answer, Game, PolicySample

if TYPE_CHECKING:
    from lsp_mlx.backends.base import Backend, Completion


@dataclass
class Rollout:
    games: list[Game]
    samples: list[PolicySample]  # the terms of the loss; empty means "no update this iteration"
    metrics: dict[str, float] = field(
        default_factory=dict
    )  # reward/..., self_reward/..., judge/...
    timings: dict[str, float] = field(default_factory=dict)  # seconds: "generate", "score"
    generated_tokens: int = 0


class SelfPlayGame(Protocol):
    name: str

    def play(self, backend: Backend, iteration: int) -> Rollout: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class Stateless:
    """For a game whose every draw derives from ``(train.seed, iteration)``: nothing to keep."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def trained_tokens(completion: Completion, eos_token_id: int) -> list[int]:
    """The completion's tokens, plus EOS when the model stopped (not when it hit max tokens)."""
    tokens = list(completion.tokens)
    return tokens + [eos_token_id] if completion.finish_reason == "stop" else tokens


def loss_weights(n_live: int, group_size: int, query_weight: float) -> tuple[float, float]:
    """(weight of each answer sample, weight of each query sample) for ``n_live`` live queries."""
    n = max(n_live, 1)
    return 1.0 / (n * group_size), query_weight / n


def answer_samples(
    prompt: list[int],
    group: list[Completion],
    advantages: list[float],
    weight: float,
    eos_token_id: int,
    role: str = "solver",
) -> list[PolicySample]:
    """The loss terms of one group of answers to one prompt."""
    return [
        PolicySample(prompt, trained_tokens(c, eos_token_id), adv, weight, role)
        for c, adv in zip(group, advantages)
    ]


def answer_records(
    group: list[Completion],
    rewards: list[float],
    advantages: list[float],
    parts: list[dict[str, float]],
) -> list[Answer]:
    return [
        Answer(
            text=c.text,
            tokens=len(c.tokens),
            reward=r,
            advantage=adv,
            reward_parts=p,
            finish_reason=c.finish_reason,
        )
        for c, r, adv, p in zip(group, rewards, advantages, parts)
    ]


def invalid_game(
    iteration: int,
    index: int,
    game: str,
    text: str,
    tokens: int,
    extra: dict[str, Any] | None = None,
) -> Game:
    """The record of a query masked out of the loss (it could not be parsed or used)."""
    return Game(
        iteration=iteration,
        index=index,
        game=game,
        query=text,
        query_tokens=tokens,
        answers=[],
        value=0.0,
        query_reward=0.0,
        query_advantage=0.0,
        valid=False,
        extra=extra or {},
    )


def shared_metrics(
    answer_rewards: list[list[float]],
    answer_advantages: list[list[float]],
    query_rewards: list[float],
    query_advantages: list[float],
    answer_tokens: list[int],
    query_tokens: list[int],
) -> dict[str, float]:
    """The metrics of every game, from the live groups (``query_tokens``: every query, live or
    not, so ``challenger/invalid`` is the share of queries that were masked out)."""
    flat = [r for group in answer_rewards for r in group]
    n_queries = len(query_tokens)
    return {
        "reward/solver_mean": mean(flat),
        "reward/solver_std": std(flat),
        "reward/challenger_mean": mean(query_rewards),
        "reward/challenger_std": std(query_rewards),
        "advantage/solver_abs_mean": mean([abs(x) for g in answer_advantages for x in g]),
        "advantage/challenger_abs_mean": mean([abs(x) for x in query_advantages]),
        "zero_variance_groups": mean([1.0 if zero_variance(g) else 0.0 for g in answer_rewards])
        if answer_rewards
        else 1.0,
        "answer_tokens_mean": mean(answer_tokens),
        "query_tokens_mean": mean(query_tokens),
        "challenger/invalid": (n_queries - len(answer_rewards)) / max(n_queries, 1),
    }

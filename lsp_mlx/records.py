"""Rollouts as plain data.

A `Game` is one query and its group of answers with everything the algorithms derived
from them. The trainer writes each one to ``events.jsonl`` (see `lsp_mlx.events`); the
TUI, the exporter and the tests read the same records back with `Game.from_dict`.
Nothing here imports mlx or torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# field names of events written by earlier versions -> today's names
OLD_NAMES = {"challenger_reward": "query_reward", "challenger_advantage": "query_advantage"}


@dataclass
class Answer:
    """One Solver answer to a query."""

    text: str
    tokens: int  # completion length in tokens
    reward: float  # the total reward that entered the advantage (R, or R + R_Q for LSP)
    advantage: float
    reward_parts: dict[str, float] = field(
        default_factory=dict
    )  # e.g. {"reward": R, "self_reward": R_Q}
    finish_reason: str = "stop"  # "stop" (EOS) or "length" (hit max tokens)


@dataclass
class Game:
    """One round of a self-play game: a query (LSP's Challenger, SQLM's Proposer, SPIN's data)
    and the Solver's group of answers."""

    iteration: int
    index: int  # position of the query within the iteration
    game: str  # "lsp", "lsp-zero", "sqlm", ...
    query: str
    query_tokens: int
    answers: list[Answer]
    value: float  # V(q): mean total reward of the group
    query_reward: float  # the query-writer's reward (LSP: -V(q) [+ V_Q(q)]; SQLM: difficulty)
    query_advantage: float
    valid: bool = True  # False when the query could not be parsed and was masked out of the loss
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Game:
        """A record from its dict; events written before the role-neutral names still read."""
        data = {OLD_NAMES.get(k, k): v for k, v in data.items()}
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        fields["answers"] = [
            Answer(**{k: v for k, v in a.items() if k in Answer.__dataclass_fields__})
            for a in data.get("answers", [])
        ]
        return cls(**fields)

    @property
    def rewards(self) -> list[float]:
        return [a.reward for a in self.answers]

    def best(self) -> Answer | None:
        return max(self.answers, key=lambda a: a.reward, default=None)

    def worst(self) -> Answer | None:
        return min(self.answers, key=lambda a: a.reward, default=None)


@dataclass
class PolicySample:
    """One term of the policy-gradient loss of docs/algorithms.md §1.

    The loss a backend minimises is
    ``sum_k weight_k * -( ratio_k * advantage_k - beta * log(pi(c_k|p_k) / pi_ref(c_k|p_k)) )``
    with ``ratio = pi/sg(pi)`` and sequence log-probabilities of the completion given its prompt.
    The Solver's samples carry ``weight = 1/(N*G)``, the query-writer's ``weight = alpha_Ch/N``
    (``game.query_weight``).
    """

    prompt: list[int]
    completion: list[int]
    advantage: float
    weight: float
    role: str  # "solver" or "challenger" (or a game's own role names)

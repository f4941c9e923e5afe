"""Reward sources, all with one signature:

    reward(queries: list[str], answers: list[list[str]]) -> list[list[float]]

one float per answer, grouped like ``answers``. `make_reward` builds the one a config names:
``judge`` (the reference model judges, `lsp_mlx.rewards.judge`), ``reward_model`` (a Hugging
Face sequence-classification model, scored by the backend), or ``python`` (a user function
given as ``package.module:function``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from lsp_mlx.rewards.judge import Judge
from lsp_mlx.rewards.python_fn import load_function

if TYPE_CHECKING:
    from lsp_mlx.backends.base import Backend
    from lsp_mlx.config import Config

# A group may be None: the source cannot score that query (the game masks it out of the loss).
RewardFn = Callable[[list[str], list[list[str]]], list[list[float] | None]]


def make_judge(config: Config, backend: Backend) -> Judge:
    r = config.reward
    return Judge(
        backend,
        max_tokens=r.judge_max_tokens,
        temperature=r.judge_temperature,
        normalize=r.normalize,
        mode=r.judge_mode,
    )


def make_reward(config: Config, backend: Backend) -> RewardFn:
    source = config.reward.source
    if source == "judge":
        return make_judge(config, backend)
    if source == "reward_model":
        assert config.reward.reward_model
        return backend.load_reward_model(config.reward.reward_model)
    assert config.reward.function
    return load_function(config.reward.function)


def check_rewards(
    rewards: list[list[float] | None], answers: list[list[str]], source: str
) -> list[list[float] | None]:
    """Reject a reward function's output that does not match the groups (one clear line).

    A group given as None (a query the source cannot score) stays None.
    """
    from lsp_mlx.errors import UserError

    shape_ok = len(rewards) == len(answers) and all(
        r is None or len(r) == len(a) for r, a in zip(rewards, answers)
    )
    if not shape_ok:
        raise UserError(
            f"reward source {source!r} returned rewards shaped unlike the answers: return one float per answer, grouped per query"
        )
    try:
        out = [None if group is None else [float(x) for x in group] for group in rewards]
    except (TypeError, ValueError):
        raise UserError(f"reward source {source!r} returned a non-number: return floats") from None
    bad = next((x for group in out for x in group or () if not math.isfinite(x)), None)
    if bad is not None:
        raise UserError(
            f"reward source {source!r} returned {bad}: return finite floats (a NaN or infinite "
            "reward would make every weight NaN)"
        )
    return out

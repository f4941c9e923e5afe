"""Reward source ``python`` for arithmetic questions: the exact verifier's verdict on each answer.

``lsp_mlx.rewards.arithmetic:exact`` has the reward signature ``(queries, answers) -> rewards``.
R(q, a) is 1.0 when the final number of answer ``a`` equals the true value of the arithmetic in
question ``q`` and 0.0 otherwise, both computed by `lsp_mlx.verifiers.arithmetic`. A question
whose truth cannot be computed (no expression, or words and numbers outside it) gets 0.0 for
every answer: its group has zero variance, so it teaches the Solver nothing, and its value
V(q) = 0 gives an LSP-Zero Challenger (reward -V) the top reward for it. The preset's template
and the game's ``challenger/invalid`` metric keep that case rare and visible
(docs/algorithms.md §1, §4).
"""

from __future__ import annotations

from lsp_mlx.verifiers.arithmetic import is_correct, solve_problem


def exact(queries: list[str], answers: list[list[str]]) -> list[list[float]]:
    """1.0 for an answer whose final number is the question's true value, else 0.0."""
    rewards = []
    for query, group in zip(queries, answers):
        truth = solve_problem(query)
        if truth is None:
            rewards.append([0.0] * len(group))
        else:
            rewards.append([1.0 if is_correct(answer, truth) else 0.0 for answer in group])
    return rewards

"""Reward source ``python`` for arithmetic questions: the exact verifier's verdict on each answer.

``lsp_mlx.rewards.arithmetic:exact`` has the reward signature ``(queries, answers) -> rewards``.
R(q, a) is 1.0 when the final number of answer ``a`` equals the true value of the arithmetic in
question ``q`` and 0.0 otherwise, both computed by `lsp_mlx.verifiers.arithmetic`. As in the
SQLM arithmetic task, a question ends at its first question mark (a small Challenger rambles on
after it), so the truth is that of the question the Solver reads first. A question
whose truth cannot be computed (no expression, or words and numbers outside it) gets 0.0 for
every answer. Its group then has zero variance and teaches the Solver nothing; its value
V(q) = 0 is also the top of LSP-Zero's Challenger reward -V(q), so over a long run the
Challenger can drift towards such questions: watch the share of computable questions
(docs/algorithms.md §1, §4).
"""

from __future__ import annotations

from lsp_mlx.verifiers.arithmetic import is_correct, solve_problem


def exact(queries: list[str], answers: list[list[str]]) -> list[list[float]]:
    """1.0 for an answer whose final number is the question's true value, else 0.0."""
    rewards = []
    for query, group in zip(queries, answers):
        truth = solve_problem(query[: query.index("?") + 1] if "?" in query else query)
        if truth is None:
            rewards.append([0.0] * len(group))
        else:
            rewards.append([1.0 if is_correct(answer, truth) else 0.0 for answer in group])
    return rewards

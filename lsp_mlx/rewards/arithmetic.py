"""Reward source ``python`` for arithmetic questions: the exact verifier's verdict on each answer.

``lsp_mlx.rewards.arithmetic:exact`` has the reward signature ``(queries, answers) -> rewards``.
R(q, a) is 1.0 when the final number of answer ``a`` equals the true value of the arithmetic in
question ``q`` and 0.0 otherwise, both computed by `lsp_mlx.verifiers.arithmetic`. As in the
SQLM arithmetic task, a question ends at its first question mark (a small Challenger rambles on
after it), so the truth is that of the question the Solver reads first. A question whose truth
cannot be computed (no expression, or words and numbers outside it) has no reward: its group is
None, and the game masks the query out of both losses as it masks an empty one. Scored 0, its
value V(q) = 0 would be the top of LSP-Zero's Challenger reward -V(q), and the Challenger would
learn to write questions that mean nothing (docs/algorithms.md §1.3).
"""

from __future__ import annotations

from lsp_mlx.verifiers.arithmetic import is_correct, solve_problem


def exact(queries: list[str], answers: list[list[str]]) -> list[list[float] | None]:
    """1.0 for an answer whose final number is the question's true value, else 0.0; None for
    a question whose truth cannot be computed."""
    rewards = []
    for query, group in zip(queries, answers):
        truth = solve_problem(query[: query.index("?") + 1] if "?" in query else query)
        if truth is None:
            rewards.append(None)
        else:
            rewards.append([1.0 if is_correct(answer, truth) else 0.0 for answer in group])
    return rewards

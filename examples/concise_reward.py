"""An example user reward: prefer answers that mention words from the question, briefly.

Use it with:

    PYTHONPATH=examples lsp-mlx train --config configs/demo.yaml \
        --set reward.source=python --set reward.function=concise_reward:reward

Every reward source has this one signature: a list of queries and, per query, the list of
its answers; return one float per answer, grouped the same way.
"""

from __future__ import annotations


def score(query: str, answer: str) -> float:
    q = {w.lower().strip(".,?!") for w in query.split() if len(w) > 3}
    words = answer.split()
    if not words:
        return 0.0
    overlap = len(q & {w.lower().strip(".,?!") for w in words}) / max(len(q), 1)
    brevity = 1.0 if len(words) <= 60 else 60 / len(words)
    return 0.5 * overlap + 0.5 * brevity


def reward(queries: list[str], answers: list[list[str]]) -> list[list[float]]:
    return [[score(q, a) for a in group] for q, group in zip(queries, answers)]

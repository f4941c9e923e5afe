"""A cheap, model-free answer-quality reward for offline runs (the default reward source).

It is a weak proxy, not a judge of correctness: it rewards answers that exist, have a
sensible length, do not repeat themselves, do not just echo the question and end in a
finished sentence. It lets the embedded 135M model play LSP with no reward model
(R = this score, R_Q = the judge) on machines that cannot download one. For real runs use
``reward.source: reward_model`` (configs/lsp.yaml) or a verifier.
"""

from __future__ import annotations

import re

_WORD = re.compile(r"\w+", re.UNICODE)


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def length_score(n_words: int, low: int = 8, high: int = 150) -> float:
    """1 inside [low, high] words, falling linearly to 0 at 0 words and at 3*high."""
    if n_words <= 0:
        return 0.0
    if n_words < low:
        return n_words / low
    if n_words <= high:
        return 1.0
    return max(0.0, 1.0 - (n_words - high) / (2 * high))


def distinct_trigrams(words: list[str]) -> float:
    """Share of distinct word trigrams (1.0: no repetition)."""
    grams = [tuple(words[i : i + 3]) for i in range(len(words) - 2)]
    return len(set(grams)) / len(grams) if grams else 1.0


def echo_penalty(query: str, answer: str) -> float:
    """1.0 when the answer is not mostly a copy of the question, falling to 0 for a pure echo."""
    q, a = set(_words(query)), _words(answer)
    if not a or not q:
        return 1.0
    copied = sum(w in q for w in a) / len(a)
    return 1.0 - max(0.0, copied - 0.6) / 0.4


def finished(answer: str) -> float:
    return 1.0 if answer.rstrip().endswith((".", "!", "?", "`", ")", '"', "*")) else 0.0


def answer_quality(query: str, answer: str) -> float:
    words = _words(answer)
    if not words:
        return 0.0
    parts = [
        length_score(len(words)),
        distinct_trigrams(words),
        echo_penalty(query, answer),
        finished(answer),
    ]
    return sum(parts) / len(parts)


def quality(queries: list[str], answers: list[list[str]]) -> list[list[float]]:
    """Reward signature: one score in [0, 1] per answer."""
    return [[answer_quality(q, a) for a in group] for q, group in zip(queries, answers)]

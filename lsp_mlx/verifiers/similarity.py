"""Cheap text similarity for near-duplicate detection (R-Zero's repetition penalty, diagnostics).

Texts are compared by the Jaccard overlap of their word n-gram sets (word 1-grams when a
text is shorter than n). Clusters are the connected components of the "similar" graph, the
agglomerative grouping R-Zero uses with a BLEU distance, here with a cheaper distance.
"""

from __future__ import annotations

import re

_WORD_RE = re.compile(r"\w+|[^\w\s]")


def words(text: str) -> list[str]:
    return _WORD_RE.findall(text.lower())


def ngrams(tokens: list[str], n: int) -> set[tuple[str, ...]]:
    if len(tokens) < n:
        return {tuple(tokens)} if tokens else set()
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def jaccard(a: set[tuple[str, ...]], b: set[tuple[str, ...]]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def similarity(a: str, b: str, n: int = 2) -> float:
    """Jaccard overlap of the word n-grams of two texts, in [0, 1]."""
    return jaccard(ngrams(words(a), n), ngrams(words(b), n))


def clusters(texts: list[str], threshold: float = 0.5, n: int = 2) -> list[int]:
    """A cluster id per text; texts whose similarity is >= ``threshold`` share a cluster."""
    grams = [ngrams(words(t), n) for t in texts]
    parent = list(range(len(texts)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(texts)):
        for j in range(i + 1, len(texts)):
            if jaccard(grams[i], grams[j]) >= threshold:
                parent[find(j)] = find(i)
    return [find(i) for i in range(len(texts))]


def near_duplicate_rate(texts: list[str], threshold: float = 0.5, n: int = 2) -> float:
    """Share of texts that have at least one near-duplicate among the others."""
    if len(texts) < 2:
        return 0.0
    ids = clusters(texts, threshold, n)
    sizes = {c: ids.count(c) for c in set(ids)}
    return sum(1 for c in ids if sizes[c] > 1) / len(texts)


def distinct_n(texts: list[str], n: int) -> float:
    """Distinct-n: unique word n-grams over all word n-grams of the texts (1.0: no repetition)."""
    total, unique = 0, set()
    for text in texts:
        toks = words(text)
        grams = [tuple(toks[i : i + n]) for i in range(len(toks) - n + 1)]
        total += len(grams)
        unique.update(grams)
    return len(unique) / total if total else 0.0

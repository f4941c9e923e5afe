"""How teacher-forced work is cut into passes: one home for both backends' micro-batching.

A *pass* is one prefix (run once) and the suffixes that continue from it: the G answers of a
query share their prompt, the self-judge's prompts share the rubric. A pass holds at most a
token budget (the prefix plus rows x its longest suffix), and the suffixes of a pass have
similar lengths, so little padding is computed. Pure Python: no mlx, no torch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

PAD_ID = 0  # any id: padded positions are neither attended to by real ones nor scored
T = TypeVar("T")


def micro_batches(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Consecutive chunks of at most ``size`` items."""
    for start in range(0, len(items), max(1, size)):
        yield items[start : start + size]


@dataclass
class Pass:
    """One prefix and the suffixes that continue from it (each non-empty)."""

    prefix: list[int]
    suffixes: list[list[int]]
    owners: list[int]  # position of each suffix in the caller's list


def plan_passes(
    prefixes: Sequence[list[int]], suffixes: Sequence[list[int]], budget: int
) -> list[Pass]:
    """Group suffixes by their prefix; split a group into passes of at most ``budget`` tokens
    (the prefix plus rows x the longest suffix of the pass), longest suffixes together."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, prefix in enumerate(prefixes):
        groups.setdefault(tuple(prefix), []).append(i)
    passes: list[Pass] = []
    for prefix, members in groups.items():
        members.sort(key=lambda i: -len(suffixes[i]))
        current: list[int] = []
        for i in members:
            width = len(suffixes[current[0]]) if current else len(suffixes[i])
            if current and len(prefix) + (len(current) + 1) * width > budget:
                passes.append(Pass(list(prefix), [suffixes[j] for j in current], current))
                current = []
            current.append(i)
        passes.append(Pass(list(prefix), [suffixes[j] for j in current], current))
    return passes


def common_prefix_length(seqs: Sequence[list[int]]) -> int:
    """Length of the longest prefix every sequence shares, leaving each at least one token."""
    if not seqs:
        return 0
    limit = min(len(s) for s in seqs) - 1
    n = 0
    first = seqs[0]
    while n < limit and all(s[n] == first[n] for s in seqs):
        n += 1
    return max(n, 0)


def sequence_passes(
    pairs: Sequence[tuple[list[int], list[int]]], budget: int
) -> list[tuple[Pass, list[list[int]]]]:
    """The passes of teacher-forced (prompt, completion) pairs with their completions; pairs with
    an empty completion are in none (their log-prob is 0)."""
    keep = [i for i, (_, c) in enumerate(pairs) if c]
    for i in keep:
        if not pairs[i][0]:
            raise ValueError("a completion needs a non-empty prompt as context")
    passes = plan_passes(
        [pairs[i][0][:-1] for i in keep],
        [pairs[i][0][-1:] + pairs[i][1][:-1] for i in keep],
        budget,
    )
    out = []
    for p in passes:
        p.owners = [keep[j] for j in p.owners]
        out.append((p, [pairs[i][1] for i in p.owners]))
    return out


def token_budget(lengths: Sequence[int], rows: int) -> int:
    """Tokens one pass may hold: ``rows`` times the longest sequence, the size of a padded
    micro-batch of ``rows`` sequences, so no pass holds more than such a micro-batch did."""
    return max(1, rows) * max(lengths, default=1)

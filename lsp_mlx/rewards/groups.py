"""Rewards come grouped per query; model-based scorers work on flat lists. These convert."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def regroup(flat: Sequence[T], groups: Sequence[Sequence[object]]) -> list[list[T]]:
    """Split ``flat`` into lists shaped like ``groups``."""
    out, k = [], 0
    for group in groups:
        out.append(list(flat[k : k + len(group)]))
        k += len(group)
    return out

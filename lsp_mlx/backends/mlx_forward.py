"""Teacher-forced passes on an mlx-lm model without repeated or padded work.

Every log-probability the MLX backend scores (the update, `sequence_logprobs`,
`next_token_logprobs`) goes through a *pass*: one prefix run once (batch 1) and several
suffixes that continue from its keys/values, so the G answers of a query read their shared
prompt once and the self-judge reads its rubric once. Position t of suffix i computes exactly
what position ``len(prefix) + t`` of the full sequence ``prefix + suffix_i`` would: its rotary
position continues from the prefix and its attention sees the prefix and ``suffix_i[:t+1]``.
Suffixes are right-padded to the longest of their pass; causal attention keeps the padding
from the real positions, and no logits are computed there (docs/algorithms.md §5).

With LoRA on the last K blocks, the blocks below them are the same for the policy and the
reference: `trunk` runs them once per pass under ``stop_gradient`` and both top passes start
from its output. Gradients of the update flow through the prefix's LoRA activations in the top
blocks, because the policy's prefix keys/values are computed inside the differentiated pass.

The layered path runs the blocks one by one, so it is limited to architectures whose inner model
is exactly embed -> blocks(mask, cache) -> norm (`LAYERED_TYPES`); any other mlx-lm model runs
each full sequence through ``model.model`` (no sharing, the same results).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn

from lsp_mlx.backends.passes import PAD_ID, Pass

LAYERED_TYPES = ("llama", "qwen2", "qwen3")


class _Record:
    """The cache a block sees while it runs the prefix: it keeps the prefix's keys/values."""

    offset = 0

    def update_and_fetch(self, keys: mx.array, values: mx.array) -> tuple[mx.array, mx.array]:
        self.keys, self.values = keys, values
        return keys, values


class _Continue:
    """The cache a block sees while it runs the suffixes: the prefix's keys/values come first."""

    def __init__(self, keys: mx.array, values: mx.array) -> None:
        self.keys, self.values = keys, values
        self.offset = keys.shape[2]  # the suffixes' rotary positions start after the prefix

    def update_and_fetch(self, keys: mx.array, values: mx.array) -> tuple[mx.array, mx.array]:
        rows = keys.shape[0]
        k = mx.broadcast_to(self.keys, (rows, *self.keys.shape[1:]))
        v = mx.broadcast_to(self.values, (rows, *self.values.shape[1:]))
        return mx.concatenate([k, keys], axis=2), mx.concatenate([v, values], axis=2)


def _suffix_mask(prefix_len: int, width: int) -> mx.array | str | None:
    if prefix_len == 0:
        return "causal" if width > 1 else None
    if width == 1:
        return None
    rows = mx.arange(prefix_len, prefix_len + width)[:, None]
    return rows >= mx.arange(prefix_len + width)[None]


class Forward:
    """The passes of one model; ``trunk_end`` is the first block a LoRA layer adapts."""

    def __init__(self, model: nn.Module, trunk_end: int) -> None:
        self.model = model
        inner = model.model
        self.layered = (
            getattr(model, "model_type", None) in LAYERED_TYPES
            and hasattr(inner, "embed_tokens")
            and hasattr(inner, "norm")
            and not any(getattr(layer, "use_sliding", False) for layer in inner.layers)
            and getattr(inner, "pipeline_size", 1) == 1
        )
        self.trunk_end = trunk_end if self.layered else 0

    # ------------------------------------------------------------------ pieces
    @staticmethod
    def suffix_ids(p: Pass) -> mx.array:
        width = max(len(s) for s in p.suffixes)
        return mx.array([s + [PAD_ID] * (width - len(s)) for s in p.suffixes])

    def _blocks(
        self, layers: Sequence[nn.Module], x_prefix: mx.array | None, x_suffix: mx.array
    ) -> tuple[mx.array | None, mx.array]:
        prefix_len = 0 if x_prefix is None else x_prefix.shape[1]
        mask = _suffix_mask(prefix_len, x_suffix.shape[1])
        prefix_mask = "causal" if prefix_len > 1 else None
        for layer in layers:
            cache = None
            if x_prefix is not None:
                record = _Record()
                x_prefix = layer(x_prefix, prefix_mask, record)
                cache = _Continue(record.keys, record.values)
            x_suffix = layer(x_suffix, mask, cache)
        return x_prefix, x_suffix

    def trunk(self, p: Pass) -> tuple[mx.array | None, mx.array]:
        """States entering block ``trunk_end`` (the embeddings when it is 0), without gradient."""
        inner = self.model.model
        x_prefix = inner.embed_tokens(mx.array(p.prefix)[None]) if p.prefix else None
        x_suffix = inner.embed_tokens(self.suffix_ids(p))
        if self.layered and self.trunk_end > 0:
            x_prefix, x_suffix = self._blocks(inner.layers[: self.trunk_end], x_prefix, x_suffix)
        if x_prefix is not None:
            x_prefix = mx.stop_gradient(x_prefix)
        return x_prefix, mx.stop_gradient(x_suffix)

    def top(self, p: Pass, x_prefix: mx.array | None, x_suffix: mx.array) -> mx.array:
        """Final-normed hidden states of the suffix positions, (rows, width, D), from `trunk`."""
        inner = self.model.model
        if self.layered:
            _, h = self._blocks(inner.layers[self.trunk_end :], x_prefix, x_suffix)
            return inner.norm(h)
        # any other architecture: the full sequences, the prefix repeated in every row
        ids = self.suffix_ids(p)
        if p.prefix:
            prefix = mx.broadcast_to(mx.array(p.prefix)[None], (ids.shape[0], len(p.prefix)))
            ids = mx.concatenate([prefix, ids], axis=1)
        return inner(ids)[:, len(p.prefix) :]

    def lm_head(self, hidden: mx.array) -> mx.array:
        if getattr(self.model, "lm_head", None) is not None and "lm_head" in self.model:
            return self.model.lm_head(hidden)
        return self.model.model.embed_tokens.as_linear(hidden)

    def log_softmax_at(self, hidden: mx.array, flat_positions: mx.array) -> mx.array:
        """Log-probabilities over the vocabulary at the given flat (row * width + t) positions."""
        h = hidden.reshape(-1, hidden.shape[-1])[flat_positions]
        logits = self.lm_head(h).astype(mx.float32)
        return logits - mx.logsumexp(logits, axis=-1, keepdims=True)

    def token_logprobs(
        self, hidden: mx.array, flat_positions: mx.array, targets: mx.array
    ) -> mx.array:
        """log pi(target | context) at each scored position: (N,)."""
        h = hidden.reshape(-1, hidden.shape[-1])[flat_positions]
        logits = self.lm_head(h).astype(mx.float32)
        picked = mx.take_along_axis(logits, targets[:, None], axis=-1)[:, 0]
        return picked - mx.logsumexp(logits, axis=-1)


@dataclass
class Scored:
    """Where a pass is scored: completion token t of row i sits at suffix position t."""

    flat_positions: mx.array  # (N,) row * width + t
    targets: mx.array  # (N,) the completion tokens
    segments: mx.array  # (rows, N) 1 where token n belongs to row i: sums per sequence


def completion_positions(p: Pass, completions: Sequence[list[int]]) -> Scored:
    """Scored positions of a pass whose suffix i is ``prompt[-1:] + completions[i][:-1]``."""
    width = max(len(s) for s in p.suffixes)
    flat: list[int] = []
    targets: list[int] = []
    rows: list[int] = []
    for i, completion in enumerate(completions):
        flat.extend(i * width + t for t in range(len(completion)))
        targets.extend(completion)
        rows.extend([i] * len(completion))
    row_ids = mx.array(rows)
    segments = (mx.arange(len(completions))[:, None] == row_ids[None]).astype(mx.float32)
    return Scored(mx.array(flat), mx.array(targets), segments)

"""Batched sampling and teacher-forced log-probs on a transformers causal LM.

Sampling is our own loop over the model's KV cache rather than ``model.generate``: we need the
temperature-1 log-prob of every sampled token (docs/algorithms.md §5: the loss assumes the
temperature-1 policy), one prefill per prompt shared by its ``n`` samples, and finished rows
dropped from the batch as they stop. Prompts are left-padded so every row's next token sits
in the last column; position ids count only real tokens, so padding never shifts RoPE.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from transformers import DynamicCache


@dataclass
class Sampled:
    tokens: list[int] = field(default_factory=list)  # without the stop token
    logprobs: list[float] = field(default_factory=list)  # temperature-1 log-prob of each token
    finish_reason: str = "length"


def _left_pad(
    seqs: list[list[int]], pad_id: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ids, attention mask, position ids) with every sequence right-aligned."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        if s:
            ids[i, width - len(s) :] = torch.tensor(s, dtype=torch.long)
            mask[i, width - len(s) :] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids.to(device), mask.to(device), positions.to(device)


def pick_tokens(
    logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator
) -> torch.Tensor:
    """Greedy at temperature 0, else a draw from softmax(logits / T) restricted to the top-p nucleus."""
    if temperature == 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits / temperature, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        before = sorted_probs.cumsum(-1) - sorted_probs  # mass of the tokens ranked above
        sorted_probs = sorted_probs.masked_fill(before >= top_p, 0.0)  # the top token always stays
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


@torch.no_grad()
def sample(
    model: torch.nn.Module,
    prompts: list[list[int]],
    n: int,
    max_tokens: int,
    temperature: float,
    top_p: float,
    stop_ids: set[int],
    pad_id: int,
    generator: torch.Generator,
    max_rows: int = 64,
) -> list[list[Sampled]]:
    """``n`` completions per prompt; prompts go through in chunks of at most ``max_rows`` sequences."""
    device = next(model.parameters()).device
    per_chunk = max(1, max_rows // max(n, 1))
    out: list[list[Sampled]] = []
    for start in range(0, len(prompts), per_chunk):
        chunk = prompts[start : start + per_chunk]
        flat = _sample_chunk(
            model, chunk, n, max_tokens, temperature, top_p, stop_ids, pad_id, generator, device
        )
        out.extend(flat[i * n : (i + 1) * n] for i in range(len(chunk)))
    return out


def _sample_chunk(
    model: torch.nn.Module,
    prompts: list[list[int]],
    n: int,
    max_tokens: int,
    temperature: float,
    top_p: float,
    stop_ids: set[int],
    pad_id: int,
    generator: torch.Generator,
    device: torch.device,
) -> list[Sampled]:
    ids, mask, positions = _left_pad(prompts, pad_id, device)
    cache = DynamicCache(config=model.config)
    logits = (
        model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        .logits[:, -1]
        .float()
    )
    # the prefill ran once per prompt; its n samples share copies of the cache from here on
    logits = logits.repeat_interleave(n, 0)
    cache.batch_repeat_interleave(n)
    mask = mask.repeat_interleave(n, 0)
    next_pos = mask.sum(-1)
    results = [Sampled() for _ in range(len(prompts) * n)]
    rows = list(range(len(results)))  # result index of each live batch row
    stop = torch.tensor(sorted(stop_ids), device=device)
    for step in range(max_tokens):
        tokens = pick_tokens(logits, temperature, top_p, generator)
        chosen = torch.log_softmax(logits, dim=-1).gather(-1, tokens[:, None]).squeeze(-1)
        stopped = torch.isin(tokens, stop)
        keep: list[int] = []
        for j, (row, tok, lp, done) in enumerate(
            zip(rows, tokens.tolist(), chosen.tolist(), stopped.tolist())
        ):
            if done:
                results[row].finish_reason = "stop"
            else:
                results[row].tokens.append(tok)
                results[row].logprobs.append(lp)
                keep.append(j)
        if not keep or step == max_tokens - 1:
            break
        if len(keep) < len(rows):
            index = torch.tensor(keep, device=device)
            cache.batch_select_indices(index)
            mask, next_pos, tokens = mask[index], next_pos[index], tokens[index]
            rows = [rows[j] for j in keep]
        mask = torch.cat([mask, mask.new_ones((len(rows), 1))], dim=1)
        logits = (
            model(
                input_ids=tokens[:, None],
                attention_mask=mask,
                position_ids=next_pos[:, None],
                past_key_values=cache,
                use_cache=True,
            )
            .logits[:, -1]
            .float()
        )
        next_pos = next_pos + 1
    return results


def _continue(
    model: torch.nn.Module,
    prefix: list[int],
    suffixes: list[list[int]],
    pad_id: int,
    keep: torch.Tensor | None = None,
) -> torch.Tensor:
    """Logits ``(B, W or len(keep), V)`` at the suffix positions (``keep``: only those columns).

    The prefix runs once (batch 1) and its KV cache is repeated for the B suffixes, which
    continue from it with position ids after the prefix; right padding after each suffix is
    masked out of attention. Differentiable; the caller decides about ``no_grad``.
    """
    device = next(model.parameters()).device
    rows, width = len(suffixes), max(len(x) for x in suffixes)
    cache = None
    if prefix:
        cache = DynamicCache(config=model.config)
        model(
            input_ids=torch.tensor([prefix], device=device),
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        cache.batch_repeat_interleave(rows)
    ids = torch.full((rows, width), pad_id, dtype=torch.long)
    for i, x in enumerate(suffixes):
        ids[i, : len(x)] = torch.tensor(x, dtype=torch.long)
    lengths = torch.tensor([len(x) for x in suffixes])
    inside = (torch.arange(width)[None, :] < lengths[:, None]).long()
    attention = torch.cat([torch.ones((rows, len(prefix)), dtype=torch.long), inside], 1)
    positions = (len(prefix) + torch.arange(width)).expand(rows, width)
    return model(
        input_ids=ids.to(device),
        attention_mask=attention.to(device),
        position_ids=positions.to(device),
        past_key_values=cache,
        use_cache=cache is not None,
        logits_to_keep=0 if keep is None else keep.to(device),
    ).logits.float()


def pass_logprobs(
    model: torch.nn.Module,
    prefix: list[int],
    suffixes: list[list[int]],
    completions: list[list[int]],
    pad_id: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher-forced ``log pi(c_t | prefix, suffix_i[:t+1])`` of one pass (`lsp_mlx.backends.
    passes`): suffix i is ``prompt[-1:] + completion_i[:-1]``, so position t scores token t of
    completion i. Returns ``(B, W)`` log-probs and a ``(B, W)`` 0/1 mask (W = longest suffix).
    """
    logits = _continue(model, prefix, suffixes, pad_id)
    rows, width = logits.shape[:2]
    targets = torch.zeros((rows, width), dtype=torch.long)
    for i, c in enumerate(completions):
        targets[i, : len(c)] = torch.tensor(c, dtype=torch.long)
    targets = targets.to(logits.device)
    lengths = torch.tensor([len(c) for c in completions], device=logits.device)
    inside = torch.arange(width, device=logits.device)[None, :] < lengths[:, None]
    picked = logits.gather(-1, targets[..., None]).squeeze(-1) - torch.logsumexp(logits, dim=-1)
    # where, not a product: logits at padding positions are junk and must not leak (0 * nan = nan)
    return torch.where(inside, picked, 0.0), inside.to(picked.dtype)


def next_token_logprobs(
    model: torch.nn.Module,
    prefix: list[int],
    suffixes: list[list[int]],
    token_ids: list[int],
    pad_id: int,
) -> torch.Tensor:
    """``log p(t | prefix + suffix)`` for each ``t`` in ``token_ids``: ``(B, len(token_ids))``.
    Logits only at the columns where some suffix ends."""
    last = [len(x) - 1 for x in suffixes]
    columns = sorted(set(last))
    logits = _continue(model, prefix, suffixes, pad_id, torch.tensor(columns))
    pick = torch.tensor([columns.index(t) for t in last], device=logits.device)
    at_end = logits[torch.arange(len(suffixes), device=logits.device), pick]
    ids = torch.tensor(token_ids, dtype=torch.long, device=logits.device)
    return torch.log_softmax(at_end, dim=-1)[:, ids]

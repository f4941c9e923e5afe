"""Pairwise win rate of the adapter against the base model on a prompt file.

Both models answer every prompt (greedy). A judge then compares the two answers **twice**,
once with the adapter's answer in position A and once in position B, so a judge that
prefers a position cannot move the result (`lsp_mlx.evaluation.stats.pair_outcome`).

Judges:
- ``judge``: the base model (adapter off) reads both answers and picks A or B; the choice is
  the letter with the higher log-probability as the reply's first token, so it is always
  defined, deterministic and needs no parsing.
- ``reward_model`` / ``python``: a scorer with the project's reward signature
  ``(queries, answers) -> rewards``; the higher reward wins, equal rewards tie. A scalar
  scorer has no positions, so its two orders agree by construction.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lsp_mlx.errors import UserError
from lsp_mlx.evaluation.stats import pair_outcome

if TYPE_CHECKING:
    from lsp_mlx.backends.base import Backend

Scorer = Callable[[list[str], list[list[str]]], list[list[float]]]

PAIRWISE_PROMPT = """Compare two responses to the user's question. Decide which response is better: more correct, more helpful, clearer and more complete.

<question>
{query}
</question>

<response A>
{a}
</response A>

<response B>
{b}
</response B>

Which response is better? Reply with one letter, A or B."""


def read_prompts(path: str | Path) -> list[str]:
    """Prompts from a JSONL file (``prompt``, ``query`` or ``instruction`` field) or a text
    file with one prompt per line."""
    from lsp_mlx.readers import read_text

    path = Path(path)
    if not path.is_file():
        problem = "is a folder" if path.is_dir() else "not found"
        raise UserError(
            f"prompt file {str(path)!r} {problem}: pass a JSONL or text file with one prompt per line"
        )
    prompts: list[str] = []
    for n, line in enumerate(read_text(path, "the prompt file").splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        if path.suffix == ".jsonl" or line.startswith("{"):
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                raise UserError(
                    f"{path}:{n} is not valid JSON: write one object per line"
                ) from None
            text = next(
                (
                    row[k]
                    for k in ("prompt", "query", "instruction")
                    if isinstance(row, dict) and k in row
                ),
                None,
            )
            if not isinstance(text, str) or not text.strip():
                raise UserError(
                    f"{path}:{n} has no 'prompt' string: give each line a \"prompt\" field"
                )
            prompts.append(text.strip())
        else:
            prompts.append(line)
    if not prompts:
        raise UserError(f"prompt file {path} holds no prompts: write one prompt per line")
    return prompts


@dataclass
class PairResult:
    prompt: str
    base: str
    adapter: str
    adapter_first: float  # 1 adapter better, 0.5 tie, 0 base better; adapter's answer shown as A
    adapter_second: float  # the same with the adapter's answer shown as B

    @property
    def outcome(self) -> float:
        return pair_outcome(self.adapter_first, self.adapter_second)


def judge_letter(backend: Backend, pairs: list[tuple[str, str, str]]) -> list[float]:
    """For each (query, A, B): 1.0 if the reference model prefers A, else 0.0 (by next-token log-prob)."""
    a_tok, b_tok = backend.encode("A"), backend.encode("B")
    scored: list[tuple[list[int], list[int]]] = []
    for query, a, b in pairs:
        prompt = backend.chat_prompt(
            [{"role": "user", "content": PAIRWISE_PROMPT.format(query=query, a=a, b=b)}]
        )
        scored += [(prompt, a_tok), (prompt, b_tok)]
    lps = backend.sequence_logprobs(scored, adapter=False)
    return [1.0 if lps[2 * i] > lps[2 * i + 1] else 0.0 for i in range(len(pairs))]


def judge_pairs(
    backend: Backend, prompts: list[str], base: list[str], adapter: list[str], scorer: Scorer | None
) -> list[PairResult]:
    """Judge every (base, adapter) pair in both orders; ``scorer=None`` uses the model judge."""
    if scorer is None:
        first = judge_letter(
            backend, [(q, ad, b) for q, b, ad in zip(prompts, base, adapter)]
        )  # adapter is A
        second_a = judge_letter(
            backend, [(q, b, ad) for q, b, ad in zip(prompts, base, adapter)]
        )  # adapter is B
        second = [1.0 - x for x in second_a]
    else:
        first = _scalar(scorer(prompts, [[ad, b] for b, ad in zip(base, adapter)]), adapter_index=0)
        second = _scalar(
            scorer(prompts, [[b, ad] for b, ad in zip(base, adapter)]), adapter_index=1
        )
    return [
        PairResult(q, b, ad, f, s) for q, b, ad, f, s in zip(prompts, base, adapter, first, second)
    ]


def _scalar(rewards: list[list[float]], adapter_index: int) -> list[float]:
    out = []
    for group in rewards:
        if len(group) != 2:
            raise UserError(
                "the reward scorer returned rewards shaped unlike the answers: one float per answer"
            )
        mine, other = float(group[adapter_index]), float(group[1 - adapter_index])
        out.append(1.0 if mine > other else 0.0 if mine < other else 0.5)
    return out


def answer_prompts(
    backend: Backend, prompts: list[str], adapter: bool, max_tokens: int, batch_size: int = 32
) -> list[str]:
    """Greedy answers of the adapter or of the base model to plain user prompts."""
    out: list[str] = []
    for start in range(0, len(prompts), batch_size):
        chunk = [
            backend.chat_prompt([{"role": "user", "content": p}])
            for p in prompts[start : start + batch_size]
        ]
        out.extend(
            g[0].text
            for g in backend.generate(
                chunk, n=1, max_tokens=max_tokens, temperature=0.0, adapter=adapter
            )
        )
    return out

"""LSP's self-reward: the reference model judges each (query, answer) on a 0..7 rubric.

docs/algorithms.md §1: an additive integer score, one point per criterion, written as
``<Score>k</Score>`` after a short justification. The judge is the *reference* policy
(adapter off), so the Solver cannot move its own judge. Parsing is robust to case,
spaces and a missing closing tag; a judgement with no score counts as 0 and is counted
in ``judge/unparsable``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lsp_mlx.rewards.groups import regroup

if TYPE_CHECKING:
    from lsp_mlx.backends.base import Backend

MAX_SCORE = 7
JUDGE_MODES = ("generate", "score_first", "expected")

JUDGE_PROMPT = """Review the user's question and the assistant's response below, and score the exchange with this additive 7-point rubric. Add one point for each criterion that holds:
1. The user's task is clearly identifiable.
2. The instruction is clear, specific and well structured.
3. The user can understand the response.
4. The response addresses a substantial part of the question.
5. The response answers the core elements of the question usefully and comprehensively.
6. The response is clearly written, concise, well organised and helpful.
7. The user will most likely like the form and style of the response.

<question>
{query}
</question>

<response>
{answer}
</response>

Write a short justification, then the total on its own line as <Score>k</Score>, where k is an integer from 0 to 7."""

_PATTERNS = [
    re.compile(r"<\s*score\s*>\s*(\d+)", re.IGNORECASE),
    re.compile(r"score\s*[:=]?\s*(?:is\s*)?(\d+)\s*(?:/\s*7|out of 7)?", re.IGNORECASE),
    re.compile(r"\b(\d+)\s*(?:/\s*7|out of 7)\b", re.IGNORECASE),
]


def parse_score(text: str) -> int | None:
    """The judge's score in 0..7, or None when the text holds no usable score.

    The last ``<Score>`` tag wins (a judge may quote the format before using it); scores
    above 7 are rejected rather than clipped, because they mean the judge misread the scale.
    """
    for pattern in _PATTERNS:
        hits = pattern.findall(text)
        if hits:
            value = int(hits[-1])
            return value if 0 <= value <= MAX_SCORE else None
    return None


@dataclass
class JudgeStats:
    judged: int = 0
    unparsable: int = 0
    examples: list[str] = field(default_factory=list)  # a few raw judgements, for the log


class Judge:
    """Reward source ``judge``: (queries, answers) -> scores in [0, 1] (or 0..7 raw)."""

    def __init__(
        self,
        backend: Backend,
        max_tokens: int = 96,
        temperature: float = 0.0,
        normalize: bool = True,
        mode: str = "generate",
    ) -> None:
        self.backend = backend
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.normalize = normalize
        # "generate": the paper's form, justification then <Score>k</Score>.
        # "score_first": the judgement starts with the tag, so a small model writes the score
        # first instead of wandering off. "expected": no sampling at all: the score is the
        # expectation of k under the judge's next-token distribution over the digits 0..7
        # after "<Score>" (renormalised); always parseable, and smooth in the answer.
        if mode not in JUDGE_MODES:
            raise ValueError(f"unknown judge mode {mode!r}")
        self.mode = mode
        self.score_first = mode in ("score_first", "expected")
        self.stats = JudgeStats()

    def prompt(self, query: str, answer: str) -> list[int]:
        tokens = self.backend.chat_prompt(
            [{"role": "user", "content": JUDGE_PROMPT.format(query=query, answer=answer)}]
        )
        if self.score_first:
            tokens = tokens + self.backend.encode("<Score>")
        return tokens

    def _expected_scores(self, prompts: list[list[int]]) -> list[float]:
        import math

        digits = [self.backend.encode(str(k)) for k in range(MAX_SCORE + 1)]
        if any(len(d) != 1 for d in digits):
            raise ValueError("judge mode 'expected' needs single-token digits in the tokenizer")
        rows = self.backend.next_token_logprobs(prompts, [d[0] for d in digits], adapter=False)
        scores = []
        for lps in rows:
            ps = [math.exp(x) for x in lps]
            z = sum(ps) or 1.0
            scores.append(sum(k * p for k, p in enumerate(ps)) / z)
        return scores

    def __call__(self, queries: list[str], answers: list[list[str]]) -> list[list[float]]:
        prompts = [self.prompt(q, a) for q, group in zip(queries, answers) for a in group]
        if self.mode == "expected":
            self.stats = JudgeStats(judged=len(prompts))
            raw = self._expected_scores(prompts)
            return regroup([s / MAX_SCORE if self.normalize else s for s in raw], answers)
        outs = self.backend.generate(
            prompts, n=1, max_tokens=self.max_tokens, temperature=self.temperature, adapter=False
        )
        flat: list[float] = []
        self.stats = JudgeStats()
        for (completion,) in outs:
            text = ("<Score>" + completion.text) if self.score_first else completion.text
            score = parse_score(text)
            self.stats.judged += 1
            if score is None:
                self.stats.unparsable += 1
                score = 0
            if len(self.stats.examples) < 2:
                self.stats.examples.append(text[:200])
            flat.append(score / MAX_SCORE if self.normalize else float(score))
        return regroup(flat, answers)

"""A held-out arithmetic set generated from a seed, and exact-match accuracy on it.

The set is a pure function of (seed, levels, per_level): the same command gives the same
problems on any machine. Problems are asked with the SQLM arithmetic Solver prompt
(`lsp_mlx.verifiers.tasks.ARITHMETIC_SOLVER`), so a model is measured on the format it was
trained to answer in, and answers are checked exactly (`lsp_mlx.verifiers.arithmetic`).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lsp_mlx.readers import read_jsonl
from lsp_mlx.verifiers.arithmetic import extract_answer, is_correct
from lsp_mlx.verifiers.tasks import ARITHMETIC_SOLVER

if TYPE_CHECKING:
    from lsp_mlx.backends.base import Backend


def _add(rng: random.Random, lo: int, hi: int) -> tuple[str, int]:
    a, b = rng.randint(lo, hi), rng.randint(lo, hi)
    return f"What is {a} + {b}?", a + b


def _sub(rng: random.Random, lo: int, hi: int) -> tuple[str, int]:
    a, b = rng.randint(lo, hi), rng.randint(lo, hi)
    a, b = max(a, b), min(a, b)
    return f"What is {a} - {b}?", a - b


def _mul(rng: random.Random, lo: int, hi: int, lo2: int, hi2: int) -> tuple[str, int]:
    a, b = rng.randint(lo, hi), rng.randint(lo2, hi2)
    return f"What is {a} * {b}?", a * b


# name -> (description, generator)
LEVELS: dict[str, tuple[str, Callable[[random.Random], tuple[str, int]]]] = {
    "add1": ("1-digit addition", lambda r: _add(r, 0, 9)),
    "add2": ("2-digit addition", lambda r: _add(r, 10, 99)),
    "sub2": ("2-digit subtraction", lambda r: _sub(r, 10, 99)),
    "mul1": ("1-digit multiplication", lambda r: _mul(r, 2, 9, 2, 9)),
    "add3": ("3-digit addition", lambda r: _add(r, 100, 999)),
    "mul2": ("2-digit by 1-digit multiplication", lambda r: _mul(r, 10, 99, 2, 9)),
}
DEFAULT_LEVELS = ("add1", "add2", "sub2", "mul1")


@dataclass(frozen=True)
class Problem:
    question: str
    answer: int
    level: str


def make_arithmetic_set(
    seed: int = 1234, per_level: int = 100, levels: tuple[str, ...] | list[str] = DEFAULT_LEVELS
) -> list[Problem]:
    """``per_level`` distinct problems per level, from a generator seeded by ``seed`` and the level."""
    unknown = [lv for lv in levels if lv not in LEVELS]
    if unknown:
        raise ValueError(f"unknown level(s) {', '.join(unknown)}; known: {', '.join(LEVELS)}")
    problems: list[Problem] = []
    for level in levels:
        rng = random.Random(f"{seed}:{level}")
        seen: set[str] = set()
        tries = 0
        while len(seen) < per_level and tries < per_level * 50:
            tries += 1
            question, answer = LEVELS[level][1](rng)
            if question not in seen:
                seen.add(question)
                problems.append(Problem(question, answer, level))
    return problems


def _normalise(question: str) -> str:
    return re.sub(r"\s+", " ", question.strip())


def training_questions(events_path: Path) -> set[str]:
    """Every problem a run's Solver was trained on (valid games with answers), so accuracy can
    also be reported on held-out problems the self-play never happened to propose: in a small
    space such as 1-digit addition (100 problems) a Proposer covers part of any held-out set."""
    return {
        _normalise(e["query"])
        for e in read_jsonl(
            events_path,
            "the run's events",
            fix="repair or delete the damaged line, or pass --train-log none",
        )
        if e.get("type") == "game" and e.get("valid", True) and e.get("answers")
    }


def seen_in_training(problems: list[Problem], questions: set[str]) -> list[bool]:
    return [_normalise(p.question) in questions for p in problems]


def solver_prompt(problem: Problem) -> list[dict[str, str]]:
    return [{"role": "user", "content": ARITHMETIC_SOLVER.format(problem=problem.question)}]


@dataclass
class Graded:
    problem: Problem
    completion: str
    extracted: str | None
    correct: bool


def grade(problems: list[Problem], completions: list[str]) -> list[Graded]:
    return [
        Graded(p, c, extract_answer(c), is_correct(c, p.answer))
        for p, c in zip(problems, completions)
    ]


def answer_problems(
    backend: Backend,
    problems: list[Problem],
    adapter: bool,
    max_tokens: int = 64,
    batch_size: int = 64,
    progress: Callable[[int, int], None] | None = None,
) -> list[str]:
    """Greedy (temperature 0) answers of the adapter or of the base model, in batches."""
    out: list[str] = []
    for start in range(0, len(problems), batch_size):
        chunk = problems[start : start + batch_size]
        prompts = [backend.chat_prompt(solver_prompt(p)) for p in chunk]
        groups = backend.generate(
            prompts, n=1, max_tokens=max_tokens, temperature=0.0, adapter=adapter
        )
        out.extend(group[0].text for group in groups)
        if progress is not None:
            progress(len(out), len(problems))
    return out

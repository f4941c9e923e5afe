"""The verifiable tasks SQLM plays: what the Proposer is asked, how a proposal is parsed, what the
Solver sees, and how a group of answers is scored (docs/algorithms.md §2).

- `ArithmeticTask`: the Proposer writes a maths problem; answers are reduced to their final
  number. ``solver_reward="majority"`` is the paper's label-free reward (agree with the
  group's majority); ``"exact"`` rewards the answers that equal the truth computed from the
  problem's own arithmetic (problems without computable arithmetic are then masked).
- `CodeTask`: the Proposer writes a Python problem and ``assert`` tests; the Solver's reward
  is the fraction of tests its code passes in the sandbox.

Either way a problem gets a solve rate ``p`` in [0, 1] and a success count ``s = p * n``
from which the Proposer's difficulty reward is computed (`lsp_mlx.verifiers.difficulty`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from lsp_mlx.verifiers import arithmetic, code
from lsp_mlx.verifiers.difficulty import majority_vote, solver_rewards_majority
from lsp_mlx.verifiers.sandbox import SandboxLimits

PROBLEM_START = "<problem>"
PROBLEM_END = "</problem>"

ARITHMETIC_PROPOSER = """Write one new maths problem on the topic: {topic}.
The problem must have a single numeric answer. Do not write the answer, the solution or any hint.
Write only the problem, between {start} and {end}."""

ARITHMETIC_SOLVER = """{problem}
Solve it, then give the final answer as a number on the last line, as "Answer: <number>"."""

REFERENCES = """
Here are earlier problems on this topic:
{problems}
Write a new problem that is different from all of them."""

CODE_PROPOSER = """Write one new Python programming problem on the topic: {topic}.
First state the problem in one or two sentences, naming the function to write and its arguments.
Then write 3 to 5 unit tests as Python assert lines in a ```python block, e.g. assert add(2, 3) == 5.
Do not write the solution. Write everything between {start} and {end}."""

CODE_SOLVER = """{problem}
Write a Python function named {function} that solves it. Reply with the code in one ```python block."""

_MAX_PROBLEM_CHARS = 1200


@dataclass
class Proposal:
    problem: str  # what the Solver is shown ("" when nothing could be parsed)
    valid: bool  # False: masked out of the loss
    reason: str = ""  # why it is invalid
    truth: str | None = None  # canonical true answer, when the problem states computable arithmetic
    tests: list[str] = field(default_factory=list)
    function: str | None = None


@dataclass
class Scored:
    rewards: list[float]  # the Solver's rewards, one per answer
    solve_rate: float  # p in [0, 1]
    successes: float  # p * n: majority matches, correct answers or summed pass fractions
    parts: list[dict[str, float]]  # per-answer reward parts for the log
    extra: dict[str, Any] = field(default_factory=dict)


def with_references(messages: list[dict[str, str]], references: list[str]) -> list[dict[str, str]]:
    """The Proposer's messages with earlier problems appended (Absolute Zero's reference
    conditioning: a different random draw per proposal keeps the problems varied)."""
    if not references:
        return messages
    listed = "\n".join(f"{PROBLEM_START}{r}{PROBLEM_END}" for r in references)
    last = messages[-1]
    return [
        *messages[:-1],
        {**last, "content": last["content"] + REFERENCES.format(problems=listed)},
    ]


def split_problem(completion: str) -> tuple[str, bool]:
    """The text of a proposal between the markers (the prompt ends with the start marker);
    returns (text, followed_the_format)."""
    text = completion
    well_formed = PROBLEM_END in text
    if PROBLEM_START in text:
        text = text.split(PROBLEM_START, 1)[1]
    text = text.split(PROBLEM_END, 1)[0]
    return re.sub(r"\s+\n", "\n", text).strip(), well_formed


class ArithmeticTask:
    name = "arithmetic"

    def __init__(self, solver_reward: str = "majority") -> None:
        if solver_reward not in ("majority", "exact"):
            raise ValueError(f"solver_reward must be majority or exact, got {solver_reward!r}")
        self.solver_reward = solver_reward

    def proposer_messages(self, topic: str) -> list[dict[str, str]]:
        text = ARITHMETIC_PROPOSER.format(topic=topic, start=PROBLEM_START, end=PROBLEM_END)
        return [{"role": "user", "content": text}]

    def parse(self, completion: str) -> Proposal:
        text, _ = split_problem(completion)
        if "?" in text:  # a question ends at its question mark; small models ramble on after it
            text = text[: text.index("?") + 1]
        if not text:
            return Proposal(problem="", valid=False, reason="empty")
        if len(text) > _MAX_PROBLEM_CHARS:
            return Proposal(problem=text, valid=False, reason="too long")
        value = arithmetic.solve_problem(text)
        truth = arithmetic.canonical(value) if value is not None else None
        if self.solver_reward == "exact" and truth is None:
            return Proposal(problem=text, valid=False, reason="no computable arithmetic")
        return Proposal(problem=text, valid=True, truth=truth)

    def solver_messages(self, proposal: Proposal) -> list[dict[str, str]]:
        return [{"role": "user", "content": ARITHMETIC_SOLVER.format(problem=proposal.problem)}]

    def score(self, proposals: list[Proposal], answers: list[list[str]]) -> list[Scored]:
        return [self._score_one(p, group) for p, group in zip(proposals, answers)]

    def _score_one(self, proposal: Proposal, answers: list[str]) -> Scored:
        parsed = [arithmetic.extract_answer(a) for a in answers]
        majority, agree = majority_vote(parsed)
        by_majority = solver_rewards_majority(parsed, majority)
        correct = [
            1.0 if proposal.truth is not None and a == proposal.truth else 0.0 for a in parsed
        ]
        rewards = by_majority if self.solver_reward == "majority" else correct
        parts = [
            {"majority": m, **({"correct": c} if proposal.truth is not None else {})}
            for m, c in zip(by_majority, correct)
        ]
        n = len(answers)
        successes = float(agree) if self.solver_reward == "majority" else sum(correct)
        extra = {
            "majority": majority,
            "agree": agree,
            "parsed": parsed,
            "truth": proposal.truth,
            "unparsed": sum(a is None for a in parsed),
        }
        if proposal.truth is not None:
            extra["accuracy"] = sum(correct) / n
            extra["majority_correct"] = float(majority == proposal.truth)
        return Scored(
            rewards=rewards, solve_rate=successes / n, successes=successes, parts=parts, extra=extra
        )


class CodeTask:
    name = "code"

    def __init__(self, limits: SandboxLimits | None = None, min_tests: int = 1) -> None:
        self.limits = limits or SandboxLimits()
        self.min_tests = min_tests

    def proposer_messages(self, topic: str) -> list[dict[str, str]]:
        text = CODE_PROPOSER.format(topic=topic, start=PROBLEM_START, end=PROBLEM_END)
        return [{"role": "user", "content": text}]

    def parse(self, completion: str) -> Proposal:
        text, _ = split_problem(completion)
        tests = code.parse_tests(text)
        statement = re.split(r"```|^\s*assert\s", text, maxsplit=1, flags=re.MULTILINE)[0].strip()
        function = code.function_name(tests)
        if len(tests) < self.min_tests:
            return Proposal(problem=statement, valid=False, reason="no tests", tests=tests)
        if not statement:
            return Proposal(
                problem=statement, valid=False, reason="no problem statement", tests=tests
            )
        if function is None:
            return Proposal(
                problem=statement, valid=False, reason="tests call no function", tests=tests
            )
        if len(statement) > _MAX_PROBLEM_CHARS:
            return Proposal(problem=statement, valid=False, reason="too long", tests=tests)
        return Proposal(problem=statement, valid=True, tests=tests, function=function)

    def solver_messages(self, proposal: Proposal) -> list[dict[str, str]]:
        text = CODE_SOLVER.format(problem=proposal.problem, function=proposal.function)
        return [{"role": "user", "content": text}]

    def score(self, proposals: list[Proposal], answers: list[list[str]]) -> list[Scored]:
        items = [
            (code.extract_code(a), p.tests) for p, group in zip(proposals, answers) for a in group
        ]
        reports = code.score_solutions(items, self.limits)
        out, k = [], 0
        for group in answers:
            group_reports = reports[k : k + len(group)]
            k += len(group)
            rewards = [r.fraction for r in group_reports]
            n = len(group)
            out.append(
                Scored(
                    rewards=rewards,
                    solve_rate=sum(rewards) / n,
                    successes=sum(rewards),
                    parts=[
                        {"pass_fraction": r.fraction, "all_passed": float(r.passed == r.total)}
                        for r in group_reports
                    ],
                    extra={
                        "tests": len(group_reports[0].results) if group_reports else 0,
                        "no_code": sum(r.load_error == "NoCode" for r in group_reports),
                        "timeouts": sum(
                            bool(r.sandbox and r.sandbox.timed_out) for r in group_reports
                        ),
                    },
                )
            )
        return out


def make_task(
    verifier: str, solver_reward: str = "majority", limits: SandboxLimits | None = None
) -> ArithmeticTask | CodeTask:
    if verifier == "arithmetic":
        return ArithmeticTask(solver_reward)
    if verifier == "code":
        return CodeTask(limits)
    raise ValueError(f"unknown verifier {verifier!r}: use arithmetic or code")

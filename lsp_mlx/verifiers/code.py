"""Python coding problems: unit tests written by the Proposer, solutions by the Solver.

A proposal holds a problem statement and ``assert`` lines (SQLM, ALGORITHMS.md §2). A
solution is the Python code of the Solver's answer. Each solution runs with its tests in one
sandboxed process (`lsp_mlx.verifiers.sandbox`); the reward is the fraction of tests passed.

The harness reports each test on stdout behind a random per-run token, and the solution's
own prints go to /dev/null, so printed text cannot fake a pass by accident. A solution that
deliberately reads the token from its harness could; the sandbox keeps such a program from
harming anything, it does not make the pass count adversarially robust.
"""

from __future__ import annotations

import ast
import os
import re
import secrets
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from lsp_mlx.verifiers.sandbox import SandboxLimits, SandboxResult, run_python

_FENCE_RE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_ASSERT_CALL_RE = re.compile(r"^\s*assert\s+(?:not\s+)?\(?\s*([A-Za-z_]\w*)\s*\(")

_HARNESS = r"""
import os, sys
_token, _tests = {token!r}, {tests!r}
_out = sys.stdout
sys.stdout = sys.stderr = open(os.devnull, "w")
_ns = {{"__name__": "solution"}}
try:
    with open("solution.py", encoding="utf-8") as _fh:
        exec(compile(_fh.read(), "solution.py", "exec"), _ns)
    _loaded = True
except BaseException as _e:
    _loaded = False
    _out.write(_token + " load " + type(_e).__name__ + "\n")
    _out.flush()
if _loaded:
    for _i, _test in enumerate(_tests):
        try:
            exec(compile(_test, "test_%d" % _i, "exec"), dict(_ns))
            _ok = 1
        except BaseException:
            _ok = 0
        _out.write("%s %d %d\n" % (_token, _i, _ok))
        _out.flush()
"""


@dataclass
class TestReport:
    passed: int
    total: int
    results: list[bool]  # per test; a test that never reported (timeout, crash) counts as failed
    load_error: str | None = None  # the exception that stopped the solution from loading
    sandbox: SandboxResult | None = field(default=None, repr=False)

    @property
    def fraction(self) -> float:
        return self.passed / self.total if self.total else 0.0


def extract_code(completion: str) -> str | None:
    """The Python code of a completion: its last fenced block that parses, else the whole text
    when it parses as Python and defines something; None when there is no code."""
    blocks = [
        body
        for lang, body in _FENCE_RE.findall(completion)
        if lang.lower() in ("", "python", "py", "python3")
    ]
    for body in reversed(blocks):
        if body.strip() and _parses(body):
            return body.strip("\n")
    text = completion.strip()
    if ("def " in text or "class " in text) and _parses(text):
        return text
    return None


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return True


def parse_tests(text: str) -> list[str]:
    """The ``assert`` statements of a Proposer's text (fenced or not), each one that parses."""
    source = "\n".join(body for _, body in _FENCE_RE.findall(text)) or text
    tests = []
    for line in source.splitlines():
        line = line.strip()
        if line.startswith("assert ") and _parses(line) and line not in tests:
            tests.append(line)
    return tests


def function_name(tests: list[str]) -> str | None:
    """The function the tests call (``assert add(1, 2) == 3`` -> ``add``), the most common one."""
    names = [m.group(1) for t in tests if (m := _ASSERT_CALL_RE.match(t))]
    names = [
        n
        for n in names
        if n not in ("isinstance", "len", "abs", "round", "sorted", "set", "list", "all", "any")
    ]
    return max(set(names), key=names.count) if names else None


def run_tests(solution: str, tests: list[str], limits: SandboxLimits | None = None) -> TestReport:
    """Run ``solution`` and then each test in one sandboxed process; never raises."""
    if not tests:
        return TestReport(passed=0, total=0, results=[])
    token = secrets.token_hex(16)
    harness = _HARNESS.format(token=token, tests=list(tests))
    result = run_python(harness, limits, files={"solution.py": solution})
    results = [False] * len(tests)
    load_error = None
    for line in result.stdout.splitlines():
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != token:
            continue
        if parts[1] == "load":
            load_error = parts[2]
        elif parts[1].isdigit() and int(parts[1]) < len(tests):
            results[int(parts[1])] = parts[2] == "1"
    if result.timed_out and load_error is None and not any(results):
        load_error = "Timeout"
    return TestReport(
        passed=sum(results),
        total=len(tests),
        results=results,
        load_error=load_error,
        sandbox=result,
    )


def score_solutions(
    items: list[tuple[str | None, list[str]]],
    limits: SandboxLimits | None = None,
    workers: int | None = None,
) -> list[TestReport]:
    """Run many (solution, tests) pairs concurrently; a missing solution scores 0 without running."""
    workers = workers or max(1, os.cpu_count() or 1)

    def one(item: tuple[str | None, list[str]]) -> TestReport:
        solution, tests = item
        if solution is None or not tests:
            return TestReport(
                passed=0, total=len(tests), results=[False] * len(tests), load_error="NoCode"
            )
        return run_tests(solution, tests, limits)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, items))

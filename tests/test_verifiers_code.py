"""Code extraction, test parsing and pass fractions through the real sandbox."""

from __future__ import annotations

import pytest

from lsp_mlx.verifiers.code import (
    extract_code,
    function_name,
    parse_tests,
    run_tests,
    score_solutions,
    solution_names,
    split_test,
)
from lsp_mlx.verifiers.sandbox import SandboxLimits, isolation_problem

needs_sandbox = pytest.mark.skipif(
    isolation_problem() is not None, reason=f"no OS-level sandbox here: {isolation_problem()}"
)

TESTS = ["assert add(1, 2) == 3", "assert add(-1, 1) == 0", "assert add(2, 2) == 4"]


def test_extract_code_prefers_the_last_fenced_block_that_parses():
    text = "First try:\n```python\ndef add(a, b) return\n```\nFixed:\n```python\ndef add(a, b):\n    return a + b\n```\nDone."
    assert extract_code(text) == "def add(a, b):\n    return a + b"
    assert extract_code("def f():\n    return 1") == "def f():\n    return 1"
    assert extract_code("I cannot write code today.") is None
    assert (
        extract_code("```\ndef g(x):\n    return x\n") == "def g(x):\n    return x"
    )  # unclosed fence


def test_parse_tests_and_function_name():
    proposal = "Write add(a, b).\n```python\nassert add(1, 2) == 3\nassert add(1, 2) == 3\nassert add(0 ==\nassert isinstance(add(1, 1), int)\n```"
    tests = parse_tests(proposal)
    assert tests == [
        "assert add(1, 2) == 3",
        "assert isinstance(add(1, 1), int)",
    ]  # deduplicated, unparsable dropped
    assert function_name(tests) == "add"
    assert function_name(["assert len(x) == 1"]) is None


@needs_sandbox
def test_pass_fraction_counts_each_test():
    report = run_tests(
        "def add(a, b):\n    print('noise', a)\n    return a + b if a != 2 else 5", TESTS
    )
    assert report.results == [True, True, False] and report.fraction == 2 / 3


@needs_sandbox
def test_printed_text_cannot_fake_a_pass():
    fake = "import sys\nfor i in range(3):\n    sys.__stdout__.write(f'xxxx {i} 1\\n')\ndef add(a, b):\n    return None"
    assert run_tests(fake, TESTS).passed == 0


@needs_sandbox
def test_hostile_solutions_score_zero_and_return():
    limits = SandboxLimits(timeout_s=1.5, cpu_seconds=3, memory_mb=256)
    hostile = [
        "def add(a, b):\n    while True:\n        pass",
        "import os\nos._exit(0)",
        "raise SystemExit(0)",
        "x = bytearray(8 * 1024**3)",
        "import os\nos.fork()",
    ]
    reports = score_solutions([(h, TESTS) for h in hostile] + [(None, TESTS)], limits)
    assert [r.passed for r in reports] == [0] * 6
    assert reports[0].load_error == "Timeout" and reports[-1].load_error == "NoCode"


@needs_sandbox
def test_a_test_that_hangs_keeps_the_results_before_it():
    solution = (
        "def add(a, b):\n    if a == 2:\n        while True:\n            pass\n    return a + b"
    )
    report = run_tests(solution, TESTS, SandboxLimits(timeout_s=1.5, cpu_seconds=3))
    assert report.results == [True, True, False]


def test_tests_split_into_solution_calls_and_a_rest_judged_elsewhere():
    assert split_test("assert add(1, 2) == 3") == (["add(1, 2)"], "__chain__(0) == 3")
    # builtins and modules stay with the judge; the expected value never reaches the solution
    assert split_test("assert abs(area(2) - 12.5) < 0.1") == (
        ["area(2)"],
        "abs(__chain__(0) - 12.5) < 0.1",
    )
    assert split_test("assert math.isclose(f(1), 0.5) and not g([x for x in 'ab'])") == (
        ["f(1)", "g([x for x in 'ab'])"],
        "math.isclose(__chain__(0), 0.5) and (not __chain__(1))",
    )
    assert split_test("assert Stack().pop() == f(2) * 2")[0] == ["Stack().pop()", "f(2)"]
    # a builtin the solution redefines is the solution's
    assert split_test("assert sorted(f(1)) == [1]", {"sorted", "f"})[0] == ["sorted(f(1))"]
    with pytest.raises(ValueError, match="comprehension"):
        split_test("assert all(f(x) for x in range(3))")
    with pytest.raises(ValueError):
        split_test("x = 1")


def test_solution_names_are_what_the_solution_binds():
    code = (
        "import math\nimport numpy as np\nfrom math import isclose\nLIMIT = 3\n"
        "def add(a, b):\n    inner = 1\n    return a + b\nclass Stack:\n    pass\n"
        "for i in range(2):\n    pass\n"
    )
    assert solution_names(code) == {"np", "isclose", "LIMIT", "add", "Stack", "i"}
    assert solution_names("def broken(:") == set()


def test_parse_tests_leaves_out_tests_the_judge_cannot_split():
    text = (
        "```python\nassert f(1) == 2\nassert all(f(x) for x in range(3))\nassert [f(0)] == [1]\n```"
    )
    assert parse_tests(text) == ["assert f(1) == 2", "assert [f(0)] == [1]"]

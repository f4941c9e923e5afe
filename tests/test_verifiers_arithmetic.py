"""Arithmetic answer extraction, exact checking and the truth of proposed problems."""

from __future__ import annotations

from fractions import Fraction

import pytest

from lsp_mlx.verifiers.arithmetic import (
    canonical,
    evaluate,
    extract_answer,
    find_expression,
    is_correct,
    parse_number,
    solve_problem,
)


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("23 + 45 = 68.", "68"),
        ("The answer is 68. Check: 68 - 45 = 23", "68"),  # an explicit marker beats the last number
        ("Let me think... \\boxed{1,234} is it, 99 was wrong", "1234"),  # boxed beats everything
        ("Answer: -3/4", "-3/4"),
        ("I think it's 0.50", "1/2"),
        ("**Answer:** 12", "12"),
        ("So 7 x 8 = 56", "56"),
        ("2 + 2 = 4\n\nAnswer: 4.", "4"),
        ("#### 42", "42"),
        ("The result is 3,000 apples", "3000"),
        ("The sum is 12.", "12"),
        ("The answer is −7", "-7"),  # unicode minus
        ("Answer: 6/3", "2"),
        ("no number here", None),
        ("", None),
    ],
)
def test_extract_answer(completion: str, expected: str | None):
    assert extract_answer(completion) == expected


def test_equal_numbers_have_one_spelling():
    assert (
        extract_answer("0.5")
        == extract_answer("1/2")
        == extract_answer("2/4")
        == canonical(Fraction(1, 2))
    )
    assert parse_number("1,234") == 1234 and parse_number("12,34") is None
    assert parse_number("1/0") is None and parse_number("abc") is None


def test_is_correct_is_exact():
    assert is_correct("so the total is 68", 68)
    assert not is_correct("so the total is 68.01", 68)
    assert is_correct("Answer: 2.5", Fraction(5, 2))
    assert is_correct("Answer: 5/2", "2.5")
    assert not is_correct("I don't know", 0)


@pytest.mark.parametrize(
    ("problem", "truth"),
    [
        ("What is 23 + 45?", 68),
        ("Compute 7 times 8.", 56),
        ("Calculate (12 - 4) * 3.", 24),
        ("What is 347 × 29?", 10063),
        ("What is 1,200 divided by 4?", 300),
        ("What is 5 - -3?", 8),
        ("What is 320 minus 26?", 294),
        ("What is the sum of 4 and 5?", 9),
        ("Subtract 7 from 20.", 13),
        ("What is the difference between 50 and 8?", 42),
        ("What is 11 + 21? This is a 2-digit addition", 32),
        ("What is 9 / 4?", Fraction(9, 4)),
    ],
)
def test_solve_problem(problem: str, truth: Fraction | int):
    assert solve_problem(problem) == truth


@pytest.mark.parametrize(
    "problem",
    [
        "Tom has 3 apples and buys 5 more. How many?",  # a word problem: no stated expression
        "Add 3 and 4 then multiply by 2",  # more than its expression: refuse rather than guess
        "What is 7 + 18?  Numerically, 2 *",
        "What is 10 + 2x?",  # glued to a variable
        "What is x + 2 + 3?",
        "What is the answer for 20 + 12 * 4 + problem?",  # runs into prose
        "What is 5 + 2 = 7 to a friend",  # states an answer
        "What is 2 ** 100?",  # powers are not + - * /
        "Evaluate 9/0",
        "What is 10**10**10?",
        "Write a poem",
    ],
)
def test_solve_problem_refuses_what_it_cannot_compute_for_sure(problem: str):
    assert solve_problem(problem) is None


def test_evaluate_is_restricted_to_arithmetic():
    assert evaluate("(1 + 2) * 3 - 4 / 2") == 7
    for bad in (
        "__import__('os').system('x')",
        "x + 1",
        "2 ** 3",
        "[1] * 3",
        "1 if 1 else 2",
        "9" * 40 + " * 2",
    ):
        assert evaluate(bad) is None
    assert find_expression("no maths") is None


def test_exact_reward_is_the_verifiers_verdict_per_answer():
    from lsp_mlx.rewards.arithmetic import exact

    queries = ["What is 23 + 45?", "What is 90 - 47?", "What is 2 + 3?\n2 + 4 = 6"]
    answers = [
        ["23 + 45 = 68.", "The answer is 67.", "68", "I don't know."],
        ["43", "The difference is 43, not 44."],
        ["5", "6"],  # the question ends at its question mark
    ]
    assert exact(queries, answers) == [[1.0, 0.0, 1.0, 0.0], [1.0, 1.0], [1.0, 0.0]]


def test_exact_reward_gives_no_reward_to_a_question_it_cannot_compute():
    from lsp_mlx.rewards.arithmetic import exact

    queries = ["What is {number} + {number}?", "What is 7 + 3, then double it?", "Who are you?"]
    answers = [["2", "4"], ["10", "20"], ["7", "I am a model."]]
    assert exact(queries, answers) == [None, None, None]


def test_exact_reward_loads_as_a_reward_function_of_the_demo_preset():
    from pathlib import Path

    from lsp_mlx import config as cfg
    from lsp_mlx.rewards.python_fn import load_function

    config = cfg.load(Path(__file__).parents[1] / "configs" / "demo.yaml")
    fn = load_function(config.reward.function)
    assert fn(["What is 6 + 8?"], [["14", "15"]]) == [[1.0, 0.0]]

"""Arithmetic: pull the final answer out of free text, compute the truth of a problem, compare exactly.

Numbers are compared as exact fractions (``0.5``, ``1/2`` and ``2/4`` are the same answer;
``1,234`` is one thousand two hundred thirty-four), so the checker never rounds. The truth of
a problem is computed from the arithmetic expression it contains ("What is 23 + 45?",
"Compute 7 times 8."), evaluated on a restricted syntax tree: numbers, + - * / and brackets.
"""

from __future__ import annotations

import ast
import re
from fractions import Fraction

# A number as people and models write it: -1,234.5, 3/4, 7.
_NUM = r"[-−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*/\s*\d+)?"
_NUM_RE = re.compile(rf"(?<![\w.]){_NUM}(?![\d])")
_BOXED_RE = re.compile(r"\\boxed\s*\{([^{}]*)\}")
# Explicit markers of a final answer, most specific first; the last match of a marker wins.
_MARKERS = [
    re.compile(rf"answer\s*(?:is|:|=)?\s*[:=]?\s*\**\s*\$?\s*({_NUM})", re.IGNORECASE),
    re.compile(
        rf"(?:result|total|sum|difference|product|quotient)\s+(?:is|=|:)\s*\**\s*\$?\s*({_NUM})",
        re.IGNORECASE,
    ),
    re.compile(rf"####\s*({_NUM})"),
]
_MAX_ABS = 10**30  # larger numbers are not arithmetic homework; refuse instead of computing them


def parse_number(text: str) -> Fraction | None:
    """``"1,234"`` -> 1234, ``"-3/4"`` -> -3/4, ``"2.50"`` -> 5/2; anything else -> None."""
    s = text.strip().replace("−", "-").replace(" ", "").rstrip(".")
    if "," in s:  # thousands separators only where they group by three
        if not re.fullmatch(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?", s):
            return None
        s = s.replace(",", "")
    if not re.fullmatch(r"-?\d+(?:\.\d+)?(?:/\d+)?", s):
        return None
    try:
        value = Fraction(s)
    except (ValueError, ZeroDivisionError):
        return None
    return value if abs(value) < _MAX_ABS else None


def canonical(value: Fraction) -> str:
    """One spelling per number, so equal answers compare equal as strings: ``5/2``, ``-7``."""
    return (
        str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"
    )


def extract_answer(completion: str) -> str | None:
    """The final numeric answer of a completion in canonical form, or None if it has none.

    Order: the last ``\\boxed{...}``; else the last explicit marker ("the answer is 68",
    "Answer: 68", "#### 68"); else the last number in the text.
    """
    text = completion.replace("**", "")
    boxed = _BOXED_RE.findall(text)
    for candidate in reversed(boxed):
        nums = _NUM_RE.findall(candidate)
        if nums and (value := parse_number(nums[-1])) is not None:
            return canonical(value)
    for marker in _MARKERS:
        found = marker.findall(text)
        if found and (value := parse_number(found[-1])) is not None:
            return canonical(value)
    for candidate in reversed(_NUM_RE.findall(text)):
        if (value := parse_number(candidate)) is not None:
            return canonical(value)
    return None


def is_correct(completion: str, truth: Fraction | int | str) -> bool:
    """Exact check of a completion's final answer against the true value."""
    answer = extract_answer(completion)
    if answer is None:
        return False
    expected = truth if isinstance(truth, Fraction) else parse_number(str(truth))
    return expected is not None and Fraction(answer) == expected


# --- the truth of a problem -------------------------------------------------------------

# "the sum of 23 and 30" -> "23 + 30": phrasings small models use for a single operation
_N = r"(-?\d+(?:\.\d+)?)"
_PHRASES = [
    (rf"\bsum\s+of\s+{_N}\s+and\s+{_N}", r"\1 + \2"),
    (rf"\bdifference\s+(?:between|of)\s+{_N}\s+and\s+{_N}", r"\1 - \2"),
    (rf"\bproduct\s+of\s+{_N}\s+and\s+{_N}", r"\1 * \2"),
    (rf"\bquotient\s+of\s+{_N}\s+and\s+{_N}", r"\1 / \2"),
    (rf"\badd\s+{_N}\s+(?:and|to)\s+{_N}", r"\1 + \2"),
    (rf"\bsubtract\s+{_N}\s+from\s+{_N}", r"\2 - \1"),
    (rf"\bmultiply\s+{_N}\s+(?:and|by)\s+{_N}", r"\1 * \2"),
]
_WORD_OPS = [
    (r"\bmultiplied\s+by\b", "*"),
    (r"\bdivided\s+by\b", "/"),
    (r"\btimes\b", "*"),
    (r"\bplus\b", "+"),
    (r"\bminus\b", "-"),
    (r"\bover\b", "/"),
]
_EXPR_RE = re.compile(r"[\d\s.+\-*/()]+")


def _normalise_ops(text: str) -> str:
    text = text.replace("×", "*").replace("÷", "/").replace("−", "-").replace("–", "-")
    text = text.replace("⋅", "*").replace("·", "*")
    text = re.sub(r"(?<=\d)\s*[xX]\s*(?=\d)", " * ", text)  # 12 x 3
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)  # 1,234
    for pattern, repl in _PHRASES:
        text = re.sub(pattern, repl, text, flags=re.IGNORECASE)
    for pattern, op in _WORD_OPS:
        text = re.sub(pattern, op, text, flags=re.IGNORECASE)
    return text


def _best_expression(text: str) -> tuple[str, bool] | None:
    """The longest expression in normalised text and whether it stands alone: not glued to a
    letter ("2x") and not cut from a longer expression that runs into prose ("4 + problem")."""
    best: tuple[str, bool] | None = None
    for match in _EXPR_RE.finditer(text):
        expr = match.group().strip().rstrip(".").strip()
        trimmed = False
        # trim a dangling operator or bracket left by surrounding prose ("is 3 + 4 ?", "(ans")
        while expr and expr[-1] in "+-*/(":
            expr, trimmed = expr[:-1].strip(), True
        while expr and expr[0] in "+*/)":
            expr, trimmed = expr[1:].strip(), True
        if not re.search(r"\d\s*[-+*/]\s*[-(]*\s*\d", expr):
            continue
        at = text.find(expr, match.start())
        before, after = text[:at], text[at + len(expr) :]
        glued = bool(re.search(r"[A-Za-z_]$", before) or re.match(r"[A-Za-z_]", after))
        if best is None or len(expr) > len(best[0]):
            best = (expr, not (trimmed or glued))
    return best


def find_expression(problem: str) -> str | None:
    """The longest arithmetic expression in a problem (at least one operator between numbers)."""
    best = _best_expression(_normalise_ops(problem))
    return best[0] if best else None


def _eval(node: ast.AST) -> Fraction:
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if (
        isinstance(node, ast.Constant)
        and isinstance(node.value, (int, float))
        and not isinstance(node.value, bool)
    ):
        return Fraction(str(node.value))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _eval(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult, ast.Div)):
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Add):
            out = left + right
        elif isinstance(node.op, ast.Sub):
            out = left - right
        elif isinstance(node.op, ast.Mult):
            out = left * right
        else:
            out = left / right  # ZeroDivisionError is caught by the caller
        if abs(out) >= _MAX_ABS:
            raise ValueError("number too large")
        return out
    raise ValueError(f"not arithmetic: {type(node).__name__}")


def evaluate(expression: str) -> Fraction | None:
    """Exact value of ``+ - * /`` arithmetic with brackets; None for anything else."""
    if len(expression) > 200:
        return None
    try:
        return _eval(ast.parse(expression, mode="eval"))
    except (SyntaxError, ValueError, ZeroDivisionError, RecursionError):
        return None


# Words that signal an operation outside the expression ("... then multiply by 2"): the
# problem is then more than its expression and its truth is not computed.
_MORE_OPS = re.compile(
    r"\b(then|multipl\w*|divid\w*|add|adds|added|subtract\w*|times|plus|minus|sum|difference|"
    r"product|quotient|more|less|fewer|twice|half|double|triple|each|remain\w*|left|total|per|"
    r"squared?|cubed?|percent|power|root|average|mean)\b|[%^]",
    re.IGNORECASE,
)


def solve_problem(problem: str) -> Fraction | None:
    """The true answer of a problem whose arithmetic is one stated expression, else None.

    Conservative on purpose: a wrong truth would reward wrong answers, so a problem with
    numbers or operation words outside its expression ("7 + 3, then double it") is refused.
    """
    text = _normalise_ops(problem)
    best = _best_expression(text)
    if best is None or not best[1]:
        return None
    expr = best[0]
    rest = text.replace(expr, " ", 1)
    rest = re.sub(r"\b\d+-digits?\b", " ", rest)  # "a 2-digit addition" names no number
    if re.search(r"\d", rest) or _MORE_OPS.search(rest):
        return None
    return evaluate(expr)

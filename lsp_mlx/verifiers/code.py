"""Python coding problems: unit tests written by the Proposer, solutions by the Solver.

A proposal holds a problem statement and ``assert`` lines (SQLM, docs/algorithms.md §2). A
solution is the Python code of the Solver's answer; its reward is the fraction of tests passed.

The verdict never comes from an interpreter the solution can touch (docs/sandbox.md):

- Each test ``assert E`` is split here, with `ast` only, into *calls*: the smallest pieces of
  ``E`` that need the solution (``add(1, 2)``, ``Stack().pop()``), and the *rest* of ``E``
  with each call replaced by a placeholder (``__chain__(0) == 3``).
- The solution's process (`_SOLUTION_HARNESS`) gets only the calls: it loads the solution,
  evaluates each call and writes the values, as tagged JSON of plain data, to its result
  channel. It never sees what they are compared with.
- The sandbox's supervisor, after the solution's process and anything it started are dead,
  runs `_JUDGE`: it decodes the values into plain ``int``/``float``/``str``/... objects (an
  object with a clever ``__eq__`` cannot cross a JSON line) and evaluates the rest of each
  test with its own, untouched builtins.

Patching ``exec``/``compile``/``print``, returning an always-equal object, printing fake
results or searching the harness's memory for a token therefore gain nothing: there is no
token, and the comparison happens elsewhere. The cost: a value that crosses must be plain
data (None, bool, int, float, complex, str, bytes, list, tuple, dict, set, frozenset), and a
test whose solution call sits inside a comprehension or lambda of the test cannot be split
(`parse_tests` leaves such tests out).
"""

from __future__ import annotations

import ast
import builtins
import json
import os
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from lsp_mlx.verifiers.sandbox import CHANNEL_FD, Judge, SandboxLimits, SandboxResult, run_python

_FENCE_RE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_ASSERT_CALL_RE = re.compile(r"^\s*assert\s+(?:not\s+)?\(?\s*([A-Za-z_]\w*)\s*\(")
_BUILTIN_NAMES = frozenset(dir(builtins))
_STDLIB_MODULES = frozenset(sys.stdlib_module_names)
_PLACEHOLDER = "__chain__"

# Runs in the solution's process: it may be patched by the solution at will, and nothing in
# it decides anything. Values are tagged JSON: lists and scalars as themselves, the rest as
# {"t": kind, "v": ...}.
_SOLUTION_HARNESS = r"""
import json, os, sys
_calls = {calls!r}
_channel = os.fdopen({channel_fd}, "w")
sys.stdout = sys.stderr = open(os.devnull, "w")


def _enc(x, depth=0):
    t = type(x)
    if depth > 100:
        raise ValueError("nested too deeply")
    if t is int and x.bit_length() > 4000:  # json stops at 4300 decimal digits; hex does not
        return {{"t": "int", "v": format(x, "x")}}
    if x is None or t is bool or t is int or t is float or t is str:
        return x
    if t is list:
        return [_enc(v, depth + 1) for v in x]
    if t is tuple or t is set or t is frozenset:
        items = [_enc(v, depth + 1) for v in x]
        return {{"t": t.__name__, "v": items}}
    if t is dict:
        return {{"t": "dict", "v": [[_enc(k, depth + 1), _enc(v, depth + 1)] for k, v in x.items()]}}
    if t is bytes:
        return {{"t": "bytes", "v": x.hex()}}
    if t is complex:
        return {{"t": "complex", "v": [x.real, x.imag]}}
    raise TypeError("not plain data: " + t.__name__)


_ns = {{"__name__": "solution"}}
try:
    with open("solution.py", encoding="utf-8") as _fh:
        exec(compile(_fh.read(), "solution.py", "exec"), _ns)
except BaseException as _e:
    _channel.write(json.dumps(["load", type(_e).__name__]) + "\n")
    _channel.flush()
    raise SystemExit(0)
for _i, _test_calls in enumerate(_calls):
    _values = []
    _scope = dict(_ns)
    for _call in _test_calls:
        try:
            _values.append([1, _enc(eval(compile(_call, "test_%d" % _i, "eval"), _scope))])
        except BaseException as _e:
            _values.append([0, type(_e).__name__])
    _channel.write(json.dumps([_i, _values]) + "\n")
    _channel.flush()
"""

# Runs in the sandbox's supervisor after the solution's process is gone (see the module
# docstring); CHANNEL, DATA and VERDICT are given by lsp_mlx.verifiers.sandbox.Judge.
_JUDGE = r"""
import builtins, json

_data = json.loads(DATA)
_tests, _counts = _data["tests"], _data["calls"]
_KINDS = {"tuple": tuple, "set": set, "frozenset": frozenset}


def _dec(x, depth=0):
    t = type(x)
    if depth > 100:
        raise ValueError("nested too deeply")
    if x is None or t is bool or t is int or t is float or t is str:
        return x
    if t is list:
        return [_dec(v, depth + 1) for v in x]
    if t is dict and set(x) == {"t", "v"}:
        kind, v = x["t"], x["v"]
        if kind in _KINDS and type(v) is list:
            return _KINDS[kind](_dec(i, depth + 1) for i in v)
        if kind == "dict" and type(v) is list:
            out = {}
            for pair in v:
                if type(pair) is not list or len(pair) != 2:
                    raise ValueError("bad dict item")
                out[_dec(pair[0], depth + 1)] = _dec(pair[1], depth + 1)
            return out
        if kind == "bytes" and type(v) is str:
            return bytes.fromhex(v)
        if kind == "int" and type(v) is str:
            return int(v, 16)
        if kind == "complex" and type(v) is list and len(v) == 2:
            if all(type(p) in (int, float) for p in v):
                return complex(v[0], v[1])
    raise ValueError("not a value")


_values, _load = {}, None
for _line in CHANNEL.splitlines():
    try:
        _rec = json.loads(_line)
    except ValueError:
        continue
    if type(_rec) is not list or len(_rec) != 2:
        continue
    if _rec[0] == "load" and type(_rec[1]) is str and _load is None and not _values:
        _load = _rec[1][:80].replace(" ", "_") or "Error"
    elif type(_rec[0]) is int and 0 <= _rec[0] < len(_tests) and _rec[0] not in _values:
        if type(_rec[1]) is list and len(_rec[1]) == _counts[_rec[0]]:
            _values[_rec[0]] = _rec[1]

_modules = {}
for _name in _data["modules"]:
    try:
        _modules[_name] = __import__(_name)
    except ImportError:
        pass
if _load is not None:
    VERDICT += "load " + _load + "\n"
for _i, _src in enumerate(_tests):
    _got = _values.get(_i)
    _ok = 0
    if _src is not None and _got is not None:

        def __chain__(k, _got=_got):
            flag, value = _got[k]
            if flag != 1:
                raise RuntimeError("the call raised")
            return _dec(value)

        try:
            _scope = {"__builtins__": builtins, "__chain__": __chain__, **_modules}
            _ok = 1 if eval(compile(_src, "test_%d" % _i, "eval"), _scope) else 0
        except TimeoutError:
            raise
        except (Exception, SystemExit, KeyboardInterrupt, GeneratorExit):
            _ok = 0
    VERDICT += "%d %d\n" % (_i, _ok)
"""


class _Unjudgeable(Exception):
    pass


_SCOPES = (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp, ast.NamedExpr)


def solution_names(solution: str) -> set[str]:
    """The names the solution binds at module level (defs, classes, assignments, imports),
    except a standard-library module imported under its own name (``import math``)."""
    try:
        tree = ast.parse(solution)
    except (SyntaxError, ValueError):
        return set()
    names: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(child.name)
                continue
            if isinstance(child, (ast.Lambda, *_SCOPES)):
                continue
            if isinstance(child, ast.Name) and isinstance(child.ctx, (ast.Store, ast.Del)):
                names.add(child.id)
            elif isinstance(child, ast.Import):
                for alias in child.names:
                    bound = alias.asname or alias.name.split(".")[0]
                    if alias.asname or bound not in _STDLIB_MODULES:
                        names.add(bound)
            elif isinstance(child, ast.ImportFrom):
                names.update(a.asname or a.name for a in child.names)
            visit(child)

    visit(tree)
    return names


def split_test(
    test: str, defined: set[str] | frozenset[str] = frozenset()
) -> tuple[list[str], str]:
    """``assert E`` -> (the calls of E that need the solution, E with each call replaced by
    ``__chain__(k)``). A name needs the solution when the solution defines it, or when it is
    neither a builtin nor a standard-library module. Raises ValueError when E cannot be split
    (a solution name inside a comprehension or lambda of the test)."""
    tree = ast.parse(test.strip())
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Assert):
        raise ValueError("not a single assert statement")
    expr = tree.body[0].test
    bound = set()
    for node in ast.walk(expr):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            bound.add(node.id)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)

    def needs(name: str) -> bool:
        if name in bound:
            return False
        return name in defined or (name not in _BUILTIN_NAMES and name not in _STDLIB_MODULES)

    def mentions(node: ast.AST) -> bool:
        return any(isinstance(n, ast.Name) and needs(n.id) for n in ast.walk(node))

    def is_call(node: ast.AST) -> bool:
        if isinstance(node, ast.Name):
            return needs(node.id)
        if isinstance(node, ast.Call):
            return is_call(node.func)
        if isinstance(node, (ast.Attribute, ast.Subscript)):
            return is_call(node.value)
        return False

    calls: list[str] = []

    class Cut(ast.NodeTransformer):
        def visit(self, node: ast.AST) -> ast.AST:
            if isinstance(node, ast.expr) and mentions(node):
                if is_call(node):
                    calls.append(ast.unparse(node))
                    placeholder = ast.Name(_PLACEHOLDER, ast.Load())
                    return ast.Call(placeholder, [ast.Constant(len(calls) - 1)], [])
                if isinstance(node, _SCOPES):
                    raise _Unjudgeable
            return self.generic_visit(node)

    try:
        rest = Cut().visit(expr)
    except _Unjudgeable:
        raise ValueError("a solution call inside a comprehension or lambda of the test") from None
    return calls, ast.unparse(ast.fix_missing_locations(rest))


def judgeable(test: str) -> bool:
    try:
        split_test(test)
    except (SyntaxError, ValueError):
        return False
    return True


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
    """The ``assert`` statements of a Proposer's text (fenced or not), each one that parses and
    that the judge can split (`split_test`)."""
    source = "\n".join(body for _, body in _FENCE_RE.findall(text)) or text
    tests = []
    for line in source.splitlines():
        line = line.strip()
        if line.startswith("assert ") and judgeable(line) and line not in tests:
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
    """Run ``solution`` against each test in one sandboxed run (the solution's calls in its own
    process, the comparisons in the judge); never raises for anything the solution does."""
    if not tests:
        return TestReport(passed=0, total=0, results=[])
    defined = solution_names(solution)
    calls: list[list[str]] = []
    rests: list[str | None] = []
    modules: set[str] = set()
    for test in tests:
        try:
            test_calls, rest = split_test(test, defined)
        except (SyntaxError, ValueError):
            test_calls, rest = [], None
        calls.append(test_calls)
        rests.append(rest)
        if rest is not None:
            modules.update(
                n.id
                for n in ast.walk(ast.parse(rest))
                if isinstance(n, ast.Name) and n.id in _STDLIB_MODULES
            )
    harness = _SOLUTION_HARNESS.format(calls=calls, channel_fd=CHANNEL_FD)
    data = json.dumps(
        {"tests": rests, "calls": [len(c) for c in calls], "modules": sorted(modules)}
    )
    result = run_python(harness, limits, files={"solution.py": solution}, judge=Judge(_JUDGE, data))
    results = [False] * len(tests)
    load_error = None
    for line in (result.verdict or "").splitlines():
        parts = line.split(" ")
        if len(parts) != 2:
            continue
        if parts[0] == "load":
            load_error = parts[1]
        elif parts[0].isdigit() and int(parts[0]) < len(tests):
            results[int(parts[0])] = parts[1] == "1"
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

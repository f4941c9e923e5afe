"""Code-verifier throughput (programs checked per second), the sandbox of a git revision vs the
working tree's, interleaved in one run so load drift hits both.

    python benchmarks/sandbox.py [--baseline 5b98f36] [--rounds 5] [--programs 24]

The workload is what SQLM on code scores: ``score_solutions`` on (solution, tests) pairs with
3 to 4 assert tests each, two thirds correct, one sixth wrong, one sixth failing to load, with
the default limits and as many workers as CPUs. The baseline's ``code.py`` and ``sandbox.py``
are read with ``git show REV:path`` and imported from a temporary folder.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lsp_mlx.verifiers import code as current  # noqa: E402

PROBLEMS = [
    (
        "def add(a, b):\n    return a + b",
        "def add(a, b):\n    return a - b",
        ["assert add(1, 2) == 3", "assert add(-1, 1) == 0", "assert add(2, 2) == 4"],
    ),
    (
        "def rev(s):\n    return s[::-1]",
        "def rev(s):\n    return s",
        ["assert rev('abc') == 'cba'", "assert rev('') == ''", "assert rev('ab') == 'ba'"],
    ),
    (
        "def evens(n):\n    return [i for i in range(n) if i % 2 == 0]",
        "def evens(n):\n    return list(range(n))",
        ["assert evens(5) == [0, 2, 4]", "assert evens(0) == []", "assert len(evens(10)) == 5"],
    ),
    (
        "def is_prime(n):\n    return n > 1 and all(n % d for d in range(2, int(n**0.5) + 1))",
        "def is_prime(n):\n    return n % 2 == 1",
        [
            "assert is_prime(7)",
            "assert not is_prime(9)",
            "assert is_prime(2)",
            "assert not is_prime(1)",
        ],
    ),
]


def workload(n: int) -> list[tuple[str, list[str]]]:
    items = []
    for i in range(n):
        good, bad, tests = PROBLEMS[i % len(PROBLEMS)]
        kind = i % 6
        solution = bad if kind == 4 else ("def broken(:\n" if kind == 5 else good)
        items.append((solution, tests))
    return items


def load_baseline(rev: str, folder: Path) -> ModuleType:
    def show(path: str) -> str:
        return subprocess.run(
            ["git", "show", f"{rev}:{path}"], cwd=ROOT, check=True, capture_output=True, text=True
        ).stdout

    (folder / "baseline_sandbox.py").write_text(show("lsp_mlx/verifiers/sandbox.py"))
    (folder / "baseline_code.py").write_text(
        show("lsp_mlx/verifiers/code.py").replace(
            "from lsp_mlx.verifiers.sandbox import", "from baseline_sandbox import"
        )
    )
    sys.path.insert(0, str(folder))
    spec = importlib.util.spec_from_file_location("baseline_code", folder / "baseline_code.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["baseline_code"] = module
    spec.loader.exec_module(module)
    return module


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--baseline", default="5b98f36", help="git revision to compare with")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--programs", type=int, default=24)
    args = ap.parse_args()
    items = workload(args.programs)
    with tempfile.TemporaryDirectory() as tmp:
        baseline = load_baseline(args.baseline, Path(tmp))
        contenders = {"baseline": baseline, "current": current}
        expected = [r.passed for r in current.score_solutions(items)]
        assert [r.passed for r in baseline.score_solutions(items)] == expected
        rates: dict[str, list[float]] = {name: [] for name in contenders}
        for r in range(args.rounds):
            order = list(contenders) if r % 2 == 0 else list(reversed(contenders))
            for name in order:
                start = time.perf_counter()
                reports = contenders[name].score_solutions(items)
                rates[name].append(len(items) / (time.perf_counter() - start))
                assert [x.passed for x in reports] == expected, name
    isolation = items and current.run_tests(*items[0]).sandbox.isolation
    print(
        f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()}-core {platform.machine()} "
        f"{platform.system()}, uid {os.geteuid()}, python {platform.python_version()}, "
        f"{args.programs} programs x {args.rounds} rounds, current isolation: {isolation}"
    )
    for name, values in rates.items():
        print(
            f"{name:9s} {statistics.median(values):6.1f} programs/s (median; "
            f"min {min(values):.1f}, max {max(values):.1f})"
        )
    ratio = statistics.median(rates["current"]) / statistics.median(rates["baseline"])
    print(f"current / baseline: {ratio:.2f}")


if __name__ == "__main__":
    main()

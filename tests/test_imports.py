"""Every module imports, and the module import graph of ``lsp_mlx`` and ``tui`` has no cycle.

The graph is read from the source (AST), one edge per import statement anywhere in a module,
at module level or inside a function, except inside ``if TYPE_CHECKING:`` (never run): a
function-level import that closes a cycle is a layering fault even when it happens to run
late enough to work. ``import a.b.c`` also runs ``a/__init__`` and
``a/b/__init__``, so it adds edges to those packages too, except to the packages that hold
the importing module (they run before it). A cycle among these edges means that some module
can start executing while another of the cycle is half-initialised. ``__main__`` modules
run a program when imported and are only parsed.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest
from conftest import REPO

# the optional dependencies of pyproject.toml (extras torch and tracking)
OPTIONAL = {"torch", "transformers", "peft", "gguf", "tensorboard", "wandb", "trackio"}
# folder -> the package it installs as (pyproject.toml: tui/ is lsp_mlx.tui)
PACKAGES = {"lsp_mlx": "lsp_mlx", "tui": "lsp_mlx.tui"}


def module_files() -> dict[str, Path]:
    modules = {}
    for folder, package in PACKAGES.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            parts = list(path.relative_to(REPO / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join([package, *parts])] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(body: list[ast.stmt]) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement of ``body`` that can run (see the module docstring)."""
    found: list[ast.Import | ast.ImportFrom] = []
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            found += _runtime_imports(node.orelse)
        else:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.stmt):
                    found += _runtime_imports([child])
                elif isinstance(child, ast.ExceptHandler):
                    found += _runtime_imports(child.body)
    return found


def import_graph() -> dict[str, set[str]]:
    files = module_files()
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in _runtime_imports(ast.parse(path.read_text(encoding="utf-8")).body):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:  # relative import
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                targets = [
                    f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names
                ]
            for target in targets:
                parts = target.split(".")
                for k in range(1, len(parts) + 1):  # the module and every package above it
                    prefix = ".".join(parts[:k])
                    inside = name.startswith(prefix + ".")
                    if prefix in files and prefix != name and (k == len(parts) or not inside):
                        graph[name].add(prefix)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_graph_is_read_correctly():
    graph = import_graph()
    assert "lsp_mlx.games.base" in graph["lsp_mlx.games.lsp"]
    assert "lsp_mlx.games" not in graph["lsp_mlx.games.lsp"]  # its own package ran before it
    assert "lsp_mlx.rewards" in graph["lsp_mlx.games.lsp"]  # another package's __init__ runs
    assert "lsp_mlx.commands.train_flags" in graph["lsp_mlx.commands.train"]
    assert "lsp_mlx.games" in graph["lsp_mlx.trainer"]  # a function-level import counts
    assert "lsp_mlx.config" not in graph["lsp_mlx.games"]  # under TYPE_CHECKING: it does not
    assert "lsp_mlx.tui.state" in graph["lsp_mlx.tui.app"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


@pytest.mark.parametrize("name", sorted(m for m in module_files() if not m.endswith("__main__")))
def test_every_module_imports(name):
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as e:
        root = (e.name or "").partition(".")[0]
        if root in OPTIONAL:  # an extra of pyproject.toml that is not installed here
            pytest.skip(f"needs the optional {root} (pip install -e '.[torch]' or '.[tracking]')")
        raise

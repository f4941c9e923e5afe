"""The README and docs/ hold: every relative link and image resolves inside the repository,
nothing points outside it, and every command the README shows parses with the real CLI."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from lsp_mlx.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted([README, *(ROOT / "docs").rglob("*.md")])

# [text](target) and ![alt](target), an optional "title" after the target; <img src="...">
_MD_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HTML_SRC = re.compile(r"<(?:img|a)\b[^>]*?\b(?:src|href)=\"([^\"]+)\"", re.IGNORECASE)
_FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _without_code(text: str) -> str:
    """Markdown minus fenced blocks and inline code, where brackets are not links."""
    text = _FENCE.sub("", text)
    return re.sub(r"`[^`\n]*`", "", text)


def _links(path: Path) -> list[str]:
    text = _without_code(path.read_text(encoding="utf-8"))
    return _MD_LINK.findall(text) + _HTML_SRC.findall(text)


def _is_external(target: str) -> bool:
    return bool(re.match(r"[a-z][a-z0-9+.-]*:", target, re.IGNORECASE))


def _broken_links(path: Path, root: Path = ROOT) -> list[str]:
    broken = []
    for target in _links(path):
        if _is_external(target) or target.startswith("#"):
            continue
        local = target.split("#", 1)[0].split("?", 1)[0]
        resolved = (path.parent / local).resolve()
        if not resolved.is_relative_to(root):
            broken.append(f"{target} (outside the repository)")
        elif not resolved.exists():
            broken.append(f"{target} (no such file)")
    return broken


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_image_resolves_inside_the_repository(path: Path):
    broken = _broken_links(path)
    assert not broken, f"{path.relative_to(ROOT)}: {', '.join(broken)}"


def test_the_link_check_catches_a_broken_link_an_outside_link_and_a_broken_image(tmp_path):
    root = tmp_path / "repo"
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "algorithms.md").write_text("# spec\n", encoding="utf-8")
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "ALGORITHMS.md").write_text("# outside\n", encoding="utf-8")
    page = root / "docs" / "page.md"
    page.write_text(
        "[ok](algorithms.md) [gone](nothing-here.md) [out](../../shared/ALGORITHMS.md)\n"
        '![pic](missing.svg) <img src="also-missing.png"> [web](https://example.org) [top](#x)\n'
        "`[not a link](in-code.md)`\n",
        encoding="utf-8",
    )
    assert _broken_links(page, root) == [
        "nothing-here.md (no such file)",
        "../../shared/ALGORITHMS.md (outside the repository)",
        "missing.svg (no such file)",
        "also-missing.png (no such file)",
    ]


def test_nothing_in_the_docs_or_presets_points_outside_the_repository():
    files = [*DOCS, *sorted((ROOT / "configs").glob("*.yaml")), ROOT / "Makefile"]
    offenders = [
        str(f.relative_to(ROOT))
        for f in files
        if "../shared" in f.read_text(encoding="utf-8")
        or "ALGORITHMS.md" in f.read_text(encoding="utf-8")
    ]
    assert offenders == [], "cite docs/algorithms.md, the specification inside the repository"


def _readme_commands() -> list[str]:
    """Each command line of the README's fenced blocks, prompts and comments removed."""
    commands = []
    for block in _FENCE.findall(README.read_text(encoding="utf-8")):
        for line in block.splitlines():
            line = line.strip().removeprefix("$ ")
            if line.startswith(("lsp-mlx ", "make ")) or line in ("lsp-mlx", "make"):
                commands.append(line)
    return commands


def _makefile_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"^([A-Za-z][\w.-]*)\s*:(?!=)", text, re.MULTILINE))


def test_the_readme_shows_the_two_commands_and_the_next_steps():
    commands = [" ".join(shlex.split(c, comments=True)) for c in _readme_commands()]
    assert "make demo" in commands and "make test" in commands
    for sub in ("tui", "chat", "export", "train"):
        assert any(c.startswith(f"lsp-mlx {sub} ") for c in commands), sub


@pytest.mark.parametrize("line", _readme_commands())
def test_every_readme_command_parses(line: str, capsys: pytest.CaptureFixture[str]):
    words = shlex.split(line, comments=True)
    if words[0] == "make":
        missing = [t for t in words[1:] if "=" not in t and t not in _makefile_targets()]
        assert missing == [], f"{line!r}: no such Makefile target"
        return
    try:
        args = build_parser().parse_args(words[1:])
    except SystemExit as e:
        pytest.fail(f"{line!r} does not parse (exit {e.code}): {capsys.readouterr().err.strip()}")
    assert getattr(args, "command", None), f"{line!r} names no subcommand"


def test_a_wrong_flag_in_a_command_would_be_caught():
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["export", "--adaptr", "runs/x", "--out", "y"])
    assert e.value.code == 2

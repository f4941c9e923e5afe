"""The start screen of a bare ``lsp-mlx tui``: pick a preset to train, or a recent run to follow."""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import yaml
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Header, Label, OptionList
from textual.widgets.option_list import Option

import lsp_mlx
from lsp_mlx.control import pid_alive
from lsp_mlx.events import EVENTS_FILE


@dataclass
class RunSummary:
    path: Path
    status: str
    iteration: int | None
    total: int | None
    modified: float


def preset_dirs(cwd: Path | None = None) -> list[Path]:
    """``configs/`` of the working directory, then of the source checkout (if installed from one)."""
    cwd = cwd or Path.cwd()
    candidates = [cwd / "configs", Path(lsp_mlx.__file__).resolve().parents[1] / "configs"]
    seen: list[Path] = []
    for folder in candidates:
        if folder.is_dir() and folder.resolve() not in [s.resolve() for s in seen]:
            seen.append(folder)
    return seen


def find_presets(dirs: list[Path]) -> list[Path]:
    presets: list[Path] = []
    for folder in dirs:
        presets.extend(sorted(folder.glob("*.yaml")) + sorted(folder.glob("*.yml")))
    return presets


def find_runs(
    presets: list[Path],
    cwd: Path | None = None,
    limit: int = 15,
    extra: list[Path] | None = None,
) -> list[RunSummary]:
    """Run folders (with events.jsonl), newest first: in or under ``./runs``, the working
    directory itself, the folders in ``extra`` (``--runs-dir``) and where the presets put theirs."""
    cwd = cwd or Path.cwd()
    roots = {cwd / "runs", cwd, *(Path(p) for p in extra or [])}
    for preset in presets:
        run_dir = _preset_run_dir(preset)
        if run_dir is not None:
            path = Path(run_dir) if Path(run_dir).is_absolute() else cwd / run_dir
            roots.update({path, path.parent})
    folders: dict[Path, Path] = {}
    for root in roots:
        for events in [root / EVENTS_FILE, *root.glob(f"*/{EVENTS_FILE}")]:
            if events.is_file():
                folders[events.parent.resolve()] = events.parent
    runs = [summarize_run(folder) for folder in folders.values()]
    runs.sort(key=lambda r: r.modified, reverse=True)
    return runs[:limit]


def summarize_run(run_dir: Path) -> RunSummary:
    """Status and progress from the first and the last lines of events.jsonl (cheap for big files)."""
    path = run_dir / EVENTS_FILE
    status, iteration, total, pid = "unknown", None, None, None
    try:
        modified = path.stat().st_mtime
        with open(path, "rb") as fh:
            head = fh.readline()
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(size - 32_000, 0))
            tail = fh.read().splitlines()
    except OSError:
        return RunSummary(run_dir, "unreadable", None, None, 0.0)
    for line in [head, *tail]:
        try:
            event = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if not isinstance(event, dict):
            continue
        if event.get("type") == "run_start":
            total, pid, status = event.get("iterations"), event.get("pid"), "running"
        elif event.get("type") == "run_end":
            status = str(event.get("status", "finished"))
        if isinstance(event.get("iteration"), int):
            iteration = event["iteration"]
    if status == "running" and not (isinstance(pid, int) and pid_alive(pid)):
        status = "interrupted"
    return RunSummary(run_dir, status, iteration, total, modified)


def _preset_data(preset: Path) -> dict[str, object]:
    try:
        data = yaml.safe_load(preset.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def _preset_run_dir(preset: Path) -> str | None:
    train = _preset_data(preset).get("train")
    run_dir = train.get("run_dir") if isinstance(train, dict) else None
    return run_dir if isinstance(run_dir, str) else None


def preset_model(preset: Path) -> str | None:
    """The model a preset names (``model.path``), None when it names none and needs ``--model``."""
    model = _preset_data(preset).get("model")
    path = model.get("path") if isinstance(model, dict) else None
    return str(path) if path else None


def preset_needs(preset: Path) -> str | None:
    """Why a preset does not run as is from the start screen, or None when it does."""
    model = preset_model(preset)
    if model is None:
        return "needs --model"
    if model != "default" and not Path(model).expanduser().exists() and "/" in model:
        return f"needs {model} in the Hub cache"
    return None


def preset_description(preset: Path) -> str:
    """The first sentence of the preset's leading comment block, whole (it may span lines)."""
    lines: list[str] = []
    try:
        text = preset.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("# ").strip())
    text = " ".join(x for x in lines if x)
    end = re.search(r"[.!?](\s|$)", text)
    return text[: end.start() + 1] if end else text


class StartScreen(ModalScreen[tuple[str, Path]]):
    """Dismisses with ("config", preset) to train it, or ("attach", run_dir) to follow a run."""

    BINDINGS = [Binding("q,escape", "leave", "Quit"), Binding("tab", "focus_next", "Switch list")]

    def __init__(
        self, presets: list[Path], runs: list[RunSummary], now: float | None = None
    ) -> None:
        super().__init__()
        self.presets, self.runs = presets, runs
        self.now = time.time() if now is None else now

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        with Vertical(id="start-body"):
            yield Label(
                "Train a preset (Enter starts `lsp-mlx train` in a fresh run folder)",
                classes="start-heading",
            )
            yield OptionList(
                *[Option(_preset_label(p), id=f"config:{i}") for i, p in enumerate(self.presets)]
                or [Option("no presets found in configs/", disabled=True)],
                id="presets",
            )
            yield Label("Follow a recent run", classes="start-heading")
            yield OptionList(
                *[Option(self._run_label(r), id=f"attach:{i}") for i, r in enumerate(self.runs)]
                or [Option("no runs yet", disabled=True)],
                id="runs",
            )
        yield Footer()

    def _run_label(self, run: RunSummary) -> Text:
        progress = f"{run.iteration or 0}/{run.total or '?'}"
        age = _age(self.now - run.modified)
        text = Text(f"{_relative(run.path):<32} ")
        text.append(f"{run.status:<11}", style="green" if run.status == "running" else "")
        text.append(f" it {progress:<9} {age} ago", style="dim")
        return text

    def action_leave(self) -> None:
        self.app.exit(0)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        kind, _, index = (event.option.id or "").partition(":")
        if kind == "config":
            preset = self.presets[int(index)]
            if preset_model(preset) is None:
                self.notify(
                    f"{_relative(preset)} names no model: run "
                    f"lsp-mlx tui --config {_relative(preset)} --model PATH",
                    title="Needs --model",
                    severity="warning",
                    timeout=10,
                )
                return
            self.dismiss(("config", preset))
        elif kind == "attach":
            self.dismiss(("attach", self.runs[int(index)].path))


def _preset_label(preset: Path) -> Text:
    """The preset's path, what it needs to run (if anything), and its whole description below."""
    text = Text(_relative(preset), style="bold")
    needs = preset_needs(preset)
    if needs:
        text.append(f"  ({needs})", style="yellow")
    description = preset_description(preset)
    if description:
        text.append("\n  " + description, style="dim")  # OptionList wraps it to the width
    return text


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit}"
    return f"{max(int(seconds), 0)} s"

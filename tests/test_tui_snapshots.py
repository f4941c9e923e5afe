"""Snapshot tests (pytest-textual-snapshot) of every view on the run recorded from the real model.

The data has fixed times and the app gets a fixed clock, so nothing in a picture depends on
when or where it is drawn. After an intended change to the look, review the report and
accept with ``pytest tests/test_tui_snapshots.py --snapshot-update``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lsp_mlx.events import read_events
from lsp_mlx.tui.app import DashboardApp
from lsp_mlx.tui.source import AttachedRun

RECORDED = Path(__file__).parent / "data" / "tui_events.jsonl"  # invented: the crash case
REAL = Path(__file__).parent / "data" / "recorded_run" / "events.jsonl"  # tests/data/record_run.py
NOW = 1_700_000_500.0


def app_for(tmp_path: Path, events: list[dict[str, Any]] | None = None) -> DashboardApp:
    events = read_events(RECORDED) if events is None else events
    run_dir = tmp_path / "runs" / "demo"  # the header shows the last two parts: stable
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    app = DashboardApp(AttachedRun(run_dir), clock=lambda: NOW)
    return app


async def _settle(pilot: Any) -> None:
    await pilot.pause()


# Every view at the smallest supported size and at a common one, from the real recorded run.
VIEWS = {
    "dashboard": [],
    "plots": ["o"],
    "games": ["g"],
    "log": ["l"],
    "game_detail": ["g", "enter"],
    "help": ["question_mark"],
}


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
@pytest.mark.parametrize("view", list(VIEWS))
def test_view(snap_compare: Any, tmp_path: Path, view: str, size: tuple[int, int]) -> None:
    app = app_for(tmp_path, read_events(REAL))
    assert snap_compare(app, press=VIEWS[view], terminal_size=size, run_before=_settle)


def test_crash_banner_80x24(snap_compare: Any, tmp_path: Path) -> None:
    events = [
        e
        for e in read_events(RECORDED)
        if e.get("iteration", 0) <= 3 and e["type"] not in ("run_end", "state")
    ]
    events.append(
        {
            "v": 1,
            "type": "run_end",
            "time": events[-1]["time"] + 2,
            "status": "error",
            "error": "RuntimeError: [metal] out of memory",
            "traceback": 'Traceback (most recent call last):\n  File "lsp_mlx/trainer.py", line 212, in run\n'
            "    stats = backend.train_step(rollout.samples, t.beta, t.kl_estimator)\n"
            "RuntimeError: [metal] out of memory",
        }
    )
    assert snap_compare(app_for(tmp_path, events), terminal_size=(80, 24), run_before=_settle)

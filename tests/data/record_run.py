"""Records ``tests/data/recorded_run/events.jsonl``: a real demo run for the TUI tests.

Runs the real trainer on the embedded model, exactly as a user would::

    python -m lsp_mlx train --config configs/demo.yaml --iterations 3 --seed 0 --run-dir TMP

and keeps its ``events.jsonl`` with three changes, so the pictures drawn from it do not depend
on when or where it was recorded: the times are shifted to start at `T0` (their differences,
so every duration, are kept), the temporary run folder is written as ``runs/demo``, and the
home folder as ``~``. `RECORDING` (the same folder) says when, where and how long.

Run it from the repository root: ``.venv/bin/python tests/data/record_run.py`` (a few CPU
minutes). The snapshot tests then need ``--snapshot-update``, after looking at the report.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(__file__).with_name("recorded_run")
T0 = 1_700_000_000.0
COMMAND = ["train", "--config", "configs/demo.yaml", "--iterations", "3", "--seed", "0"]


def normalize(events: list[dict[str, Any]], run_dir: Path) -> list[dict[str, Any]]:
    """The events with times from `T0`, the run folder as runs/demo and the home folder as ~."""
    shift = T0 - float(events[0]["time"])
    text = json.dumps(events)
    for path, name in ((str(run_dir.resolve()), "runs/demo"), (str(run_dir), "runs/demo")):
        text = text.replace(json.dumps(path)[1:-1], name)
    text = text.replace(json.dumps(str(Path.home()))[1:-1], "~")
    out = json.loads(text)
    for event in out:
        if isinstance(event.get("time"), (int, float)):
            event["time"] = round(event["time"] + shift, 3)
    return out


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "demo"
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "lsp_mlx", *COMMAND, "--run-dir", str(run_dir)],
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        seconds = time.monotonic() - started
        if result.returncode != 0:
            print(f"record_run: the trainer failed (exit {result.returncode})", file=sys.stderr)
            return 1
        lines = (run_dir / "events.jsonl").read_text(encoding="utf-8").splitlines()
        events = normalize([json.loads(line) for line in lines if line.strip()], run_dir)
    OUT.mkdir(exist_ok=True)
    (OUT / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    machine = f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPU cores"
    (OUT / "RECORDING").write_text(
        f"lsp-mlx {' '.join(COMMAND)} --run-dir runs/demo\n"
        f"recorded {when} on {machine} in {seconds:.0f} s by tests/data/record_run.py\n"
    )
    print(f"wrote {OUT / 'events.jsonl'} ({len(events)} events, {seconds:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The run's event stream: ``RUN_DIR/events.jsonl``.

One JSON object per line, each with ``v`` (schema version), ``type``, ``time`` (unix
seconds) and, where it applies, ``iteration``. The trainer is the only writer; the TUI,
the exporter and the tests read it. Types and their fields (schema version 1):

- ``run_start``: ``config`` (resolved config dict), ``model`` (path), ``base_model``,
  ``backend``, ``device``, ``blas``, ``start_iteration``, ``iterations``, ``pid``, ``resumed``.
- ``game``: the fields of `lsp_mlx.records.Game`.
- ``metrics``: ``metrics`` (flat dict name -> float; names such as ``reward/solver_mean``,
  ``kl``, ``loss``, ``time/generate``; see `lsp_mlx.trainer`).
- ``diagnostics``: ``diagnostics`` (flat dict) from the self-play health checks.
- ``checkpoint``: ``path``, ``reason`` ("periodic", "signal", "control", "final").
- ``state``: ``state`` ("running", "paused", "stopping").
- ``log``: ``level`` ("info", "warning", "error"), ``message``.
- ``run_end``: ``status`` ("finished", "stopped", "error"), and for errors ``error``
  and ``traceback`` (the last lines).

Readers must ignore unknown types and fields, and a last line that is still being written.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

SCHEMA_VERSION = 1
EVENTS_FILE = "events.jsonl"


class EventWriter:
    """Appends events to ``events.jsonl``, flushing each line so readers see it at once."""

    def __init__(self, run_dir: str | Path, enabled: bool = True) -> None:
        self.path = Path(run_dir) / EVENTS_FILE
        self.enabled = enabled
        self._fh: IO[str] | None = None
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "a", encoding="utf-8")

    def emit(self, type: str, iteration: int | None = None, **fields: Any) -> dict[str, Any]:
        event: dict[str, Any] = {"v": SCHEMA_VERSION, "type": type, "time": time.time()}
        if iteration is not None:
            event["iteration"] = iteration
        event.update(fields)
        if self._fh is not None:
            self._fh.write(json.dumps(event, default=_jsonable) + "\n")
            self._fh.flush()
        return event

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def read_events(path: str | Path) -> list[dict[str, Any]]:
    """All complete events of a file (a torn last line is skipped)."""
    path = Path(path)
    if path.is_dir():
        path = path / EVENTS_FILE
    tail = EventTail(path)
    return tail.read_new()


class EventTail:
    """Incrementally reads a growing ``events.jsonl``: each call returns the new complete lines."""

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        self.path = path / EVENTS_FILE if path.is_dir() else path
        self._offset = 0
        self._partial = b""

    def read_new(self) -> list[dict[str, Any]]:
        try:
            size = os.path.getsize(self.path)
        except FileNotFoundError:
            return []
        if size < self._offset:  # the file was replaced: start again
            self._offset, self._partial = 0, b""
        if size == self._offset:
            return []
        with open(self.path, "rb") as fh:
            fh.seek(self._offset)
            data = fh.read()
        self._offset += len(data)
        data = self._partial + data
        lines = data.split(b"\n")
        self._partial = lines.pop()  # b"" when the data ended with a newline
        events = []
        for line in lines:
            if not line.strip():
                continue
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return events

    def __iter__(self) -> Iterator[dict[str, Any]]:
        yield from self.read_new()

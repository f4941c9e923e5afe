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
Games written before the role-neutral names carry ``challenger_reward`` and
``challenger_advantage``; `lsp_mlx.records.Game.from_dict` reads both.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
EVENTS_FILE = "events.jsonl"


Listener = Callable[[dict[str, Any]], Any]


class EventWriter:
    """Appends events to ``events.jsonl``, one whole line per ``write``, and passes each on.

    Each line goes out in one ``os.write`` on an append-only descriptor, so a reader (or a
    crash) sees whole lines only; a write that fails part-way (a full disk) is cut back to the
    last whole line before the error is raised. ``listeners`` (e.g. experiment trackers) get
    every event dict after it is written; one that raises costs a warning line and is dropped,
    never the run.
    """

    def __init__(
        self, run_dir: str | Path, enabled: bool = True, listeners: Iterable[Listener] = ()
    ) -> None:
        self.path = Path(run_dir) / EVENTS_FILE
        self.enabled = enabled
        self.listeners: list[Listener] = list(listeners) if enabled else []
        self._fd: int | None = None
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def emit(self, type: str, iteration: int | None = None, **fields: Any) -> dict[str, Any]:
        event: dict[str, Any] = {"v": SCHEMA_VERSION, "type": type, "time": time.time()}
        if iteration is not None:
            event["iteration"] = iteration
        event.update(fields)
        if self._fd is not None:
            self._append((json.dumps(event, default=_jsonable) + "\n").encode())
            for listener in list(self.listeners):
                try:
                    listener(event)
                except Exception as e:  # a tracker's failure must not cost the run
                    self._drop(listener, e)
        return event

    def _append(self, line: bytes) -> None:
        assert self._fd is not None
        start = os.lseek(self._fd, 0, os.SEEK_END)
        try:
            done = os.write(self._fd, line)
            while done < len(line):
                done += os.write(self._fd, line[done:])
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, start)
            raise

    def _drop(self, listener: Listener, error: Exception) -> None:
        self.listeners.remove(listener)
        name = getattr(listener, "name", type(listener).__name__)
        print(
            f"lsp-mlx: warning: {name} failed ({type(error).__name__}: {error}) and no longer "
            "receives events; the run goes on and events.jsonl keeps everything",
            file=sys.stderr,
            flush=True,
        )

    def close(self) -> None:
        for listener in self.listeners:
            close = getattr(listener, "close", None)
            if close is not None:
                try:
                    close()
                except Exception as e:
                    self._drop(listener, e)
        self.listeners = []
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def cut_events(path: str | Path, offset: int | None = None) -> None:
    """Keep the first ``offset`` bytes of an events file (None: every whole line), atomically.

    A resume drops what was written after the checkpoint it starts from (those iterations
    are replayed) and any torn last line.
    """
    path = Path(path)
    if not path.exists():
        return
    data = path.read_bytes()
    kept = data[:offset] if offset is not None else data
    kept = kept[: kept.rfind(b"\n") + 1]
    if kept != data:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(kept)
        os.replace(tmp, path)


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
            except ValueError:  # not JSON, or not UTF-8: a damaged line costs only itself
                continue
        return events

    def __iter__(self) -> Iterator[dict[str, Any]]:
        yield from self.read_new()

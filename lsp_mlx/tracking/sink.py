"""The one sink from the event stream to an experiment tracker.

A `TrackerSink` is called with every event the trainer writes to ``events.jsonl`` (it is an
`lsp_mlx.events.EventWriter` listener) and, by ``lsp-mlx report``, with every event read back
from that file: live and replayed runs go through the same code and give the same values.

- ``run_start``: opens the tracker run with the resolved config as hyperparameters.
- ``game``: kept until the iteration's ``metrics`` event.
- ``metrics``: the iteration's scalars (`names.iteration_scalars`) and its games as a table,
  at step = iteration.
- ``diagnostics``: the health checks under ``diagnostics/``, at the same step.
- ``run_end``: finishes the tracker run; a later ``run_start`` (a resumed run in the same
  file) opens it again and the tracker continues the same run.

A tracker that raises (network down, disk full) costs one warning line on stderr and stops
receiving events; the training run goes on. ``strict=True`` (replay) lets the error through.
"""

from __future__ import annotations

import sys
from typing import Any, Protocol

from lsp_mlx.records import Game
from lsp_mlx.tracking.names import diagnostics_scalars, game_rows, iteration_scalars


class Tracker(Protocol):
    """One experiment tracker's run: TensorBoard, Weights & Biases or Trackio."""

    name: str

    def start(self, config: dict[str, Any], resumed: bool, start_iteration: int) -> None: ...

    def log(self, scalars: dict[str, float], step: int) -> None: ...

    def log_games(self, rows: list[list[Any]], step: int) -> None: ...

    def finish(self) -> None: ...

    def describe(self) -> str: ...


class TrackerSink:
    """Feeds one tracker from the run's events; see the module docstring."""

    def __init__(self, tracker: Tracker, strict: bool = False) -> None:
        self.tracker = tracker
        self.strict = strict
        self.failed = False
        self.started = False
        self.iterations = 0  # iterations logged, for the report's summary
        self._games: list[Game] = []

    def __call__(self, event: dict[str, Any]) -> None:
        if self.failed:
            return
        try:
            self._handle(event)
        except Exception as e:
            if self.strict:
                raise
            self.failed = True
            print(
                f"lsp-mlx: warning: the {self.tracker.name} tracker failed "
                f"({type(e).__name__}: {e}); it gets no more events, the run goes on",
                file=sys.stderr,
                flush=True,
            )
            self._finish_quietly()

    def close(self) -> None:
        """Finish the tracker run (called by `EventWriter.close`)."""
        if self.failed:
            return
        try:
            self._finish()
        except Exception as e:
            if self.strict:
                raise
            self.failed = True
            print(
                f"lsp-mlx: warning: the {self.tracker.name} tracker failed to finish "
                f"({type(e).__name__}: {e})",
                file=sys.stderr,
                flush=True,
            )

    def _handle(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "run_start":
            if not self.started:
                self.tracker.start(
                    event.get("config") or {},
                    resumed=bool(event.get("resumed")),
                    start_iteration=int(event.get("start_iteration") or 1),
                )
                self.started = True
            return
        if kind == "run_end":
            self._finish()
            return
        if kind not in ("game", "metrics", "diagnostics"):
            return
        if not self.started:  # a stream without run_start: open the run with no config
            self.tracker.start({}, resumed=False, start_iteration=1)
            self.started = True
        if kind == "game":
            self._games.append(Game.from_dict(event))
        elif kind == "metrics":
            step = int(event["iteration"])
            games = [g for g in self._games if g.iteration == step]
            self._games = []
            self.tracker.log(iteration_scalars(event.get("metrics") or {}, games), step)
            rows = game_rows(games)
            if rows:
                self.tracker.log_games(rows, step)
            self.iterations += 1
        else:
            scalars = diagnostics_scalars(event.get("diagnostics") or {})
            if scalars:
                self.tracker.log(scalars, int(event["iteration"]))

    def _finish(self) -> None:
        if self.started:
            self.started = False
            self.tracker.finish()

    def _finish_quietly(self) -> None:
        try:
            self._finish()
        except Exception:
            pass  # the tracker already failed and was reported once

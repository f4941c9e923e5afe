"""What the dashboard knows about a run, built only from its events (`lsp_mlx.events`).

`RunState.apply` folds one event into plain Python data: the run's facts from
``run_start``, a time series per metric name, the games, checkpoints, log lines and the
final status. The widgets read it; nothing here imports Textual, MLX or torch, so it is
tested on its own. Missing fields and unknown event types are ignored, because the event
schema grows and the TUI must keep working against older and newer trainers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from lsp_mlx.records import Game

# Statuses while the trainer process is (as far as we know) alive.
LIVE_STATUSES = ("starting", "running", "paused", "stopping")
# How much history to keep: bounded so a week-long run cannot exhaust memory.
MAX_POINTS = 100_000
MAX_GAMES = 20_000
MAX_LOGS = 5_000


@dataclass
class LogLine:
    time: float | None
    level: str  # "debug", "info", "warning", "error"
    message: str


@dataclass
class Checkpoint:
    iteration: int | None
    time: float | None
    path: str
    reason: str


@dataclass
class RunState:
    """The run as seen through its events; `generation` changes when views must start over."""

    generation: int = 0
    status: str = "waiting"  # waiting, running, paused, stopping, finished, stopped, error, lost
    info: dict[str, Any] = field(default_factory=dict)
    iteration: int | None = None
    total: int | None = None
    start_time: float | None = None
    end_time: float | None = None
    last_time: float | None = None
    session_iterations: int = 0  # metrics events since the last run_start (for the ETA)
    series: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    latest: dict[str, float] = field(default_factory=dict)
    games: list[Game] = field(default_factory=list)
    logs: list[LogLine] = field(default_factory=list)
    checkpoints: list[Checkpoint] = field(default_factory=list)
    diagnostics: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    traceback: list[str] = field(default_factory=list)
    games_seen: int = 0  # games ever appended; games[-1] is game number games_seen - 1
    logs_seen: int = 0  # log lines ever appended
    # The trainer's warnings and errors, pinned on the dashboard until dismissed.
    problems: list[LogLine] = field(default_factory=list)
    problems_dismissed: int = 0  # problems[:problems_dismissed] were dismissed
    metrics_version: int = 0
    version: int = 0  # bumps on any change

    # ----------------------------------------------------------------- queries
    @property
    def live(self) -> bool:
        return self.status in LIVE_STATUSES

    @property
    def ended(self) -> bool:
        return self.status in ("finished", "stopped", "error", "lost")

    def values(self, name: str) -> list[float]:
        return [v for _, v in self.series.get(name, ())]

    def points(self, name: str) -> tuple[list[int], list[float]]:
        pts = self.series.get(name, ())
        return [i for i, _ in pts], [v for _, v in pts]

    def game(self, number: int) -> Game | None:
        """The game with absolute number ``number`` (0-based, over the whole run), if still kept."""
        position = number - (self.games_seen - len(self.games))
        return self.games[position] if 0 <= position < len(self.games) else None

    def new_games(self, seen: int) -> list[tuple[int, Game]]:
        """(number, game) for games after the first ``seen``, for views that append rows."""
        first = max(seen, self.games_seen - len(self.games))
        return [(n, self.game(n)) for n in range(first, self.games_seen)]  # type: ignore[misc]

    def new_logs(self, seen: int) -> list[LogLine]:
        count = min(self.logs_seen - seen, len(self.logs))
        return self.logs[len(self.logs) - count :] if count > 0 else []

    def peak_memory_gb(self) -> float | None:
        values = self.values("memory/peak_gb")
        return max(values) if values else None

    def elapsed(self, now: float) -> float | None:
        """Seconds since run_start; frozen at the end of the run."""
        if self.start_time is None:
            return None
        if self.end_time is not None:
            end = self.end_time
        elif self.status == "lost":
            end = self.last_time or self.start_time
        else:
            end = now
        return max(end - self.start_time, 0.0)

    def seconds_per_iteration(self) -> float | None:
        """Mean of the last few ``time/iteration`` values, else wall time per iteration so far."""
        recent = self.values("time/iteration")[-5:]
        if recent:
            return sum(recent) / len(recent)
        if self.session_iterations and self.start_time is not None and self.last_time is not None:
            return max(self.last_time - self.start_time, 0.0) / self.session_iterations
        return None

    def eta(self) -> float | None:
        """Seconds until the last iteration, or None when unknown, paused or over."""
        if self.status not in ("running", "starting") or self.total is None:
            return None
        per = self.seconds_per_iteration()
        if per is None:
            return None
        return max(self.total - (self.iteration or 0), 0) * per

    # ----------------------------------------------------------------- updates
    def apply_all(self, events: list[dict[str, Any]]) -> bool:
        """Fold a batch of events; True when anything changed."""
        before = self.version
        for event in events:
            self.apply(event)
        return self.version != before

    def apply(self, event: dict[str, Any]) -> None:
        if not isinstance(event, dict):
            return
        kind = event.get("type")
        when = _number(event.get("time"))
        if when is not None:
            self.last_time = when if self.last_time is None else max(self.last_time, when)
        handler = getattr(self, f"_on_{kind}", None) if isinstance(kind, str) else None
        if handler is None:
            return  # unknown types are for newer readers
        handler(event, when)
        self.version += 1

    def note(self, level: str, message: str, when: float | None = None) -> None:
        """A line from the TUI itself (control commands sent, the child exiting): Log only."""
        self._log(when, level, message, pin=False)
        self.version += 1

    def pinned(self) -> list[tuple[LogLine, int]]:
        """The problems not dismissed yet, each message once with how often it came, oldest first."""
        counts: dict[tuple[str, str], list[LogLine | int]] = {}
        for line in self.problems[self.problems_dismissed :]:
            entry = counts.setdefault((line.level, line.message), [line, 0])
            entry[0], entry[1] = line, int(entry[1]) + 1  # type: ignore[call-overload]
        return [(line, count) for line, count in counts.values()]  # type: ignore[misc]

    def dismiss_problems(self) -> int:
        """Unpin every problem shown so far; returns how many were dismissed."""
        count = len(self.problems) - self.problems_dismissed
        self.problems_dismissed = len(self.problems)
        self.version += 1
        return count

    def mark_lost(
        self, message: str, traceback: list[str], when: float | None = None, status: str = "lost"
    ) -> None:
        """The trainer process is gone and wrote no run_end: show why, keep everything else.

        ``status`` is "lost" for a run we only follow, "error" for a child that crashed.
        """
        if self.ended:
            return
        self.status = status
        self.error = message if status != "stopped" else None
        self.traceback = list(traceback)
        self.end_time = when if when is not None else self.last_time
        level = "warning" if status == "stopped" else "error"
        self._log(when, level, message)
        for line in traceback:
            self._log(when, level, "  " + line, pin=False)
        self.version += 1

    # ----------------------------------------------------------------- handlers
    def _on_run_start(self, event: dict[str, Any], when: float | None) -> None:
        if not event.get("resumed") and (self.games or self.series or self.info):
            # A new run in the same file: start over rather than mix two runs.
            self._reset()
        self.info = dict(event)
        self.status = "running"
        self.total = _int(event.get("iterations"))
        self.start_time = when
        self.end_time = None
        self.error = None
        self.traceback = []
        self.session_iterations = 0
        what = "resumed" if event.get("resumed") else "started"
        self._log(
            when, "info", f"run {what}: {event.get('model', '?')} on {event.get('backend', '?')}"
        )

    def _on_game(self, event: dict[str, Any], when: float | None) -> None:
        try:
            game = Game.from_dict(event)
        except (TypeError, ValueError, KeyError) as e:
            self._log(when, "warning", f"unreadable game event: {e}")
            return
        # A resumed run replays iterations after its checkpoint: drop the superseded games.
        dropped = False
        while self.games and (self.games[-1].iteration, self.games[-1].index) >= (
            game.iteration,
            game.index,
        ):
            self.games.pop()
            self.games_seen -= 1
            dropped = True
        if dropped:
            self.generation += 1
        self.games.append(game)
        self.games_seen += 1
        _trim(self.games, MAX_GAMES)
        self._see_iteration(game.iteration)

    def _on_metrics(self, event: dict[str, Any], when: float | None) -> None:
        metrics = event.get("metrics")
        if not isinstance(metrics, dict):
            return
        iteration = _int(event.get("iteration"))
        if iteration is None:
            iteration = (self.iteration or 0) + 1
        for name, raw in metrics.items():
            if isinstance(raw, bool) or not isinstance(raw, (int, float)):
                continue
            self.latest[str(name)] = float(raw)  # NaN stays visible as the latest value
            value = _number(raw)
            if value is None:
                continue  # a plot cannot draw NaN or inf
            points = self.series.setdefault(str(name), [])
            while points and points[-1][0] >= iteration:  # replayed after a resume
                points.pop()
            points.append((iteration, value))
            _trim(points, MAX_POINTS)
        self.session_iterations += 1
        self.metrics_version += 1
        self._see_iteration(iteration, force=True)

    def _on_diagnostics(self, event: dict[str, Any], when: float | None) -> None:
        diagnostics = event.get("diagnostics")
        if isinstance(diagnostics, dict):
            self.diagnostics = dict(diagnostics)

    def _on_checkpoint(self, event: dict[str, Any], when: float | None) -> None:
        ckpt = Checkpoint(
            iteration=_int(event.get("iteration")),
            time=when,
            path=str(event.get("path", "")),
            reason=str(event.get("reason", "")),
        )
        self.checkpoints.append(ckpt)
        where = f" at iteration {ckpt.iteration}" if ckpt.iteration is not None else ""
        self._log(when, "info", f"checkpoint saved{where} ({ckpt.reason}): {ckpt.path}")

    def _on_state(self, event: dict[str, Any], when: float | None) -> None:
        state = event.get("state")
        if isinstance(state, str) and not self.ended:
            self.status = state
            self._log(when, "info", f"trainer is {state}")

    def _on_log(self, event: dict[str, Any], when: float | None) -> None:
        self._log(when, str(event.get("level", "info")), str(event.get("message", "")))

    def _on_run_end(self, event: dict[str, Any], when: float | None) -> None:
        status = str(event.get("status", "finished"))
        self.status = status if status in ("finished", "stopped", "error") else "finished"
        self.end_time = when
        if self.status == "error":
            self.error = str(event.get("error") or "the trainer failed")
            tb = event.get("traceback") or []
            self.traceback = tb.splitlines() if isinstance(tb, str) else [str(x) for x in tb]
            self._log(when, "error", f"trainer crashed: {self.error}")
            for line in self.traceback:
                self._log(when, "error", "  " + line, pin=False)
        else:
            self._log(when, "info", f"run {self.status}")

    # ----------------------------------------------------------------- helpers
    def _see_iteration(self, iteration: int | None, force: bool = False) -> None:
        if iteration is None:
            return
        if force or self.iteration is None or iteration > self.iteration:
            self.iteration = iteration

    def _log(self, when: float | None, level: str, message: str, pin: bool = True) -> None:
        for line in message.splitlines() or [""]:
            self.logs.append(LogLine(when, level, line))
            self.logs_seen += 1
        _trim(self.logs, MAX_LOGS)
        if pin and level in ("warning", "error"):
            self.problems.append(LogLine(when, level, message))
            if len(self.problems) > MAX_LOGS:
                dropped = len(self.problems) - MAX_LOGS + MAX_LOGS // 10
                del self.problems[:dropped]
                self.problems_dismissed = max(self.problems_dismissed - dropped, 0)

    def _reset(self) -> None:
        generation, version = self.generation + 1, self.version
        self.__init__()  # type: ignore[misc]
        self.generation, self.version = generation, version


def _trim(items: list[Any], limit: int) -> None:
    """Keep at most ``limit`` newest items, dropping a tenth at a time so trimming is rare."""
    if len(items) > limit:
        del items[: len(items) - limit + limit // 10]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return int(value)

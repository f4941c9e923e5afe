"""Where the dashboard's events come from: a run folder it follows, or a trainer it started.

Both kinds tail ``RUN_DIR/events.jsonl`` with `lsp_mlx.events.EventTail` and control the
trainer by dropping command files into ``RUN_DIR/control/`` (`lsp_mlx.control.send`), so
attaching to a headless ``lsp-mlx train`` and watching a child the TUI launched behave
the same. `LaunchedRun` starts ``python -m lsp_mlx train ...`` (the headless code path,
unchanged) with its output in ``RUN_DIR/train.log``, which is where a crash's traceback
is found when the trainer died before it could write ``run_end``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from lsp_mlx.control import pid_alive, send
from lsp_mlx.events import EVENTS_FILE, EventTail

TRAIN_LOG = "train.log"


def tail_lines(path: Path, count: int, start: int = 0) -> list[str]:
    """The last ``count`` non-empty lines of a text file from byte ``start`` on ([] if missing)."""
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(start, size - 64_000))  # a traceback fits in the last 64 kB
            data = fh.read()
    except OSError:
        return []
    lines = [line.rstrip() for line in data.decode("utf-8", "replace").splitlines()]
    return [line for line in lines if line.strip()][-count:]


class RunSource:
    """A run folder the dashboard reads events from and sends commands to."""

    launched = False  # True when this TUI owns the trainer process

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.tail = EventTail(self.run_dir / EVENTS_FILE)
        self.label = str(run_dir)

    def poll(self) -> list[dict[str, Any]]:
        """New events; a damaged file becomes one warning event (the dashboard never crashes)."""
        try:
            return self.tail.read_new()
        except (OSError, ValueError) as e:
            message = f"cannot read {self.tail.path} ({type(e).__name__}: {str(e)[:80]})"
            return [{"type": "log", "level": "warning", "message": message}]

    def send(self, command: str) -> Path:
        return send(self.run_dir, command)

    def process_alive(self, info: dict[str, Any]) -> bool | None:
        """Whether the trainer still runs: True, False, or None when it cannot be known."""
        pid = info.get("pid")
        return pid_alive(pid) if isinstance(pid, int) and pid > 0 else None

    def crash_lines(self, count: int = 12) -> list[str]:
        return tail_lines(self.run_dir / TRAIN_LOG, count)


class AttachedRun(RunSource):
    """Follows ``RUN_DIR/events.jsonl`` of a run that is going on or finished."""


class LaunchedRun(RunSource):
    """Starts ``lsp-mlx train`` as a child process and follows its run folder."""

    launched = True

    def __init__(
        self,
        train_args: list[str],
        run_dir: str | Path,
        *,
        resume: bool = False,
        python: str = sys.executable,
        env: dict[str, str] | None = None,
    ) -> None:
        super().__init__(run_dir)
        self.command = [python, "-m", "lsp_mlx", "train", *train_args]
        self.resume = resume
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None
        self._log_start = 0
        self.label = f"{run_dir} (launched)"

    def start(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if not self.resume:
            # Events of an earlier run in this folder are not this run's: skip past them.
            self.tail.read_new()
        log_path = self.run_dir / TRAIN_LOG
        env = dict(os.environ if self.env is None else self.env)
        env.setdefault(
            "PYTHONUNBUFFERED", "1"
        )  # so train.log has the traceback even on a hard crash
        with open(log_path, "ab") as log:
            self._log_start = log.tell()
            # A session of its own: keys typed into the TUI's terminal never signal the trainer;
            # the TUI stops it through the control channel instead.
            self.process = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def process_alive(self, info: dict[str, Any]) -> bool | None:
        return self.process is not None and self.process.poll() is None

    def crash_lines(self, count: int = 12) -> list[str]:
        return tail_lines(self.run_dir / TRAIN_LOG, count, start=self._log_start)

    def signal(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)

    def stop_and_wait(self, timeout: float) -> int | None:
        """Stop the trainer cleanly (see `Stopper`) and block until it has exited."""
        if self.process is None or self.process.poll() is not None:
            return self.returncode
        stopper = Stopper(self, timeout)
        while not stopper.step():
            time.sleep(0.1)
        return self.returncode


class Stopper:
    """Stops a launched trainer with a checkpoint, escalating only when it does not react.

    1. A ``stop`` file goes into ``RUN_DIR/control/``; the trainer reads it between phases.
    2. If that file is still unread after `GRACE` seconds, the trainer is inside a phase
       (generating, scoring) that may last minutes: SIGTERM, which the trainer treats as
       "stop now" (it abandons the phase, which has not touched the weights, and saves the
       last finished iteration). A trainer still loading its model gets SIGTERM at once.
    3. Still running after ``timeout`` seconds: SIGTERM if not sent yet, then SIGKILL.

    `step` is non-blocking (the TUI calls it from its timer); it returns True once the
    process has exited. `hurry` escalates one step at once (the user pressed q again).
    """

    GRACE = 3.0
    KILL_AFTER = 10.0

    def __init__(self, run: LaunchedRun, timeout: float, starting: bool = False) -> None:
        self.run = run
        self.timeout = timeout
        self.started = time.monotonic()
        self.file: Path | None = run.send("stop")
        self.signalled: list[str] = []  # names of the signals sent, for the log
        self._term_at: float | None = None
        if starting:
            self._signal(signal.SIGTERM)

    def step(self) -> bool:
        if self.run.returncode is not None:
            return True
        now = time.monotonic()
        waited = now - self.started
        unread = self.file is not None and self.file.exists()
        if self._term_at is None and ((waited > self.GRACE and unread) or waited > self.timeout):
            self._signal(signal.SIGTERM)
        elif (
            self._term_at is not None
            and waited > self.timeout
            and now - self._term_at > self.KILL_AFTER
        ):
            self._signal(signal.SIGKILL)
        return False

    def hurry(self) -> bool:
        """One step further now; False when there is nothing left to send (already killed)."""
        if self._term_at is None:
            self._signal(signal.SIGTERM)
        elif "SIGKILL" not in self.signalled:
            self._signal(signal.SIGKILL)
        else:
            return False
        return True

    def _signal(self, sig: signal.Signals) -> None:
        if sig.name in self.signalled:
            return
        self.run.signal(sig)
        self.signalled.append(sig.name)
        if sig == signal.SIGTERM:
            self._term_at = time.monotonic()

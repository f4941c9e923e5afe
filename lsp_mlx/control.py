"""The control channel to a running trainer: files in ``RUN_DIR/control/`` and signals.

Any process (the TUI, a script, a person with a shell) controls a run by dropping a
command file into ``RUN_DIR/control/``; ``lsp-mlx control RUN_DIR pause`` does it too.
The trainer polls that folder between phases of an iteration, applies the commands in
the order they were written and deletes them. Files rather than sockets or stdin because
they work the same for the headless trainer, for a trainer the TUI started, and for a run
the TUI only attached to, and they survive nothing going wrong: a command sent while the
trainer is busy waits for it.

Commands: ``pause``, ``resume``, ``stop`` (checkpoint, then exit cleanly), ``checkpoint``
(save one now). Signals do the same without a file: SIGINT/SIGTERM = stop, SIGUSR1 = checkpoint.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from lsp_mlx.errors import UserError

CONTROL_DIR = "control"
COMMANDS = ("pause", "resume", "stop", "checkpoint")


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (a trainer that was killed leaves no run_end behind)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except (OSError, OverflowError, ValueError):
        return False
    return True


def send(run_dir: str | Path, command: str) -> Path:
    """Queue ``command`` for the trainer of ``run_dir``; returns the command file."""
    if command not in COMMANDS:
        raise UserError(f"unknown control command {command!r}: use one of {', '.join(COMMANDS)}")
    folder = Path(run_dir) / CONTROL_DIR
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{time.time_ns():020d}-{os.getpid()}-{command}"
    tmp = folder / f".{name}.tmp"
    tmp.write_text(command + "\n")
    final = folder / name
    os.replace(tmp, final)  # readers never see a half-written command
    return final


class ControlReader:
    """Used by the trainer: returns the commands queued since the last poll, oldest first."""

    def __init__(self, run_dir: str | Path) -> None:
        self.folder = Path(run_dir) / CONTROL_DIR

    def clear(self) -> None:
        """Drop stale commands left from an earlier process (called at start-up)."""
        for _ in self.poll():
            pass

    def poll(self) -> list[str]:
        if not self.folder.is_dir():
            return []
        commands = []
        for path in sorted(self.folder.iterdir()):
            if path.name.startswith("."):
                continue
            command = path.name.rsplit("-", 1)[-1]
            path.unlink(missing_ok=True)
            if command in COMMANDS:
                commands.append(command)
        return commands

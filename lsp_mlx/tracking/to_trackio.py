"""Trackio: a local-first tracker; its projects live in ``TRACKIO_DIR``.

``TRACKIO_DIR`` defaults to ``~/.cache/huggingface/trackio``; ``trackio show --project P``
opens the dashboard, and trackio's own settings (``TRACKIO_SPACE_ID``, ...) send it to a
Hugging Face Space instead. trackio tells runs apart by id, not by name, and resumes by name:
a new lsp-mlx run starts a new trackio run (``resume="never"``) even when another run of the
project has its name, and a resumed one continues the latest run of its name
(``resume="allow"``). trackio prints its banner on stdout; it goes to stderr with the rest of
the trainer's progress.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any

from lsp_mlx.tracking.names import GAME_COLUMNS


class TrackioTracker:
    name = "trackio"

    def __init__(self, project: str, run_name: str) -> None:
        self.project = project
        self.run_name = run_name
        self._run: Any = None

    def describe(self) -> str:
        return (
            f"trackio run {self.run_name!r} in project {self.project!r} "
            f"(trackio show --project {self.project})"
        )

    def start(self, config: dict[str, Any], resumed: bool, start_iteration: int) -> None:
        import trackio

        with contextlib.redirect_stdout(sys.stderr):
            self._run = trackio.init(
                project=self.project,
                name=self.run_name,
                config=config,
                resume="allow" if resumed else "never",
                embed=False,
                auto_log_cpu=False,
                auto_log_gpu=False,
            )

    def log(self, scalars: dict[str, float], step: int) -> None:
        self._run.log(scalars, step=step)

    def log_games(self, rows: list[list[Any]], step: int) -> None:
        import trackio

        self._run.log({"games": trackio.Table(columns=GAME_COLUMNS, data=rows)}, step=step)

    def finish(self) -> None:
        import trackio

        if self._run is not None:
            self._run = None
            with contextlib.redirect_stdout(sys.stderr):
                trackio.finish()  # also clears trackio's current run, so its atexit hook is idle

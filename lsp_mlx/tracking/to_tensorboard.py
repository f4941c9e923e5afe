"""TensorBoard: event files in ``RUN_DIR/tensorboard``, in TensorBoard's own record format.

Only the ``tensorboard`` package is needed (no TensorFlow, no torch). Scalars are
``simple_value`` summaries, the config goes to the HParams dashboard (and as JSON to the
Text tab), the games are a text summary holding a table (the Text tab shows a 2-D string
tensor as a table, the first row the header). Records are written with TensorBoard's
``RecordWriter`` on the caller's thread and flushed each iteration: a full disk raises
here, where the sink turns it into one warning (TensorBoard's ``EventFileWriter`` writes on
a thread of its own, whose failure would print a traceback). Each session (a run, its
resumption, a replay by ``lsp-mlx report``) writes a new event file into the same folder, led
by a ``SessionLog.START`` at its first iteration: TensorBoard then drops what earlier files
logged from that step on (the iterations a resume replays, a live log a replay replaces).
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from lsp_mlx.tracking.names import GAME_COLUMNS, flat_config

LOG_DIR = "tensorboard"


class TensorBoardTracker:
    name = "tensorboard"

    def __init__(self, run_dir: Path, run_name: str) -> None:
        self.logdir = Path(run_dir) / LOG_DIR
        self.run_name = run_name
        self._writer: Any = None

    def describe(self) -> str:
        return f"TensorBoard log in {self.logdir} (tensorboard --logdir {self.logdir.parent})"

    def start(self, config: dict[str, Any], resumed: bool, start_iteration: int) -> None:
        from tensorboard.compat.proto.event_pb2 import Event, SessionLog
        from tensorboard.plugins.hparams.summary_v2 import hparams_pb
        from tensorboard.plugins.text.summary_v2 import text_pb
        from tensorboard.summary.writer.record_writer import RecordWriter

        self.logdir.mkdir(parents=True, exist_ok=True)
        # TensorBoard's file name: it reads the files of a folder in name (= time) order
        name = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}"
        self._writer = RecordWriter(open(self.logdir / f"{name}.lsp-mlx", "ab"))
        self._add(Event(file_version="brain.Event:2"), 0)
        # TensorBoard drops what earlier files of the folder hold from this step on
        self._add(Event(session_log=SessionLog(status=SessionLog.START)), start_iteration)
        if config:
            self._add(Event(summary=hparams_pb(flat_config(config), trial_id=self.run_name)), 0)
            text = json.dumps(config, indent=2, sort_keys=True, default=str)
            self._add(Event(summary=text_pb("config", f"```\n{text}\n```")), 0)
        self._writer.flush()

    def log(self, scalars: dict[str, float], step: int) -> None:
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary

        values = [Summary.Value(tag=tag, simple_value=value) for tag, value in scalars.items()]
        self._add(Event(summary=Summary(value=values)), step)
        self._writer.flush()

    def log_games(self, rows: list[list[Any]], step: int) -> None:
        import numpy as np
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.plugins.text.summary_v2 import text_pb

        table = np.array([GAME_COLUMNS] + [[_cell(v) for v in row] for row in rows], dtype=object)
        self._add(Event(summary=text_pb("games", table)), step)
        self._writer.flush()

    def finish(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.close()

    def _add(self, event: Any, step: int) -> None:
        event.wall_time = time.time()
        event.step = step
        self._writer.write(event.SerializeToString())


def _cell(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)

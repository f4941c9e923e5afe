"""Weights & Biases: one wandb run per lsp-mlx run, its files under ``RUN_DIR/wandb``.

The wandb run id is kept in ``RUN_DIR/trackers.json`` under the run's name, so a resumed
run (and a replay by ``lsp-mlx report`` under the same name) continues the same wandb run
(``resume="allow"``); wandb skips steps it already holds, which are the iterations a resume
replays with the same values. A replay under another ``--name`` is a new wandb run. wandb's own
settings apply: ``WANDB_MODE=offline`` writes the run to disk only (``wandb sync`` uploads it
later), ``WANDB_ENTITY``, ``WANDB_API_KEY``. ``console="off"``: wandb does not capture the
terminal, whose output the trainer already writes to ``events.jsonl``.
"""

from __future__ import annotations

import json
import secrets
import string
from pathlib import Path
from typing import Any

from lsp_mlx.atomic import write_text
from lsp_mlx.errors import UserError
from lsp_mlx.readers import read_json
from lsp_mlx.tracking.names import GAME_COLUMNS

IDS_FILE = "trackers.json"


def _ids(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / IDS_FILE
    if not path.exists():
        return {}
    fix = "delete it to start new tracker runs"
    ids = read_json(path, "the tracker run ids", fix=fix)
    if not isinstance(ids, dict):
        raise UserError(f"the tracker run ids {path} are not a JSON object: {fix}")
    return ids


def stored_id(run_dir: Path, tracker: str, run_name: str) -> str | None:
    """The id of the tracker run named ``run_name``, kept in ``RUN_DIR/trackers.json``."""
    value = _ids(run_dir).get(tracker, {})
    value = value.get(run_name) if isinstance(value, dict) else None
    return value if isinstance(value, str) else None


def store_id(run_dir: Path, tracker: str, run_name: str, run_id: str) -> None:
    ids = _ids(run_dir)
    runs = ids.get(tracker) if isinstance(ids.get(tracker), dict) else {}
    ids[tracker] = {**runs, run_name: run_id}
    write_text(Path(run_dir) / IDS_FILE, json.dumps(ids, indent=2) + "\n")


def new_id() -> str:
    """A wandb run id: 8 characters of [a-z0-9], as wandb makes them."""
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(8))


class WandbTracker:
    name = "wandb"

    def __init__(self, run_dir: Path, project: str, run_name: str) -> None:
        self.run_dir = Path(run_dir)
        self.project = project
        self.run_name = run_name
        self._run: Any = None

    def describe(self) -> str:
        where = self._run.dir if self._run is not None else self.run_dir / "wandb"
        return f"wandb run {self.run_name!r} in project {self.project!r} ({where})"

    def start(self, config: dict[str, Any], resumed: bool, start_iteration: int) -> None:
        import wandb

        run_id = stored_id(self.run_dir, self.name, self.run_name) or new_id()
        store_id(self.run_dir, self.name, self.run_name, run_id)
        self._run = wandb.init(
            project=self.project,
            name=self.run_name,
            id=run_id,
            resume="allow",
            dir=str(self.run_dir),
            config=config,
            reinit="create_new",
            settings=wandb.Settings(console="off", save_code=False),
        )

    def log(self, scalars: dict[str, float], step: int) -> None:
        self._run.log(scalars, step=step)

    def log_games(self, rows: list[list[Any]], step: int) -> None:
        import wandb

        self._run.log({"games": wandb.Table(columns=GAME_COLUMNS, data=rows)}, step=step)

    def finish(self) -> None:
        if self._run is not None:
            run, self._run = self._run, None
            run.finish()

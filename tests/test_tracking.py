"""Experiment trackers, end to end and offline: a real tiny run with ``--report-to tensorboard
wandb trackio``, read back with each tracker's own reader, resumed, and replayed by
``lsp-mlx report``.

- TensorBoard: ``event_accumulator`` (TensorBoard's reader).
- wandb: ``WANDB_MODE=offline``; the run's ``.wandb`` file is wandb's record log (LevelDB's
  log format: 32 KiB blocks of CRC/length/type-framed chunks, after a 7-byte ``:W&B`` header)
  holding ``wandb_internal_pb2.Record`` protobufs, parsed with wandb's own protobuf classes.
  wandb 0.31 ships no Python reader for it, so `wandb_records` below unframes the chunks.
- trackio: a local project in a temporary ``TRACKIO_DIR``, read with trackio's
  ``SQLiteStorage`` in a subprocess (trackio reads ``TRACKIO_DIR`` when imported).
"""

from __future__ import annotations

import json
import shutil
import statistics
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli

from lsp_mlx.events import read_events
from lsp_mlx.records import Game
from lsp_mlx.tracking.names import GAME_COLUMNS, diagnostics_scalars, iteration_scalars
from lsp_mlx.tracking.to_wandb import stored_id

TRACKERS = ["tensorboard", "wandb", "trackio"]


# ----------------------------------------------------------------- reading the trackers back
def tensorboard_log(logdir: Path) -> tuple[dict[str, dict[int, float]], dict[int, list[list[str]]]]:
    """Scalars by tag and step, and the games table by step, as TensorBoard reads them."""
    from tensorboard.backend.event_processing import event_accumulator as ea
    from tensorboard.util import tensor_util

    acc = ea.EventAccumulator(str(logdir), size_guidance={ea.SCALARS: 0, ea.TENSORS: 0})
    acc.Reload()
    scalars = {t: {e.step: e.value for e in acc.Scalars(t)} for t in acc.Tags()["scalars"]}
    games = {
        e.step: [[c.decode() for c in row] for row in tensor_util.make_ndarray(e.tensor_proto)]
        for e in acc.Tensors("games")
    }
    return scalars, games


def wandb_records(path: Path) -> list[Any]:
    """The protobuf records of a ``.wandb`` file (see the module docstring)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    block, pos, chunks, records = 32768, 7, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 0:
            continue
        chunks = chunk if kind in (1, 2) else chunks + chunk  # FULL, FIRST | MIDDLE, LAST
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(chunks)
            records.append(record)
    return records


def wandb_run(run_dir: Path) -> dict[str, Any]:
    """Every offline wandb run of a run folder: ids, names, config and history by step."""
    runs = sorted((run_dir / "wandb").glob("offline-run-*"))
    out: dict[str, Any] = {"ids": [], "names": set(), "projects": set(), "config": {}, "steps": {}}
    for folder in runs:
        for record in wandb_records(next(folder.glob("run-*.wandb"))):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                out["ids"].append(record.run.run_id)
                out["names"].add(record.run.display_name)
                out["projects"].add(record.run.project)
                for item in record.run.config.update:
                    out["config"][item.key] = json.loads(item.value_json)
            elif kind == "history":
                row = {
                    item.key or "/".join(item.nested_key): json.loads(item.value_json)
                    for item in record.history.item
                }
                if "games/path" in row:
                    table = json.loads((folder / "files" / row["games/path"]).read_text())
                    row["games"] = table
                out["steps"].setdefault(row["_step"], {}).update(row)
    return out


def trackio_logs(trackio_dir: Path, project: str) -> dict[str, Any]:
    """trackio's runs of a project: their logs and configs, read by trackio itself."""
    code = (
        "import json, sys\n"
        "from trackio.sqlite_storage import SQLiteStorage as S\n"
        "p = sys.argv[1]\n"
        "out = {r: {'logs': S.get_logs(p, r), 'config': S.get_run_config(p, r)} "
        "for r in S.get_runs(p)}\n"
        "print(json.dumps(out, default=str))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, project],
        capture_output=True,
        text=True,
        env=_env(trackio_dir),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------- the run
def _env(trackio_dir: Path) -> dict[str, str]:
    """Offline wandb and a private trackio folder; wandb's caches stay out of $HOME too."""
    import os

    wandb_home = trackio_dir.parent / "wandb-home"
    return {
        **os.environ,
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "WANDB_DATA_DIR": str(wandb_home / "data"),
        "WANDB_CACHE_DIR": str(wandb_home / "cache"),
        "WANDB_CONFIG_DIR": str(wandb_home / "config"),
        "TRACKIO_DIR": str(trackio_dir),
    }


def _train(tiny_model: Path, run_dir: Path, trackio_dir: Path, *extra: str, iterations: int):
    return run_cli(
        "train", "--config", "configs/tiny.yaml", "--model", str(tiny_model),
        "--run-dir", str(run_dir), "--iterations", str(iterations),
        "--report-to", *TRACKERS, *extra,
        env=_env(trackio_dir),
    )  # fmt: skip


@pytest.fixture(scope="module")
def tracked(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 2-iteration tiny run tracked live by all three, resumed for a third iteration."""
    root = tmp_path_factory.mktemp("tracked")
    run_dir, trackio_dir = root / "run", root / "trackio"
    first = _train(tiny_model, run_dir, trackio_dir, iterations=2)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "warning" not in first.stderr.lower(), first.stderr[-3000:]
    wandb_id = stored_id(run_dir, "wandb", run_dir.name)
    resumed = _train(tiny_model, run_dir, trackio_dir, "--resume", iterations=3)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert stored_id(run_dir, "wandb", run_dir.name) == wandb_id
    return {"run_dir": run_dir, "trackio_dir": trackio_dir, "root": root}


def expected(run_dir: Path) -> dict[int, dict[str, float]]:
    """What every tracker must hold, by iteration, computed from events.jsonl alone."""
    events = read_events(run_dir)
    games: dict[int, list[Game]] = {}
    out: dict[int, dict[str, float]] = {}
    for e in events:
        if e["type"] == "game":
            games.setdefault(e["iteration"], []).append(Game.from_dict(e))
        elif e["type"] == "metrics":
            it = e["iteration"]
            out.setdefault(it, {}).update(iteration_scalars(e["metrics"], games.get(it, [])))
        elif e["type"] == "diagnostics":
            out.setdefault(e["iteration"], {}).update(diagnostics_scalars(e["diagnostics"]))
    return out


def expected_games(run_dir: Path) -> dict[int, list[Game]]:
    games: dict[int, list[Game]] = {}
    for e in read_events(run_dir):
        if e["type"] == "game" and e.get("valid", True) and e.get("answers"):
            games.setdefault(e["iteration"], []).append(Game.from_dict(e))
    return games


# ----------------------------------------------------------------- the tests
def test_trl_names_hold_the_quantities_the_games_report(tracked: dict[str, Path]) -> None:
    """TRL's names, computed from the games, agree with what the LSP game computed itself."""
    events = read_events(tracked["run_dir"])
    by_iteration = {e["iteration"]: e["metrics"] for e in events if e["type"] == "metrics"}
    values = expected(tracked["run_dir"])
    assert sorted(values) == [1, 2, 3]
    for it, metrics in by_iteration.items():
        v = values[it]
        assert v["reward"] == pytest.approx(metrics["reward/solver_mean"], abs=1e-9)
        assert v["frac_reward_zero_std"] == pytest.approx(metrics["zero_variance_groups"])
        assert v["completions/mean_length"] == pytest.approx(metrics["answer_tokens_mean"])
        assert v["kl"] == metrics["kl"] and v["loss"] == metrics["loss"]
        groups = expected_games(tracked["run_dir"])[it]
        assert v["reward_std"] == pytest.approx(
            statistics.mean(statistics.stdev(g.rewards) for g in groups)
        )
        assert 0.0 <= v["completions/clipped_ratio"] <= 1.0


def test_tensorboard_holds_every_metric_and_the_games(tracked: dict[str, Path]) -> None:
    run_dir = tracked["run_dir"]
    scalars, games = tensorboard_log(run_dir / "tensorboard")
    want = expected(run_dir)
    names = {name for values in want.values() for name in values}
    assert names <= set(scalars), names - set(scalars)
    for it, values in want.items():
        for name, value in values.items():
            assert scalars[name][it] == pytest.approx(value, rel=1e-6, abs=1e-7), (name, it)
    # every step once: the resumed run continued the same log
    assert set(scalars["reward"]) == {1, 2, 3}
    for it, rows in expected_games(run_dir).items():
        assert games[it][0] == GAME_COLUMNS
        assert [r[3] for r in games[it][1:]] == [g.query for g in rows]
        assert [r[4] for r in games[it][1:]] == [g.best().text for g in rows]


def test_wandb_offline_run_holds_every_metric_and_the_games(tracked: dict[str, Path]) -> None:
    run_dir = tracked["run_dir"]
    run = wandb_run(run_dir)
    # the resumed run continued the same wandb run: two offline folders, one id
    assert len(run["ids"]) == 2 and set(run["ids"]) == {stored_id(run_dir, "wandb", run_dir.name)}
    assert run["names"] == {run_dir.name} and run["projects"] == {"lsp-mlx"}
    assert run["config"]["train"]["report_to"] == TRACKERS
    for it, values in expected(run_dir).items():
        for name, value in values.items():
            assert run["steps"][it][name] == pytest.approx(value, rel=1e-12), (name, it)
    for it, rows in expected_games(run_dir).items():
        table = run["steps"][it]["games"]
        assert table["columns"] == GAME_COLUMNS
        assert [r[3] for r in table["data"]] == [g.query for g in rows]
        assert [r[-2] for r in table["data"]] == [g.query_reward for g in rows]


def test_trackio_project_holds_every_metric_and_the_games(tracked: dict[str, Path]) -> None:
    run_dir = tracked["run_dir"]
    runs = trackio_logs(tracked["trackio_dir"], "lsp-mlx")
    assert list(runs) == [run_dir.name]  # the resumed run continued the same trackio run
    logs, config = runs[run_dir.name]["logs"], runs[run_dir.name]["config"]
    assert config["train"]["report_to"] == TRACKERS
    by_step: dict[int, dict[str, Any]] = {}
    for row in logs:
        by_step.setdefault(row["step"], {}).update(row)
    for it, values in expected(run_dir).items():
        for name, value in values.items():
            assert by_step[it][name] == pytest.approx(value, rel=1e-12), (name, it)
    for it, rows in expected_games(run_dir).items():
        table = by_step[it]["games"]["_value"]
        assert [r["query"] for r in table] == [g.query for g in rows]
        assert [r["worst_answer"] for r in table] == [g.worst().text for g in rows]


def test_report_replays_the_same_values(tracked: dict[str, Path]) -> None:
    """``lsp-mlx report`` on a copy of the run's events gives what the live run logged."""
    live = tracked["run_dir"]
    copy = tracked["root"] / "copy"
    copy.mkdir()
    shutil.copy(live / "events.jsonl", copy / "events.jsonl")
    proc = run_cli(
        "report", str(copy), "--to", *TRACKERS, "--name", "replayed",
        env=_env(tracked["trackio_dir"]),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "tensorboard: 3 iterations" in proc.stdout and "wandb: 3 iterations" in proc.stdout

    live_tb, live_games = tensorboard_log(live / "tensorboard")
    copy_tb, copy_games = tensorboard_log(copy / "tensorboard")
    assert copy_tb == live_tb and copy_games == live_games

    def history(run_dir: Path) -> dict[int, dict[str, Any]]:
        steps = wandb_run(run_dir)["steps"]
        # wandb's own bookkeeping (times, artifact ids) differs; the table's content is "games"
        return {
            s: {k: v for k, v in row.items() if not k.startswith(("_", "games/"))}
            for s, row in steps.items()
        }

    assert history(copy) == history(live)

    runs = trackio_logs(tracked["trackio_dir"], "lsp-mlx")

    def rows(name: str) -> list[dict[str, Any]]:
        return [{k: v for k, v in r.items() if k != "timestamp"} for r in runs[name]["logs"]]

    assert rows("replayed") == rows(live.name)


def test_report_into_a_tracked_folder_replaces_the_tensorboard_log(
    tracked: dict[str, Path],
) -> None:
    """A replay's event file starts a new TensorBoard session: no step is shown twice."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    live = tracked["run_dir"]
    before, _ = tensorboard_log(live / "tensorboard")
    proc = run_cli("report", str(live), "--to", "tensorboard")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(list((live / "tensorboard").iterdir())) == 3  # run, resume, replay
    acc = EventAccumulator(str(live / "tensorboard"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("reward")] == [1, 2, 3]
    assert tensorboard_log(live / "tensorboard")[0] == before

"""Trackers that are missing or fail: one line, and never the training run.

- A tracker that is not installed: a Python whose path holds every package of this venv but
  the trackers (``python -S`` and a folder linking the rest), so the CLI meets a real missing
  package.
- A full disk: the TensorBoard log sits on a 1 MiB tmpfs that the test fills between two
  iterations (needs root, as on our machines and CI; skipped elsewhere).
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from conftest import REPO, run_cli
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lsp_mlx import config as cfg
from lsp_mlx.errors import UserError
from lsp_mlx.events import EventWriter, read_events
from lsp_mlx.records import Answer, Game
from lsp_mlx.tracking import TrackerSink, tracker_names
from lsp_mlx.tracking.to_tensorboard import TensorBoardTracker

HIDDEN = ("tensorboard", "wandb", "trackio")


def write_run(events: EventWriter, iterations: range) -> EventWriter:
    """The events of a small LSP run: run_start first, then two games and the metrics each."""
    if iterations.start == 1:
        config = cfg.Config().to_dict()
        events.emit("run_start", config=config, start_iteration=1, resumed=False)
    for it in iterations:
        for index in range(2):
            answers = [
                Answer(
                    text=f"answer {it}.{index}.{k} " * 100,  # ~2 KB: each iteration fills a page
                    tokens=4 + k,
                    reward=0.25 * k,
                    advantage=k - 0.5,
                )
                for k in range(2)
            ]
            game = Game(
                iteration=it, index=index, game="lsp", query=f"query {it}.{index}", query_tokens=5,
                answers=answers, value=0.125, query_reward=-0.125, query_advantage=0.0,
            )  # fmt: skip
            events.emit("game", **game.to_dict())
        events.emit("metrics", iteration=it, metrics={"loss": 0.5 / it, "kl": 0.01 * it})
    return events


def test_tracker_names_read_none_and_repeats() -> None:
    assert tracker_names(None) == [] and tracker_names(["none"]) == []
    assert tracker_names(["tensorboard", "wandb", "wandb"]) == ["tensorboard", "wandb"]
    with pytest.raises(UserError, match="unknown tracker 'mlflow': choose from tensorboard"):
        tracker_names(["mlflow"])


@pytest.fixture(scope="module")
def python_without_trackers(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """A command line for this Python with this venv's packages but no tracker installed."""
    site = Path(sysconfig.get_paths()["purelib"])
    folder = tmp_path_factory.mktemp("site-without-trackers")
    for entry in site.iterdir():
        if not entry.name.lower().startswith(HIDDEN):
            (folder / entry.name).symlink_to(entry)
    # -S: not this venv's site-packages; addsitedir: the linked folder, with its .pth files
    # (the editable install of lsp_mlx among them)
    code = f"import site, sys; site.addsitedir({str(folder)!r}); from lsp_mlx.cli import main; sys.exit(main())"
    return [sys.executable, "-S", "-c", code]


def test_a_missing_tracker_is_one_line_before_anything_is_written(
    python_without_trackers: list[str], tiny_model: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [*python_without_trackers, "train", "--config", "configs/tiny.yaml", "--model",
         str(tiny_model), "--run-dir", str(run_dir), "--report-to", "tensorboard", "wandb"],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert lines[-1] == (
        "lsp-mlx: error: tensorboard and wandb are not installed: "
        "pip install 'lsp-mlx[tensorboard,wandb]'"
    ), proc.stderr[-2000:]
    assert not (run_dir / "events.jsonl").exists() and not (run_dir / "config.yaml").exists()

    write_run(EventWriter(run_dir), range(1, 2)).close()
    before = sorted(p.name for p in run_dir.iterdir())
    proc = subprocess.run(
        [*python_without_trackers, "report", str(run_dir), "--to", "trackio"],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "lsp-mlx: error: trackio is not installed: pip install 'lsp-mlx[trackio]'"
    )
    assert sorted(p.name for p in run_dir.iterdir()) == before


def test_report_refuses_a_folder_without_events(tmp_path: Path) -> None:
    proc = run_cli("report", str(tmp_path), "--to", "tensorboard")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"lsp-mlx: error: {tmp_path} is not a run folder (no events.jsonl): "
        "pass the --run-dir of a training run"
    )


def test_report_names_the_tracker_that_failed(tmp_path: Path) -> None:
    write_run(EventWriter(tmp_path), range(1, 3)).close()
    (tmp_path / "tensorboard").write_text("a file where the log folder goes")
    proc = run_cli("report", str(tmp_path), "--to", "tensorboard")
    assert proc.returncode == 2
    assert proc.stderr.startswith("lsp-mlx: error: report: tensorboard failed (FileExistsError")
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 1 MiB tmpfs (root only): a disk that can really run full."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> None:
    with open(disk / "filler", "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError as e:
            assert e.errno == errno.ENOSPC


def test_a_full_disk_costs_the_tracker_one_warning_never_the_run(
    small_disk: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "tensorboard").symlink_to(small_disk)  # only the tracker's log is on that disk
    sink = TrackerSink(TensorBoardTracker(run_dir, "run"))
    events = write_run(EventWriter(run_dir, listeners=[sink]), range(1, 2))
    assert capsys.readouterr().err == ""
    fill(small_disk)
    write_run(events, range(2, 5))
    events.emit("run_end", status="finished", iteration=4)
    events.close()

    warnings = capsys.readouterr().err.strip().splitlines()
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("lsp-mlx: warning: the tensorboard tracker failed (")
    assert "No space left on device" in warnings[0] and warnings[0].endswith("the run goes on")
    # the run lost nothing: every event is in events.jsonl
    metrics = [e["iteration"] for e in read_events(run_dir) if e["type"] == "metrics"]
    assert metrics == [1, 2, 3, 4]
    # and the tracker kept what it had before the disk ran full
    acc = EventAccumulator(str(run_dir / "tensorboard"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("loss")][0] == 1
    assert [e.step for e in acc.Tensors("games")][0] == 1


def test_report_names_damaged_tracker_run_ids(tmp_path: Path) -> None:
    write_run(EventWriter(tmp_path), range(1, 2)).close()
    (tmp_path / "trackers.json").write_text('{"wandb": {"run": ')  # torn by hand
    proc = run_cli("report", str(tmp_path), "--to", "wandb", env={"WANDB_MODE": "offline"})
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "lsp-mlx: error: report: wandb: the tracker run ids "
        f"'{tmp_path / 'trackers.json'}' is not valid JSON (line 1): delete it to start new "
        "tracker runs"
    )
    assert not (tmp_path / "wandb").exists()

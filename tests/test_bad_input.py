"""Bad input: one line naming the problem and the fix, exit code 2, nothing overwritten."""

from __future__ import annotations

import json
import os

import pytest
from conftest import run_cli, tiny_train_args

from lsp_mlx.cli import main


def fails(capsys, *argv: str) -> str:
    code = main(list(argv))
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("lsp-mlx: error: ") and "\n" not in err, err
    return err


def tiny_args(tiny_model, tmp_path, *extra: str) -> list[str]:
    return ["train", *tiny_train_args(tiny_model, tmp_path / "run", 2, *extra)]


@pytest.mark.parametrize(
    "flag,needle",
    [
        ("game.num_querys=3", "did you mean 'num_queries'"),
        ("gmae.name=lsp", "did you mean 'game'"),
        ("game.num_queries=abc", "game.num_queries must be an integer"),
        ("train.beta=[1]", "train.beta must be a number"),
        ("game.num_queries=0", "num_queries (N) must be in 1..4096"),
        ("game.group_size=1", "group_size (G) must be in 2..1024"),
        ("train.beta=-0.1", "train.beta must be >= 0"),
        ("game.name=chess", "unknown game 'chess'"),
        ("reward.source=judge", "use game lsp-zero with the judge"),
        ("reward.source=python", None),  # valid: the default function
    ],
)
def test_config_errors(capsys, tiny_model, tmp_path, flag, needle):
    argv = tiny_args(tiny_model, tmp_path, "--set", flag, "--iterations", "1")
    if needle is None:
        assert main(argv) == 0
        return
    assert needle in fails(capsys, *argv)
    assert not (tmp_path / "run" / "events.jsonl").exists()


def test_unknown_key_in_yaml_file(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  learning_rat: 0.1\n")
    assert "did you mean 'learning_rate'" in fails(capsys, "train", "--config", str(bad))
    bad.write_text("train: [oops\n")
    assert "not valid YAML" in fails(capsys, "train", "--config", str(bad))
    assert "not found" in fails(capsys, "train", "--config", str(tmp_path / "missing.yaml"))


def test_missing_model_and_non_model_file(capsys, tmp_path):
    err = fails(capsys, "train", *tiny_train_args(tmp_path / "nope", tmp_path / "run"))
    assert "nope" in err
    text = tmp_path / "weights.txt"
    text.write_text("not a model")
    err = fails(capsys, "train", *tiny_train_args(text, tmp_path / "run2"))
    assert "GGUF" in err or "model folder" in err
    fake = tmp_path / "fake.gguf"
    fake.write_text("hello")
    assert "GGUF" in fails(capsys, "train", *tiny_train_args(fake, tmp_path / "run3"))
    assert not any((tmp_path / d / "events.jsonl").exists() for d in ("run", "run2", "run3"))


def test_reward_model_without_score_head(capsys, tiny_model, tmp_path):
    err = fails(
        capsys,
        *tiny_args(
            tiny_model,
            tmp_path,
            "--set",
            "reward.source=reward_model",
            "--set",
            f"reward.reward_model={tiny_model}",
        ),
    )
    assert "no score head" in err
    assert not (tmp_path / "run" / "config.yaml").exists()


def test_unwritable_run_dir(capsys, tiny_model, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    err = fails(capsys, "train", *tiny_train_args(tiny_model, blocker / "run"))
    assert "not writable" in err


def test_existing_run_is_not_overwritten_and_resume_checks_config(capsys, tiny_model, tmp_path):
    assert main(tiny_args(tiny_model, tmp_path, "--iterations", "1")) == 0
    capsys.readouterr()
    events = (tmp_path / "run" / "events.jsonl").read_bytes()
    assert "already holds a run" in fails(
        capsys, *tiny_args(tiny_model, tmp_path, "--iterations", "1")
    )
    err = fails(capsys, *tiny_args(tiny_model, tmp_path, "--resume", "--set", "train.beta=0.5"))
    assert "different config" in err and "train.beta" in err
    assert (tmp_path / "run" / "events.jsonl").read_bytes() == events
    assert "holds no run" in fails(capsys, *tiny_args(tiny_model, tmp_path / "other", "--resume"))


def test_exit_code_from_a_real_process(tmp_path):
    proc = run_cli("train", "--set", "game.group_size=1", "--run-dir", str(tmp_path / "r"))
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "group_size" in proc.stderr


def test_control_queues_for_a_live_trainer_only(capsys, tmp_path):
    from lsp_mlx.control import ControlReader

    run = tmp_path / "run"
    run.mkdir()
    events = run / "events.jsonl"
    start = {"v": 1, "type": "run_start", "time": 0.0, "pid": os.getpid()}  # this process: alive
    events.write_text(json.dumps(start) + "\n")
    assert main(["control", str(run), "pause"]) == 0
    assert "queued pause" in capsys.readouterr().out
    assert ControlReader(run).poll() == ["pause"]  # what the trainer reads
    with events.open("a") as fh:
        fh.write(json.dumps({"v": 1, "type": "run_end", "time": 1.0, "status": "finished"}) + "\n")
    err = fails(capsys, "control", str(run), "stop")
    assert "no trainer is running" in err and "(finished)" in err and "--resume" in err
    assert ControlReader(run).poll() == []  # nothing was queued
    with events.open("a") as fh:  # resumed: a new run_start after the run_end is live again
        fh.write(json.dumps({**start, "time": 2.0}) + "\n")
    assert main(["control", str(run), "checkpoint"]) == 0
    assert ControlReader(run).poll() == ["checkpoint"]


def test_export_takes_the_adapter_as_a_flag_or_a_positional(capsys, tmp_path):
    missing = str(tmp_path / "missing")
    out = str(tmp_path / "out")
    for argv in (["export", "--adapter", missing, "--out", out], ["export", missing, "--out", out],
                 ["export", missing, "--adapter", missing, "--out", out]):  # fmt: skip
        assert "does not exist" in fails(capsys, *argv)
    assert not (tmp_path / "out").exists()


def test_outputs_on_a_read_only_filesystem(capsys, tmp_path):
    """A real read-only mount: root may write anywhere else, so only a probe file can tell."""
    import subprocess

    from lsp_mlx.errors import UserError
    from lsp_mlx.outputs import check_writable_dir

    ro = tmp_path / "ro"
    ro.mkdir()
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)],
                           capture_output=True)  # fmt: skip
    if mount.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {mount.stderr.decode().strip()}")
    try:
        err = fails(capsys, "eval", "--model", "default", "--output", str(ro / "eval.json"))
        assert "--output" in err and "Read-only file system" in err
        with pytest.raises(UserError, match="Read-only file system"):
            check_writable_dir(ro / "export", "--out")
    finally:
        subprocess.run(["umount", str(ro)], check=True)

"""`lsp-mlx eval` end to end on the real tiny model: a trained adapter vs its base."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import REPO, run_cli


@pytest.fixture(scope="module")
def tiny_run(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("evalrun") / "run"
    r = run_cli(
        "train",
        "--config",
        str(REPO / "configs" / "tiny.yaml"),
        "--model",
        str(tiny_model),
        "--iterations",
        "1",
        "--run-dir",
        str(run_dir),
        "--set",
        "train.learning_rate=0.05",
    )
    assert r.returncode == 0, r.stderr[-2000:]
    return run_dir


def test_eval_accuracy_and_win_rate(tiny_model: Path, tiny_run: Path, tmp_path: Path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        "".join(json.dumps({"prompt": p}) + "\n" for p in ("Say hi", "Count to 3", "Name a colour"))
    )
    out = tmp_path / "eval.json"
    r = run_cli(
        "eval",
        "--model",
        str(tiny_model),
        "--adapter",
        str(tiny_run),
        "--levels",
        "add1,sub2",
        "--per-level",
        "4",
        "--max-tokens",
        "4",
        "--prompts",
        str(prompts),
        "--output",
        str(out),
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "held-out arithmetic accuracy" in r.stdout and "win rate of the adapter" in r.stdout
    result = json.loads(out.read_text())
    acc = result["accuracy"]
    assert set(acc["by_level"]) == {"add1", "sub2"} and acc["all"]["base"]["n"] == 8
    for row in [*acc["by_level"].values(), acc["all"]]:
        for key in ("base", "adapter"):
            assert 0.0 <= row[key]["ci_low"] <= row[key]["estimate"] <= row[key]["ci_high"] <= 1.0
        assert (
            row["difference"]["ci_low"]
            <= row["difference"]["estimate"]
            <= row["difference"]["ci_high"]
        )
    assert len(acc["samples"]) == 8 and {"completion", "correct"} <= set(
        acc["samples"][0]["adapter"]
    )
    wr = result["win_rate"]
    assert wr["prompts"] == 3 and wr["wins"] + wr["ties_or_split"] + wr["losses"] == 3
    assert (
        0.0
        <= wr["win_rate"]["ci_low"]
        <= wr["win_rate"]["estimate"]
        <= wr["win_rate"]["ci_high"]
        <= 1.0
    )
    for pair in wr["pairs"]:
        assert pair["adapter_first"] in (0.0, 1.0) and pair["adapter_second"] in (0.0, 1.0)


def test_eval_base_only_and_python_judge(tiny_model: Path, tiny_run: Path, tmp_path: Path):
    out = tmp_path / "base.json"
    r = run_cli(
        "eval",
        "--model",
        str(tiny_model),
        "--levels",
        "add1",
        "--per-level",
        "3",
        "--max-tokens",
        "2",
        "--output",
        str(out),
    )
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["adapter"] is None and "adapter" not in result["accuracy"]["all"]

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Say hi\nName a colour\n")
    r = run_cli(
        "eval",
        "--adapter",
        str(tiny_run / "adapters"),
        "--no-base",
        "--levels",
        "add1",
        "--per-level",
        "2",
        "--prompts",
        str(prompts),
        "--judge",
        "python",
        "--function",
        "lsp_mlx.rewards.heuristics:quality",
        "--max-tokens",
        "4",
        "--output",
        str(tmp_path / "wr.json"),
    )
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads((tmp_path / "wr.json").read_text())
    assert set(result["accuracy"]["all"]) == {"adapter"}  # --no-base: the adapter alone
    wr = result["win_rate"]
    assert (
        wr["judge"] == "python" and wr["order_agreement"] == 1.0
    )  # a scalar scorer has no positions


def test_eval_splits_off_the_problems_the_run_trained_on(
    tiny_model: Path, tiny_run: Path, tmp_path: Path
):
    from lsp_mlx.evaluation.heldout import make_arithmetic_set

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    trained = make_arithmetic_set(1234, 4, ["add1"])[2].question
    game = {"v": 1, "type": "game", "iteration": 1, "index": 0, "game": "sqlm", "valid": True,
            "query": f"  {trained} ", "answers": [{"text": "5", "reward": 1.0}]}  # fmt: skip
    masked = dict(game, query=make_arithmetic_set(1234, 4, ["add1"])[0].question, valid=False)
    with (run / "events.jsonl").open("a") as f:
        f.write(json.dumps(game) + "\n" + json.dumps(masked) + "\n")
    out = tmp_path / "eval.json"
    args = ["--model", str(tiny_model), "--levels", "add1", "--per-level", "4", "--max-tokens", "2"]
    r = run_cli("eval", *args, "--adapter", str(run / "adapters"), "--output", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    acc = json.loads(out.read_text())["accuracy"]
    assert acc["train_log"] == str(run / "events.jsonl") and acc["seen_in_training"] == 1
    assert [s["seen_in_training"] for s in acc["samples"]] == [False, False, True, False]
    assert acc["unseen"]["base"]["n"] == 3 and "difference" in acc["unseen"]
    assert "\nunseen " in r.stdout and "1 of the 4 appear as training problems" in r.stdout
    r = run_cli("eval", *args, "--adapter", str(run), "--train-log", "none", "--output", str(out))
    assert r.returncode == 0 and "unseen" not in json.loads(out.read_text())["accuracy"]


def test_eval_finds_the_base_of_a_run_and_of_an_export(
    tiny_model: Path, tiny_run: Path, tmp_path: Path
):
    """An export records no run config: eval finds its base as chat and export do."""
    import argparse

    from lsp_mlx.commands.eval import _config
    from lsp_mlx.export.exporter import export_adapter
    from lsp_mlx.export.source import resolve_source

    exported = export_adapter(tiny_run, tmp_path / "export").out_dir
    args = argparse.Namespace(model=None)
    for path in (tiny_run, tiny_run / "checkpoints" / "iter-000001", exported):
        config = _config(args, resolve_source(path))
        assert Path(config.model.path).resolve() == tiny_model.resolve(), path
        assert config.lora.rank == 4


def test_base_answers_of_an_earlier_eval_give_the_same_result(
    tiny_model: Path, tiny_run: Path, tmp_path: Path
):
    """--base-answers: the base's greedy answers are read back, not generated, and every row
    (base, adapter, paired difference) equals the eval that generated them."""
    flags = ["--model", str(tiny_model), "--levels", "add1,sub2", "--per-level", "4"]
    flags += ["--max-tokens", "4", "--train-log", "none"]
    base = tmp_path / "base.json"
    assert run_cli("eval", *flags, "--output", str(base)).returncode == 0
    full, reused = tmp_path / "full.json", tmp_path / "reused.json"
    r = run_cli("eval", *flags, "--adapter", str(tiny_run), "--output", str(full))
    assert r.returncode == 0, r.stderr[-2000:]

    def with_base_answers(eval_flags: list[str], out: Path):
        return run_cli(
            "eval", *eval_flags, "--adapter", str(tiny_run), "--base-answers", str(base),
            "--output", str(out),
        )  # fmt: skip

    r = with_base_answers(flags, reused)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "base answers" not in r.stderr  # nothing generated for the base
    a, b = json.loads(full.read_text()), json.loads(reused.read_text())
    assert b["base_answers_from"] == str(base)
    assert a["accuracy"] == b["accuracy"]

    other = with_base_answers([f if f != "4" else "5" for f in flags], tmp_path / "x.json")
    assert other.returncode == 2
    assert other.stderr.strip().splitlines() == [
        f"lsp-mlx: error: --base-answers {base}: made with --per-level 4, this eval uses 5: "
        "pass the same --per-level or drop --base-answers"
    ]
    assert not (tmp_path / "x.json").exists()

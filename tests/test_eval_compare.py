"""The comparison of the games end to end: docs/proof/games/reproduce.sh on the tiny model, then
`python -m lsp_mlx.evaluation.compare` on what it wrote (real runs, evals and logs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO

from lsp_mlx.evaluation.compare import main as compare


def test_reproduce_script_then_compare(tiny_model: Path, tmp_path: Path, capsys) -> None:
    out, runs = tmp_path / "proof", tmp_path / "runs"
    tiny = ["--set", "game.num_queries=2", "--set", "game.group_size=2"]
    tiny += ["--set", "game.answer_max_tokens=4", "--set", "game.query_max_tokens=6"]
    tiny += ["--set", "train.checkpoint_every=1", "--set", "lora.num_layers=-1"]
    env = {
        **os.environ,
        "LSP_MLX": str(Path(sys.executable).parent / "lsp-mlx"),
        "OUT": str(out),
        "RUNS": str(runs),
        "GAMES": "lsp sqlm-band",
        "SEEDS": "0",
        "ITERATIONS": "2",
        "CURVE_AT": "1",
        "TRAIN_FLAGS": " ".join(["--model", str(tiny_model), *tiny]),
        "EVAL_FLAGS": f"--model {tiny_model} --levels add1,sub2 --per-level 2 --max-tokens 4",
    }
    script = REPO / "docs" / "proof" / "games" / "reproduce.sh"
    r = subprocess.run(
        ["bash", str(script)], cwd=REPO, env=env, capture_output=True, text=True, timeout=900
    )
    logs = "".join(p.read_text() for p in sorted((out / "logs").glob("*.log")))
    assert r.returncode == 0, (r.stderr + logs)[-4000:]
    for game in ("lsp", "sqlm-band"):
        assert (out / "logs" / f"{game}-seed0-events.jsonl.gz").is_file()
        for it, eval_seed in ((1, 1234), (2, 1234), (2, 99)):
            result = json.loads((out / f"{game}-seed0-iter{it}-eval{eval_seed}.json").read_text())
            assert result["base_answers_from"] == str(out / f"base-eval{eval_seed}.json")

    assert compare([str(out)]) == 0
    table = (out / "results.md").read_text()
    assert (out / "curves.png").read_bytes().startswith(b"\x89PNG")
    final = json.loads((out / "lsp-seed0-iter2-eval1234.json").read_text())["accuracy"]["all"]
    before, after = (f"{100 * final[k]['estimate']:.1f}%" for k in ("base", "adapter"))
    rows = [line for line in table.splitlines() if line.startswith("| lsp | 0 | 2 | seed 1234 |")]
    assert len(rows) == 1 and f"{before} → {after}" in rows[0]
    summary = table.split("## Held-out accuracy")[0]
    assert "| lsp | " in summary and "held-out set 99" in summary
    dynamics = table.split("## Training dynamics")[1].splitlines()
    assert [line.split(" | ")[:3] for line in dynamics if line.startswith("| sqlm")] == [
        ["| sqlm-band", "0", "2"]  # the run's own row: 2 iterations
    ]
    assert table == capsys.readouterr().out.split("wrote ")[0].rstrip("\n") + "\n"


def test_compare_names_a_folder_without_runs(tmp_path: Path, capsys) -> None:
    assert compare([str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1 and "no run logs" in err[0] and "pass the folder reproduce.sh wrote" in err[0]
    )

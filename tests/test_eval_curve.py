"""The learning-curve plot of `lsp_mlx.evaluation.curve`: paired differences and the PNG."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lsp_mlx.evaluation.curve import main, paired_points, sampling_temperature


def eval_result(base: list[bool] | None, adapter: list[bool] | None) -> dict:
    n = len(base or adapter or [])
    samples = []
    for i in range(n):
        s: dict = {"question": f"What is {i} + 1?"}
        if base is not None:
            s["base"] = {"correct": base[i]}
        if adapter is not None:
            s["adapter"] = {"correct": adapter[i]}
        samples.append(s)
    row = {}
    for name, hits in (("base", base), ("adapter", adapter)):
        if hits is not None:
            p = sum(hits) / n
            row[name] = {"estimate": p, "ci_low": max(0.0, p - 0.1), "ci_high": min(1.0, p + 0.1)}
    return {"accuracy": {"all": row, "samples": samples}}


def test_paired_points_pair_each_checkpoint_with_the_base_answers() -> None:
    base = [True, False, False, False]
    final = eval_result(base, [True, True, True, False])
    mid = eval_result(None, [False, True, False, False])  # --no-base, in another order
    mid["accuracy"]["samples"].reverse()
    points = paired_points([(0, final), (10, mid), (20, final)])
    assert [p[0] for p in points] == [0, 10, 20]
    assert points[1][1] == pytest.approx(0.0)  # one gained, one lost
    assert points[2][1] == pytest.approx(0.5) and points[2][2] < 0.5 < points[2][3]
    assert paired_points([(10, mid)]) == []  # no base answers: no panel


def test_curve_png_from_a_run_log(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    events = [
        {
            "v": 1,
            "type": "run_start",
            "config": {"game": {"temperature": 1.0}, "sqlm": {"solver_temperature": 0.7}},
        }
    ]
    events += [{"v": 1, "type": "metrics", "iteration": i, "metrics": {"sqlm/accuracy": i / 10}}
               for i in range(1, 6)]  # fmt: skip
    (run / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    assert sampling_temperature(run) == 0.7
    base, final = tmp_path / "base.json", tmp_path / "final.json"
    base.write_text(json.dumps(eval_result([True, False], [True, True])))
    final.write_text(json.dumps(eval_result(None, [True, True])))
    out = tmp_path / "curve.png"
    assert main([str(run), "--eval", f"0:{base}", "--eval", f"5:{final}", "-o", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000

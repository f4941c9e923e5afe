"""Plot a run's learning curve: training-time accuracy from ``events.jsonl`` and held-out
accuracy (with 95% intervals) from ``lsp-mlx eval`` JSON files of its checkpoints.

    python -m lsp_mlx.evaluation.curve RUN_DIR --eval 0:base.json --eval 30:final.json -o curve.png

``ITER:FILE`` gives the iteration an eval belongs to; iteration 0 reads the ``base`` entry.
When the iteration-0 file holds the base model's answers, a second panel shows each
checkpoint's paired difference adapter - base on the same problems (95% interval): the
accuracies' own intervals overlap long before the paired difference stops including zero.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from lsp_mlx.errors import UserError
from lsp_mlx.evaluation.stats import paired_difference
from lsp_mlx.events import EVENTS_FILE
from lsp_mlx.readers import read_json, read_jsonl


def read_events(run_dir: str | Path) -> list[dict[str, Any]]:
    """A run's events (a run folder or its events.jsonl); damage is one line."""
    path = Path(run_dir)
    path = path / EVENTS_FILE if path.is_dir() else path
    return read_jsonl(path, "the run's events", fix="repair or delete the damaged line")


def training_series(run_dir: str | Path, metric: str) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for e in read_events(run_dir):
        if e.get("type") == "metrics" and metric in e.get("metrics", {}):
            xs.append(int(e["iteration"]))
            ys.append(float(e["metrics"][metric]))
    return xs, ys


def moving_average(values: list[float], window: int) -> list[float]:
    out = []
    for i in range(len(values)):
        chunk = values[max(0, i - window + 1) : i + 1]
        out.append(sum(chunk) / len(chunk))
    return out


def heldout_points(
    evals: list[tuple[int, dict[str, Any]]],
) -> list[tuple[int, float, float, float]]:
    """(iteration, accuracy, ci_low, ci_high) of the adapter (the base at iteration 0)."""
    points = []
    for iteration, result in evals:
        row = result["accuracy"]["all"]
        entry = row["base"] if iteration == 0 or "adapter" not in row else row["adapter"]
        points.append((iteration, entry["estimate"], entry["ci_low"], entry["ci_high"]))
    return sorted(points)


def paired_points(
    evals: list[tuple[int, dict[str, Any]]],
) -> list[tuple[int, float, float, float]]:
    """(iteration, adapter - base, ci_low, ci_high) of every eval against the base answers of
    the iteration-0 eval, paired by question; [] when no base answers are at hand."""
    base = {
        s["question"]: s["base"]["correct"]
        for iteration, result in evals
        if iteration == 0
        for s in result["accuracy"]["samples"]
        if "base" in s
    }
    points = [(0, 0.0, 0.0, 0.0)] if base else []
    for iteration, result in evals:
        pairs = [
            (s["adapter"]["correct"], base[s["question"]])
            for s in result["accuracy"]["samples"]
            if iteration > 0 and "adapter" in s and s["question"] in base
        ]
        if pairs:
            d = paired_difference([a for a, _ in pairs], [b for _, b in pairs])
            points.append((iteration, d.estimate, d.low, d.high))
    return sorted(points)


def sampling_temperature(run_dir: Path) -> float | None:
    """The Solver's sampling temperature recorded in the run's ``run_start`` event."""
    for e in read_events(run_dir):
        if e.get("type") == "run_start":
            config = e.get("config", {})
            t = config.get("sqlm", {}).get("solver_temperature")
            return float(t if t is not None else config.get("game", {}).get("temperature", 1.0))
    return None


def _errorbar(ax: Any, points: list[tuple[int, float, float, float]], label: str) -> None:
    ax.errorbar(
        [p[0] for p in points],
        [p[1] for p in points],
        yerr=[[p[1] - p[2] for p in points], [p[3] - p[1] for p in points]],
        fmt="o-",
        color="tab:red",
        capsize=4,
        lw=2,
        label=label,
    )


def plot(
    run_dir: Path, evals: list[tuple[int, dict[str, Any]]], out: Path, metric: str, window: int
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    diffs = paired_points(evals)
    fig, axes = plt.subplots(
        2 if diffs else 1,
        1,
        figsize=(7, 6.5 if diffs else 4),
        dpi=120,
        sharex=True,
        squeeze=False,
        gridspec_kw={"height_ratios": [3, 2]} if diffs else None,
    )
    ax = axes[0][0]
    xs, ys = training_series(run_dir, metric)
    temperature = sampling_temperature(run_dir)
    sampled = f"sampled at T={temperature:g}" if temperature is not None else "sampled"
    if xs:
        ax.plot(xs, ys, color="0.75", lw=1, label=f"{metric} (per iteration, {sampled})")
        ax.plot(
            xs,
            moving_average(ys, window),
            color="tab:blue",
            lw=2,
            label=f"{metric}, moving average of {window}",
        )
    points = heldout_points(evals)
    if points:
        _errorbar(ax, points, "held-out accuracy, greedy (95% CI)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(f"{run_dir.name}: SQLM on arithmetic")
    if diffs:
        dx = axes[1][0]
        dx.axhline(0.0, color="0.3", lw=1)
        _errorbar(dx, diffs, "held-out adapter - base, paired (95% CI)")
        dx.set_ylabel("difference")
        dx.grid(alpha=0.3)
        dx.legend(loc="upper left", fontsize=8)
    axes[-1][0].set_xlabel("iteration")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("run_dir", type=Path)
    p.add_argument(
        "--eval",
        action="append",
        default=[],
        metavar="ITER:FILE",
        help="an lsp-mlx eval JSON at an iteration",
    )
    p.add_argument("--metric", default="sqlm/accuracy")
    p.add_argument("--window", type=int, default=5)
    p.add_argument("-o", "--output", type=Path, default=Path("curve.png"))
    args = p.parse_args(argv)
    evals = []
    for item in args.eval:
        iteration, _, path = item.partition(":")
        if not iteration.isdigit() or not path:
            p.error(f"--eval {item!r} must look like ITER:FILE, e.g. 30:final.json")
        evals.append((int(iteration), path))
    try:
        evals = [(i, read_json(f, "the eval result", fix="re-run lsp-mlx eval")) for i, f in evals]
        plot(args.run_dir, evals, args.output, args.metric, args.window)
    except UserError as e:
        print(f"curve: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

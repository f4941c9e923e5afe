"""Plot a run's learning curve: training-time accuracy from ``events.jsonl`` and held-out
accuracy (with 95% intervals) from ``lsp-mlx eval`` JSON files of its checkpoints.

    python -m lsp_mlx.evaluation.curve RUN_DIR --eval 0:base.json --eval 30:final.json -o curve.png

``ITER:FILE`` gives the iteration an eval belongs to; iteration 0 reads the ``base`` entry.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from lsp_mlx.events import read_events


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


def plot(
    run_dir: Path, evals: list[tuple[int, dict[str, Any]]], out: Path, metric: str, window: int
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    xs, ys = training_series(run_dir, metric)
    if xs:
        ax.plot(xs, ys, color="0.75", lw=1, label=f"{metric} (per iteration, sampled at T=1)")
        ax.plot(
            xs,
            moving_average(ys, window),
            color="tab:blue",
            lw=2,
            label=f"{metric}, moving average of {window}",
        )
    points = heldout_points(evals)
    if points:
        px = [p[0] for p in points]
        py = [p[1] for p in points]
        err = [[p[1] - p[2] for p in points], [p[3] - p[1] for p in points]]
        ax.errorbar(
            px,
            py,
            yerr=err,
            fmt="o-",
            color="tab:red",
            capsize=4,
            lw=2,
            label="held-out accuracy, greedy (95% CI)",
        )
    ax.set_xlabel("iteration")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(f"{run_dir.name}: SQLM on arithmetic")
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
        evals.append((int(iteration), json.loads(Path(path).read_text())))
    plot(args.run_dir, evals, args.output, args.metric, args.window)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Throughput of data-parallel self-play: 1 rank vs 2 ranks on this machine (issue 7).

    python benchmarks/distributed.py [--config configs/demo.yaml] [--iterations 4] [--backend mlx] [--set K=V]

Runs the same training four ways as real processes and reads their events.jsonl:
  1 rank, seeding batch  (a plain `lsp-mlx train`: all answers of an iteration in one batch)
  1 rank, seeding query  (one query's G answers at a time: the rank-count independent rule)
  2 ranks, seeding query (the data-parallel default: equal to the row above)
  2 ranks, seeding batch (each rank batches its own queries)
For each: the median seconds per iteration after the first (warm-up), the generated tokens
per second of generation time (all ranks' tokens over the slowest rank's generation time),
the update time, and the wall time including start-up. Two ranks on one machine share its
cores (and its GPU on a Mac), so they show the overhead of the split, not a speed-up; the
speed-up needs a second machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lsp_mlx.events import read_events  # noqa: E402


def run(
    ranks: int, seeding: str, args: argparse.Namespace, run_dir: Path, port: int
) -> dict[str, float]:
    train = [
        "--config",
        args.config,
        "--model",
        args.model,
        "--iterations",
        str(args.iterations),
        "--run-dir",
        str(run_dir),
        "--backend",
        args.backend,
        "--set",
        "train.checkpoint_every=0",
        *[x for item in args.set for x in ("--set", item)],
    ]
    env = {**os.environ, "LSP_MLX_SOLVER_SEEDING": seeding}
    if ranks == 1:
        cmd = [sys.executable, "-m", "lsp_mlx", "train", *train]
    else:
        cmd = [
            sys.executable,
            "-m",
            "lsp_mlx",
            "launch",
            "-n",
            str(ranks),
            "--port",
            str(port),
            "--",
            *train,
        ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    metrics = [e["metrics"] for e in read_events(run_dir) if e["type"] == "metrics"][1:] or [
        e["metrics"] for e in read_events(run_dir) if e["type"] == "metrics"
    ]

    def med(key: str) -> float:
        return statistics.median(m[key] for m in metrics)

    return {
        "iteration_s": med("time/iteration"),
        "tok_s": med("tokens_per_sec"),
        "generate_s": med("time/generate"),
        "update_s": med("time/update"),
        "wall_s": wall,
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--config", default="configs/demo.yaml")
    ap.add_argument("--model", default="default")
    ap.add_argument("--iterations", type=int, default=4)
    ap.add_argument("--backend", default="mlx", choices=("mlx", "torch"))
    ap.add_argument("--port", type=int, default=33323)
    ap.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="passed to lsp-mlx train"
    )
    args = ap.parse_args()

    rows = [(1, "batch"), (1, "query"), (2, "query"), (2, "batch")]
    load_before = os.getloadavg()
    results = []
    tmp = Path(tempfile.mkdtemp(prefix="lsp-dist-bench-"))
    try:
        for k, (ranks, seeding) in enumerate(rows):
            results.append(run(ranks, seeding, args, tmp / f"run{k}", args.port + 10 * k))
            print(f"  done: {ranks} rank(s), seeding {seeding}", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    load_after = os.getloadavg()

    print(
        f"\n{args.config} {' '.join(args.set)} on {args.model}, backend {args.backend}, {args.iterations} iterations "
        f"(median of iterations 2..{args.iterations}); {os.cpu_count()} CPU cores; "
        f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after"
    )
    print(
        f"{'ranks':>5} {'seeding':>8} {'s/iter':>8} {'gen tok/s':>10} {'generate s':>11} {'update s':>9} {'wall s':>8}"
    )
    for (ranks, seeding), r in zip(rows, results):
        print(
            f"{ranks:>5} {seeding:>8} {r['iteration_s']:8.2f} {r['tok_s']:10.1f} {r['generate_s']:11.2f} "
            f"{r['update_s']:9.2f} {r['wall_s']:8.1f}"
        )
    base = results[0]["iteration_s"]
    print(
        f"2 ranks (query) vs 1 rank (batch): {base / results[2]['iteration_s']:.2f}x iterations/s; "
        f"2 ranks (batch): {base / results[3]['iteration_s']:.2f}x"
    )


if __name__ == "__main__":
    main()

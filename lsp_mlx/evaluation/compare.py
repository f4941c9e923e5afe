"""Set games side by side: held-out gains, how their questions moved, and signs of collapse.

    python -m lsp_mlx.evaluation.compare docs/proof/games

The folder holds what ``docs/proof/games/reproduce.sh`` writes: for every game and training
seed ``logs/GAME-seedS-events.jsonl.gz`` (the run's log) and ``GAME-seedS-iterN-evalE.json``
(``lsp-mlx eval`` of the checkpoint at iteration N on the held-out set of seed E, its base
answers read from ``base-evalE.json``). Writes ``results.md`` (the tables) and
``curves.png`` (the paired held-out difference at each evaluated checkpoint, a line per run,
and the training solve rate per iteration) into the folder.

The dynamics come from the runs' own events (docs/algorithms.md §4): the solve rate is the
verifier's (the share of right answers on the questions whose truth it can compute), a
computable question is one the verifier can compute the truth of, early is the mean of the
first five iterations and late of the last five.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsp_mlx.errors import UserError
from lsp_mlx.evaluation.curve import moving_average
from lsp_mlx.readers import read_json, read_jsonl

EVAL_NAME = re.compile(r"^(?P<game>.+)-seed(?P<seed>\d+)-iter(?P<it>\d+)-eval(?P<eval>\d+)\.json$")
LOG_NAME = re.compile(r"^(?P<game>.+)-seed(?P<seed>\d+)-events\.jsonl(\.gz)?$")
EDGE = 5  # iterations averaged for "early" and "late"


@dataclass
class Run:
    game: str
    seed: int
    events: list[dict[str, Any]]
    evals: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)

    def series(self, kind: str, key: str) -> list[tuple[int, float]]:
        """(iteration, value) of one metric of ``metrics`` or ``diagnostics`` events."""
        out = []
        for e in self.events:
            value = e.get(kind, {}).get(key) if e.get("type") == kind else None
            if isinstance(value, (int, float)):
                out.append((int(e["iteration"]), float(value)))
        return out

    def values(self, kind: str, key: str) -> list[float]:
        return [v for _, v in self.series(kind, key)]

    @property
    def iterations(self) -> int:
        return max((i for i, _ in self.series("metrics", "loss")), default=0)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _edges(series: list[tuple[int, float]]) -> tuple[float | None, float | None]:
    values = [v for _, v in sorted(series)]
    return _mean(values[:EDGE]), _mean(values[-EDGE:])


def verifier_solve_rate(run: Run) -> list[tuple[int, float]]:
    """Per iteration, the share of the Solver's answers the verifier finds right on the
    questions whose truth it can compute: one measure for every game (SQLM's own solve rate
    is agreement with the majority under the label-free reward; LSP's rewards add R_Q)."""
    for kind, key in (("metrics", "sqlm/accuracy"), ("metrics", "reward/base_mean")):
        if series := run.series(kind, key):
            return series
    return run.series("diagnostics", "solve_rate/mean")


def dynamics(run: Run) -> dict[str, float | None]:
    """One run's training in numbers: budget, validity, difficulty and collapse signs."""
    rate = dict(run.series("metrics", "tokens_per_sec"))  # generated tokens / generate time
    tokens = [rate.get(i, 0.0) * t for i, t in run.series("metrics", "time/generate")]
    solve_early, solve_late = _edges(verifier_solve_rate(run))
    truth_known = dict(run.series("metrics", "sqlm/truth_known"))
    computable = [v * truth_known.get(i, 1.0) for i, v in run.series("diagnostics", "valid_share")]
    length_early, length_late = _edges(run.series("diagnostics", "answers/tokens_mean"))
    queries = Counter(
        str(e.get("query", "")).strip().lower()
        for e in run.events
        if e.get("type") == "game" and e.get("valid", True)
    )
    n_queries = sum(queries.values())
    return {
        "iterations": float(run.iterations),
        "generated_tokens": sum(tokens),
        "minutes": sum(run.values("metrics", "time/iteration")) / 60,
        "computable_share": _mean(computable),
        "solve_early": solve_early,
        "solve_late": solve_late,
        "learnable_share": _mean(run.values("diagnostics", "learnable_share")),
        "zero_variance_share": _mean(run.values("diagnostics", "zero_variance_share")),
        "near_duplicate_rate": _mean(run.values("diagnostics", "queries/near_duplicate_rate")),
        "distinct_questions": len(queries) / n_queries if n_queries else None,
        "top_question_share": queries.most_common(1)[0][1] / n_queries if n_queries else None,
        "answer_tokens_early": length_early,
        "answer_tokens_late": length_late,
    }


def read_folder(folder: Path) -> list[Run]:
    """Every run of the folder with its evals, in the order the games first appear."""
    runs: dict[tuple[str, int], Run] = {}
    logs = folder / "logs"
    for path in sorted(logs.iterdir()) if logs.is_dir() else []:
        if m := LOG_NAME.match(path.name):
            events = read_jsonl(path, "the run's events", fix="re-run reproduce.sh for this run")
            runs[(m["game"], int(m["seed"]))] = Run(m["game"], int(m["seed"]), events)
    for path in sorted(folder.glob("*.json")):
        m = EVAL_NAME.match(path.name)
        if not m:
            continue
        run = runs.get((m["game"], int(m["seed"])))
        if run is None:
            raise UserError(
                f"{path} has no run log logs/{m['game']}-seed{m['seed']}-events.jsonl.gz: "
                "copy the run's events.jsonl there (gzipped)"
            )
        result = read_json(path, "the eval result", fix="re-run lsp-mlx eval")
        run.evals[(int(m["it"]), int(m["eval"]))] = result["accuracy"]
    if not runs:
        raise UserError(f"{folder}: no run logs in {logs}: pass the folder reproduce.sh wrote")
    return list(runs.values())


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def _diff(row: dict[str, Any] | None) -> str:
    if not row or "difference" not in row:
        return "–"
    d = row["difference"]
    text = f"{100 * d['estimate']:+.1f} [{100 * d['ci_low']:+.1f}, {100 * d['ci_high']:+.1f}]"
    text = text.replace("-", "−")
    return f"**{text}**" if d.get("excludes_zero") else text


def accuracy_table(runs: list[Run]) -> list[str]:
    rows = [
        "| game | training seed | iteration | held-out set | all: base → after | adapter − base "
        "| unseen in training: n | adapter − base |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for run in runs:
        for (it, eval_seed), acc in sorted(run.evals.items()):
            every, unseen = acc["all"], acc.get("unseen")
            rows.append(
                f"| {run.game} | {run.seed} | {it} | seed {eval_seed} | "
                f"{_pct(every['base']['estimate'])} → {_pct(every['adapter']['estimate'])} | "
                f"{_diff(every)} | {unseen['adapter']['n'] if unseen else 0} | {_diff(unseen)} |"
            )
    return rows


def summary_table(runs: list[Run], first_set: int) -> list[str]:
    """A row per game: the paired difference on all problems at each run's last evaluated
    checkpoint, a column per (training seed, held-out set), ``first_set`` first."""
    columns = sorted(
        {(run.seed, e) for run in runs for _, e in run.evals},
        key=lambda c: (c[0], c[1] != first_set, c[1]),
    )
    rows = [
        "| game | " + " | ".join(f"training seed {s}, held-out set {e}" for s, e in columns) + " |",
        "| --- |" + " --- |" * len(columns),
    ]
    for game in dict.fromkeys(run.game for run in runs):
        cells = []
        for seed, eval_seed in columns:
            run = next((r for r in runs if r.game == game and r.seed == seed), None)
            its = [i for i, e in run.evals if e == eval_seed] if run else []
            cells.append(_diff(run.evals[(max(its), eval_seed)]["all"]) if its else "–")
        rows.append(f"| {game} | " + " | ".join(cells) + " |")
    return rows


def dynamics_table(runs: list[Run]) -> list[str]:
    rows = [
        "| game | seed | iterations | generated tokens | minutes | computable questions "
        "| solve rate early → late | learnable groups | zero-variance groups "
        "| near-duplicate questions | distinct questions | the most frequent question "
        "| answer tokens early → late |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for run in runs:
        d = dynamics(run)
        rows.append(
            f"| {run.game} | {run.seed} | {d['iterations']:.0f} | {d['generated_tokens']:,.0f} "
            f"| {d['minutes']:.0f} | {_pct(d['computable_share'])} "
            f"| {_pct(d['solve_early'])} → {_pct(d['solve_late'])} | {_pct(d['learnable_share'])} "
            f"| {_pct(d['zero_variance_share'])} | {_pct(d['near_duplicate_rate'])} "
            f"| {_pct(d['distinct_questions'])} | {_pct(d['top_question_share'])} "
            f"| {d['answer_tokens_early'] or 0:.1f} → {d['answer_tokens_late'] or 0:.1f} |"
        )
    return rows


def plot(runs: list[Run], out: Path, eval_seed: int) -> None:
    """A column per game: its held-out paired difference at each evaluated checkpoint (top)
    and its training solve rate (bottom), each training seed a line; shared axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    games = list(dict.fromkeys(run.game for run in runs))
    seeds = sorted({run.seed for run in runs})
    fig, axes = plt.subplots(
        2,
        len(games),
        figsize=(2.9 * len(games) + 1, 6),
        dpi=120,
        sharex=True,
        sharey="row",
        squeeze=False,
    )
    for col, game in enumerate(games):
        top, bottom = axes[0][col], axes[1][col]
        top.axhline(0.0, color="0.3", lw=1)
        for run in (r for r in runs if r.game == game):
            k = seeds.index(run.seed)
            colour = plt.get_cmap("tab10").colors[k]
            points = [(0, 0.0, 0.0, 0.0)]
            for (it, seed), acc in sorted(run.evals.items()):
                if seed == eval_seed:
                    d = acc["all"]["difference"]
                    points.append((it, d["estimate"], d["ci_low"], d["ci_high"]))
            shift = (k - (len(seeds) - 1) / 2) * 0.4  # the seeds' bars side by side
            top.errorbar(
                [p[0] + shift for p in points],
                [100 * p[1] for p in points],
                yerr=[
                    [100 * (p[1] - p[2]) for p in points],
                    [100 * (p[3] - p[1]) for p in points],
                ],
                fmt="o-",
                color=colour,
                capsize=3,
                lw=1.5,
                label=f"training seed {run.seed}",
            )
            series = verifier_solve_rate(run)
            bottom.plot(
                [i for i, _ in series],
                [100 * y for y in moving_average([v for _, v in series], EDGE)],
                color=colour,
                lw=1.5,
            )
        top.set_title(game)
        top.grid(alpha=0.3)
        bottom.grid(alpha=0.3)
        bottom.set_xlabel("iteration")
    axes[0][0].set_ylabel(f"held-out adapter − base, points\n(paired 95% CI, set {eval_seed})")
    axes[1][0].set_ylabel("training solve rate, %\n(verifier; moving average of 5)")
    axes[0][0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("folder", type=Path)
    p.add_argument(
        "--curve-eval-seed", type=int, default=1234, help="the held-out set of the figure"
    )
    args = p.parse_args(argv)
    try:
        runs = read_folder(args.folder)
        text = [
            "## Adapter − base on all held-out problems, at the last checkpoint (points)",
            "",
            *summary_table(runs, args.curve_eval_seed),
            "",
            "## Held-out accuracy (lsp-mlx eval; greedy, exact match; paired 95% intervals)",
            "",
            *accuracy_table(runs),
            "",
            "## Training dynamics (from each run's events.jsonl)",
            "",
            *dynamics_table(runs),
            "",
        ]
        (args.folder / "results.md").write_text("\n".join(text))
        plot(runs, args.folder / "curves.png", args.curve_eval_seed)
    except UserError as e:
        print(f"compare: error: {e}", file=sys.stderr)
        return 2
    print("\n".join(text))
    print(f"wrote {args.folder / 'results.md'} and {args.folder / 'curves.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

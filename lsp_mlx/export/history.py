"""A run's history as the exporter sees it: metrics per iteration from ``events.jsonl``, and
the reward / loss / KL curves drawn from them into a PNG (matplotlib, no display needed)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

CURVES_FILE = "training_curves.png"


@dataclass
class RunHistory:
    """What the events of a run say, reduced to what a card shows."""

    metrics: list[tuple[int, dict[str, float]]] = field(
        default_factory=list
    )  # (iteration, metrics)
    games: list[str] = field(default_factory=list)  # game names seen in game events
    planned_iterations: int | None = None
    device: str | None = None
    status: str | None = None

    @property
    def trained_iterations(self) -> int | None:
        return self.metrics[-1][0] if self.metrics else None

    def series(self, name: str) -> tuple[list[int], list[float]]:
        points = [(it, m[name]) for it, m in self.metrics if isinstance(m.get(name), (int, float))]
        return [p[0] for p in points], [float(p[1]) for p in points]


def read_history(events_path: Path | None, up_to: int | None = None) -> RunHistory:
    """Metrics up to iteration ``up_to`` (the exported checkpoint), when given."""
    from lsp_mlx.events import read_events

    history = RunHistory()
    if events_path is None:
        return history
    by_iteration: dict[int, dict[str, float]] = {}
    for event in read_events(events_path):
        kind = event.get("type")
        if kind == "run_start":
            history.planned_iterations = event.get("iterations")
            history.device = event.get("device")
        elif kind == "metrics" and isinstance(event.get("metrics"), dict) and "iteration" in event:
            # a resumed run replays iterations: the last record of an iteration wins
            by_iteration[int(event["iteration"])] = event["metrics"]
        elif kind == "game" and event.get("game") and event["game"] not in history.games:
            history.games.append(event["game"])
        elif kind == "run_end":
            history.status = event.get("status")
    history.metrics = [
        (it, by_iteration[it]) for it in sorted(by_iteration) if up_to is None or it <= up_to
    ]
    return history


def _curve_groups(history: RunHistory) -> list[tuple[str, list[str]]]:
    names = sorted({k for _, m in history.metrics for k in m})
    rewards = [
        n
        for n in names
        if (n.startswith("reward/") and n.endswith("_mean")) or n == "self_reward/mean"
    ]
    losses = [n for n in names if n == "loss" or n.startswith("loss/")]
    kls = [n for n in names if n == "kl" or n.startswith("kl/")]
    groups = [("reward", rewards), ("loss", losses), ("KL to the base", kls)]
    return [(title, keys) for title, keys in groups if keys]


def plot_curves(history: RunHistory, path: Path, title: str) -> bool:
    """Write the reward / loss / KL curves to ``path``; False when there is nothing to plot."""
    groups = _curve_groups(history)
    if not groups:
        return False
    import matplotlib

    matplotlib.use("Agg")  # no display on servers; must precede pyplot
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups), 3.4), squeeze=False)
    for ax, (group, keys) in zip(axes[0], groups):
        for key in keys:
            xs, ys = history.series(key)
            ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, markersize=3, label=key)
        ax.set_title(group)
        ax.set_xlabel("iteration")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True

"""What every number on the dashboard means: one home for the labels, meanings and ranges.

The sparkline rows, the plots, the help screen and the footer line of the selected metric
all read `METRICS`, so a metric is explained once and the same way everywhere. The
formulas behind the names are in docs/algorithms.md (§1 LSP, §2 SQLM, §4 diagnostics).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    key: str  # the name in the metrics event
    label: str  # at most 9 characters: the sparkline rows' name column
    meaning: str
    good: str  # which direction is good, in words
    unit: str
    bounds: tuple[float, float] | None = None  # the quantity's own range, when it has one


METRICS: dict[str, Metric] = {
    m.key: m
    for m in [
        Metric(
            "reward/solver_mean",
            "Solver R",
            "mean total reward of the Solver's answers: R from the reward source, plus R_Q "
            "from the reference judge in LSP (total = R + R_Q; R alone in LSP-Zero and SQLM)",
            "up",
            "reward units (R and R_Q each 0..1 for the built-in sources)",
        ),
        Metric(
            "reward/challenger_mean",
            "Query R",
            "mean reward of the queries (Challenger/Proposer): -V(q) in LSP-Zero, "
            "-V(q) + V_Q(q) in LSP, 1 for a problem inside the band in SQLM",
            "neither: it moves against Solver R; a steady value means a balanced game",
            "reward units",
        ),
        Metric(
            "self_reward/mean",
            "Self-rew",
            "mean R_Q: the reference model judging each answer on the 0..7 rubric, scaled to 0..1",
            "up",
            "share of the 7 rubric points",
            (0.0, 1.0),
        ),
        Metric(
            "loss",
            "Loss",
            "the policy-gradient loss of the update (Solver + weighted query term); advantages "
            "are centred, so it sits near 0 and is not a quality score",
            "neither: watch for spikes",
            "per-sample weighted sum",
        ),
        Metric(
            "kl",
            "KL",
            "mean over the trained sequences of log pi(c|p) - log pi_ref(c|p), the policy "
            "against the reference (the base model, adapter off): how far training has moved "
            "the model. This k1 estimate (whatever train.kl_estimator the loss uses) of one "
            "sampled sequence can be negative, as only its expectation is >= 0, so a small "
            "negative mean over few sequences is normal",
            "small (near 0)",
            "nats per sequence",
        ),
        Metric(
            "zero_variance_groups",
            "Zero-var",
            "share of groups whose answers all got the same reward: they carry no learning signal",
            "down",
            "share of groups",
            (0.0, 1.0),
        ),
        Metric(
            "tokens_per_sec",
            "Tokens/s",
            "tokens generated per second of the generation phase (queries and answers)",
            "up",
            "tokens / s",
        ),
        Metric(
            "loss/solver",
            "Loss Sol",
            "the Solver's part of the loss",
            "neither",
            "per-sample weighted sum",
        ),
        Metric(
            "loss/challenger",
            "Loss Q",
            "the query (Challenger/Proposer) part of the loss, before game.query_weight",
            "neither",
            "per-sample weighted sum",
        ),
        Metric(
            "reward/base_mean",
            "R",
            "mean R of the answers from the reward source alone (without R_Q)",
            "up",
            "reward units",
        ),
        Metric(
            "answer_tokens_mean",
            "Ans tok",
            "mean length of the Solver's answers",
            "neither: answers at game.answer_max_tokens were cut off",
            "tokens",
        ),
        Metric(
            "time/iteration",
            "s/iter",
            "wall time of one iteration (generate, score, update)",
            "down",
            "seconds",
        ),
        Metric(
            "memory/peak_gb",
            "Memory",
            "peak accelerator/host memory of the iteration",
            "down",
            "GB",
        ),
        Metric(
            "judge/unparsable",
            "Unparsed",
            "share of judgements without a readable score (scored 0)",
            "down",
            "share of answers",
            (0.0, 1.0),
        ),
        Metric(
            "sqlm/accuracy",
            "Accuracy",
            "SQLM: share of answers equal to the known true answer",
            "up",
            "share of answers",
            (0.0, 1.0),
        ),
        Metric(
            "sqlm/in_band",
            "In band",
            "SQLM: share of problems neither always nor never solved",
            "up",
            "share of problems",
            (0.0, 1.0),
        ),
    ]
}


def metric(key: str) -> Metric:
    """The glossary entry of ``key``; an unknown metric gets a plain one (no claim about it)."""
    return METRICS.get(key) or Metric(key, key.rsplit("/", 1)[-1][:9], key, "—", "—")


def explain(key: str) -> str:
    """One line for a footer or tooltip: label, meaning, good direction, unit."""
    m = metric(key)
    return f"{m.label}: {m.meaning}. Good: {m.good}. Unit: {m.unit}."

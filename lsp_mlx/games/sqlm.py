"""Self-Questioning Language Models (arXiv 2508.03682; ALGORITHMS.md §2).

One iteration, top to bottom:
1. The Proposer (the policy, prompted with the topic ``game.task``) writes N problems.
   A problem that cannot be parsed (nothing between the markers; for ``solver_reward:
   exact`` no computable arithmetic; for code no tests) is masked out of the loss.
2. The Solver (the same policy) samples n = ``game.group_size`` answers per problem; the n
   answers share one prefill.
3. Rewards (`lsp_mlx.verifiers.tasks`): arithmetic answers are reduced to their final
   number; the Solver gets 1 for agreeing with the majority (the paper) or, with ``exact``,
   for the true value; code gets the fraction of the Proposer's tests it passes (sandboxed).
   The Proposer's reward is the difficulty rule ``sqlm.proposer_reward`` of the problem's
   success count (`lsp_mlx.verifiers.difficulty`): the paper's band, the official code's
   band (>= 2 agree), R-Zero's uncertainty minus its near-duplicate penalty, or Absolute
   Zero's 1 - solve rate.
4. Advantages, GRPO-style as in the paper: the Solver's rewards centred on their group mean
   and divided by the group's population std + 1e-4 (``sqlm.normalize_std: false`` keeps the
   centring only, like LSP); the Proposer's rewards likewise over the batch of valid
   problems. A group with equal rewards has advantage 0. ``sqlm.solver_temperature`` below 1
   samples the Solver off the temperature-1 policy the loss assumes (a common GRPO practice
   that trades a small bias for far more groups with signal on a small model).
5. Loss terms: Solver samples weigh 1/(N_valid*n), Proposer samples alpha_Ch/N_valid, and the
   Proposer's are included only every ``sqlm.proposer_every`` iterations (paper: 5). The KL
   to the reference is the backend's (``train.beta``; paper: 0.001).

Each `Game` records ``extra["solve_rate"]`` (read by `lsp_mlx.diagnostics`) and, where the
problem's arithmetic is computable, the true accuracy, so the log shows whether the
label-free majority tracks the truth.
"""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING

from lsp_mlx.games.advantages import mean, std
from lsp_mlx.games.base import Rollout
from lsp_mlx.records import Answer, Game, PolicySample
from lsp_mlx.verifiers.difficulty import cluster_shares, group_advantages, proposer_reward
from lsp_mlx.verifiers.sandbox import SandboxLimits
from lsp_mlx.verifiers.tasks import (
    PROBLEM_START,
    ArithmeticTask,
    CodeTask,
    Proposal,
    Scored,
    make_task,
    with_references,
)

BUFFER_SIZE = 512

if TYPE_CHECKING:
    from lsp_mlx.backends.base import Backend, Completion
    from lsp_mlx.config import Config


class SQLMGame:
    name = "sqlm"

    def __init__(self, config: Config, task: ArithmeticTask | CodeTask) -> None:
        self.config = config
        self.task = task
        # Absolute Zero-style reference buffer: distinct valid problems, oldest dropped first
        self.buffer: list[str] = list(
            dict.fromkeys(p.strip() for p in config.sqlm.seed_problems if p.strip())
        )

    def _trained_tokens(self, backend: Backend, c: Completion) -> list[int]:
        eos = getattr(backend, "eos_token_id", None)
        return c.tokens + [eos] if c.finish_reason == "stop" and eos is not None else list(c.tokens)

    def proposer_prompt(self, backend: Backend, references: list[str] | None = None) -> list[int]:
        """The Proposer's prompt, ending with the start marker and ``sqlm.problem_prefix``: the
        prefix is part of the prompt, so the Proposer is trained only on what it wrote."""
        messages = with_references(
            self.task.proposer_messages(self.config.game.task), references or []
        )
        # a trailing space would be tokenised on its own, unlike in text the model has read
        prefix = self.config.sqlm.problem_prefix.rstrip()
        return backend.chat_prompt(messages) + backend.encode(PROBLEM_START + prefix)

    def _propose(
        self, backend: Backend, iteration: int
    ) -> tuple[list[list[int]], list[Completion]]:
        """N proposals with their prompts: one shared prompt, or with ``sqlm.references`` one
        prompt per proposal, each with its own seeded draw from the buffer."""
        g, q = self.config.game, self.config.sqlm
        kw = {"max_tokens": g.challenger_max_tokens, "temperature": g.temperature, "top_p": g.top_p}
        if q.references == 0 or not self.buffer:
            prompt = self.proposer_prompt(backend)
            return [prompt] * g.num_queries, backend.generate([prompt], n=g.num_queries, **kw)[0]
        rng = random.Random(f"{self.config.train.seed}:{iteration}")
        k = min(q.references, len(self.buffer))
        prompts = [
            self.proposer_prompt(backend, rng.sample(self.buffer, k)) for _ in range(g.num_queries)
        ]
        return prompts, [group[0] for group in backend.generate(prompts, n=1, **kw)]

    def state_dict(self) -> dict[str, list[str]]:
        """What a checkpoint must keep for an exact resume: the reference buffer."""
        return {"buffer": list(self.buffer)}

    def load_state_dict(self, state: dict[str, list[str]]) -> None:
        self.buffer = list(state.get("buffer", self.buffer))

    def _remember(self, problems: list[str]) -> None:
        for p in problems:
            if p not in self.buffer:
                self.buffer.append(p)
        del self.buffer[: max(0, len(self.buffer) - BUFFER_SIZE)]

    def play(self, backend: Backend, iteration: int) -> Rollout:
        g, q = self.config.game, self.config.sqlm
        t0 = time.perf_counter()

        # 1. Proposer: N problems
        prop_prompts, prop = self._propose(backend, iteration)
        prefix = q.problem_prefix.rstrip()
        proposals = [self.task.parse(prefix + c.text) for c in prop]
        live = [i for i, p in enumerate(proposals) if p.valid]

        # 2. Solver: n answers per valid problem
        sol_prompts = [backend.chat_prompt(self.task.solver_messages(proposals[i])) for i in live]
        answers = (
            backend.generate(
                sol_prompts,
                n=g.group_size,
                max_tokens=g.solver_max_tokens,
                temperature=g.temperature if q.solver_temperature is None else q.solver_temperature,
                top_p=g.top_p,
            )
            if live
            else []
        )
        t1 = time.perf_counter()

        # 3. Rewards
        texts = [[a.text for a in group] for group in answers]
        scored = self.task.score([proposals[i] for i in live], texts) if live else []
        shares = cluster_shares([proposals[i].problem for i in live], q.duplicate_threshold)
        prop_rewards = [
            proposer_reward(
                s.successes, g.group_size, q.proposer_reward, share, q.repetition_penalty
            )
            for s, share in zip(scored, shares)
        ]
        t2 = time.perf_counter()

        # 4. Advantages
        sol_adv = [group_advantages(s.rewards, q.normalize_std) for s in scored]
        prop_adv = group_advantages(prop_rewards, q.normalize_std) if live else []
        update_proposer = iteration % q.proposer_every == 0

        # 5. Loss terms and records
        n_live = max(len(live), 1)
        samples: list[PolicySample] = []
        games: list[Game] = []
        for k, i in enumerate(live):
            s = scored[k]
            flat = max(s.rewards) - min(s.rewards) <= 1e-9
            if not (flat and self.config.train.skip_zero_variance):
                for a, adv in zip(answers[k], sol_adv[k]):
                    samples.append(
                        PolicySample(
                            sol_prompts[k],
                            self._trained_tokens(backend, a),
                            adv,
                            1.0 / (n_live * g.group_size),
                            "solver",
                        )
                    )
            if update_proposer:
                samples.append(
                    PolicySample(
                        prop_prompts[i],
                        self._trained_tokens(backend, prop[i]),
                        prop_adv[k],
                        g.alpha_challenger / n_live,
                        "proposer",
                    )
                )
            games.append(
                self._record(
                    iteration,
                    i,
                    proposals[i],
                    prop[i],
                    answers[k],
                    s,
                    prop_rewards[k],
                    prop_adv[k],
                    shares[k],
                )
            )
        for i, p in enumerate(proposals):
            if not p.valid:
                games.append(
                    Game(
                        iteration=iteration,
                        index=i,
                        game=self.name,
                        query=p.problem or prop[i].text,
                        query_tokens=len(prop[i].tokens),
                        answers=[],
                        value=0.0,
                        challenger_reward=0.0,
                        challenger_advantage=0.0,
                        valid=False,
                        extra={"reason": p.reason},
                    )
                )
        games.sort(key=lambda game: game.index)
        band_only = self.config.sqlm.buffer_band_only
        self._remember(
            [
                proposals[i].problem
                for k, i in enumerate(live)
                if not band_only or 0 < scored[k].solve_rate < 1
            ]
        )

        metrics = self._metrics(
            prop, proposals, answers, scored, prop_rewards, sol_adv, prop_adv, update_proposer
        )
        generated = sum(len(c.tokens) for c in prop) + sum(
            len(a.tokens) for grp in answers for a in grp
        )
        return Rollout(
            games=games,
            samples=samples,
            metrics=metrics,
            timings={"generate": t1 - t0, "score": t2 - t1},
            generated_tokens=generated,
        )

    def _record(
        self,
        iteration: int,
        index: int,
        proposal: Proposal,
        prop: Completion,
        group: list[Completion],
        s: Scored,
        reward: float,
        advantage: float,
        share: float,
    ) -> Game:
        adv = group_advantages(s.rewards, self.config.sqlm.normalize_std)
        extra = {k: v for k, v in s.extra.items() if k != "parsed"}
        extra.update(solve_rate=s.solve_rate, cluster_share=share, format_ok=True)
        if proposal.tests:
            extra["tests"] = proposal.tests
        return Game(
            iteration=iteration,
            index=index,
            game=self.name,
            query=proposal.problem,
            query_tokens=len(prop.tokens),
            answers=[
                Answer(
                    text=a.text,
                    tokens=len(a.tokens),
                    reward=r,
                    advantage=ad,
                    reward_parts=parts,
                    finish_reason=a.finish_reason,
                )
                for a, r, ad, parts in zip(group, s.rewards, adv, s.parts)
            ],
            value=mean(s.rewards),
            challenger_reward=reward,
            challenger_advantage=advantage,
            extra=extra,
        )

    def _metrics(
        self,
        prop: list[Completion],
        proposals: list[Proposal],
        answers: list[list[Completion]],
        scored: list[Scored],
        prop_rewards: list[float],
        sol_adv: list[list[float]],
        prop_adv: list[float],
        update_proposer: bool,
    ) -> dict[str, float]:
        flat_rewards = [r for s in scored for r in s.rewards]
        answer_tokens = [len(a.tokens) for group in answers for a in group]
        rates = [s.solve_rate for s in scored]
        metrics = {
            "reward/solver_mean": mean(flat_rewards),
            "reward/solver_std": std(flat_rewards),
            "reward/challenger_mean": mean(prop_rewards),
            "reward/challenger_std": std(prop_rewards),
            "advantage/solver_abs_mean": mean([abs(x) for grp in sol_adv for x in grp]),
            "advantage/challenger_abs_mean": mean([abs(x) for x in prop_adv]),
            "zero_variance_groups": mean(
                [1.0 if max(s.rewards) - min(s.rewards) <= 1e-9 else 0.0 for s in scored]
            )
            if scored
            else 1.0,
            "answer_tokens_mean": mean(answer_tokens),
            "query_tokens_mean": mean([len(c.tokens) for c in prop]),
            "challenger/invalid": sum(not p.valid for p in proposals) / max(len(proposals), 1),
            "sqlm/solve_rate_mean": mean(rates),
            "sqlm/in_band": mean([1.0 if 0 < r < 1 else 0.0 for r in rates]),
            "sqlm/proposer_updated": 1.0 if update_proposer else 0.0,
        }
        truth_known = [s for s in scored if "accuracy" in s.extra]
        if truth_known:
            # the honest measure: how often the Solver is right, and whether the majority is
            metrics["sqlm/accuracy"] = mean([s.extra["accuracy"] for s in truth_known])
            metrics["sqlm/majority_correct"] = mean(
                [s.extra["majority_correct"] for s in truth_known]
            )
            metrics["sqlm/truth_known"] = len(truth_known) / max(len(scored), 1)
        if any("unparsed" in s.extra for s in scored):
            metrics["sqlm/unparsed_answers"] = sum(
                s.extra.get("unparsed", 0) for s in scored
            ) / max(len(flat_rewards), 1)
        if any("timeouts" in s.extra for s in scored):
            metrics["sqlm/sandbox_timeouts"] = float(
                sum(s.extra.get("timeouts", 0) for s in scored)
            )
            metrics["sqlm/no_code"] = sum(s.extra.get("no_code", 0) for s in scored) / max(
                len(flat_rewards), 1
            )
        return metrics


def make_sqlm(config: Config, backend: Backend) -> SQLMGame:
    q = config.sqlm
    limits = SandboxLimits(
        timeout_s=q.sandbox_timeout,
        cpu_seconds=max(1, int(q.sandbox_timeout) + 1),
        memory_mb=q.sandbox_memory_mb,
    )
    return SQLMGame(config, make_task(q.verifier, q.solver_reward, limits))

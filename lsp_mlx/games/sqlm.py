"""Self-Questioning Language Models (arXiv 2508.03682; docs/algorithms.md §2).

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
5. Loss terms: Solver samples weigh 1/(N_valid*n), Proposer samples alpha_Ch/N_valid
   (``game.query_weight``), and the
   Proposer's are included only every ``sqlm.proposer_every`` iterations (paper: 5). The KL
   to the reference is the backend's (``train.beta``; paper: 0.001).

State: the reference buffer (``sqlm.references``) is the game's `state_dict`, kept in every
checkpoint; each proposal's draw from it is seeded by ``(train.seed, iteration)``.

Each `Game` records ``extra["solve_rate"]`` (read by `lsp_mlx.diagnostics`) and, where the
problem's arithmetic is computable, the true accuracy, so the log shows whether the
label-free majority tracks the truth.
"""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING, Any

from lsp_mlx.games import base
from lsp_mlx.games.advantages import group_advantages, mean, zero_variance
from lsp_mlx.games.base import Rollout
from lsp_mlx.records import Game, PolicySample
from lsp_mlx.verifiers.difficulty import cluster_shares, proposer_reward
from lsp_mlx.verifiers.sandbox import SandboxLimits, check_isolation
from lsp_mlx.verifiers.tasks import (
    PROBLEM_START,
    ArithmeticTask,
    CodeTask,
    Proposal,
    Scored,
    make_task,
    with_references,
)

if TYPE_CHECKING:
    from lsp_mlx.backends.base import Backend, Completion
    from lsp_mlx.config import Config
    from lsp_mlx.distributed import World

BUFFER_SIZE = 512


class SQLMGame:
    name = "sqlm"

    def __init__(self, config: Config, task: ArithmeticTask | CodeTask) -> None:
        self.config = config
        self.task = task
        # Absolute Zero-style reference buffer: distinct valid problems, oldest dropped first
        self.buffer: list[str] = list(
            dict.fromkeys(p.strip() for p in config.sqlm.seed_problems if p.strip())
        )

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint must keep for an exact resume: the reference buffer."""
        return {"buffer": list(self.buffer)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.buffer = list(state.get("buffer", self.buffer))

    def proposer_prompt(self, backend: Backend, references: list[str] | None = None) -> list[int]:
        """The Proposer's prompt, ending with the start marker and ``game.query_prefix``: the
        prefix is part of the prompt, so the Proposer is trained only on what it wrote."""
        messages = with_references(
            self.task.proposer_messages(self.config.game.task), references or []
        )
        # a trailing space would be tokenised on its own, unlike in text the model has read
        prefix = self.config.game.query_prefix.rstrip()
        return backend.chat_prompt(messages) + backend.encode(PROBLEM_START + prefix)

    def _propose(
        self, backend: Backend, iteration: int
    ) -> tuple[list[list[int]], list[Completion]]:
        """N proposals with their prompts: one shared prompt, or with ``sqlm.references`` one
        prompt per proposal, each with its own draw from the buffer."""
        g, q = self.config.game, self.config.sqlm
        kw = {"max_tokens": g.query_max_tokens, "temperature": g.temperature, "top_p": g.top_p}
        if q.references == 0 or not self.buffer:
            prompt = self.proposer_prompt(backend)
            return [prompt] * g.num_queries, backend.generate([prompt], n=g.num_queries, **kw)[0]
        rng = random.Random(f"{self.config.train.seed}:{iteration}")
        k = min(q.references, len(self.buffer))
        prompts = [
            self.proposer_prompt(backend, rng.sample(self.buffer, k)) for _ in range(g.num_queries)
        ]
        return prompts, [group[0] for group in backend.generate(prompts, n=1, **kw)]

    def _remember(self, problems: list[str]) -> None:
        for p in problems:
            if p not in self.buffer:
                self.buffer.append(p)
        del self.buffer[: max(0, len(self.buffer) - BUFFER_SIZE)]

    def play(self, backend: Backend, iteration: int) -> Rollout:
        g, q = self.config.game, self.config.sqlm
        eos = backend.eos_token_id
        t0 = time.perf_counter()

        # 1. Proposer: N problems
        prop_prompts, prop = self._propose(backend, iteration)
        prefix = g.query_prefix.rstrip()
        proposals = [self.task.parse(prefix + c.text) for c in prop]
        live = [i for i, p in enumerate(proposals) if p.valid]

        # 2. Solver: n answers per valid problem
        sol_prompts = [backend.chat_prompt(self.task.solver_messages(proposals[i])) for i in live]
        temperature = g.temperature if q.solver_temperature is None else q.solver_temperature
        answers = (
            backend.generate(
                sol_prompts,
                n=g.group_size,
                max_tokens=g.answer_max_tokens,
                temperature=temperature,
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
        prop_adv = group_advantages(prop_rewards, q.normalize_std)
        update_proposer = iteration % q.proposer_every == 0

        # 5. Loss terms and records
        w_answer, w_query = base.loss_weights(len(live), g.group_size, g.query_weight)
        samples: list[PolicySample] = []
        games = [
            base.invalid_game(
                iteration, i, self.name, p.problem or prop[i].text, len(prop[i].tokens),
                {"reason": p.reason},
            )
            for i, p in enumerate(proposals)
            if not p.valid
        ]  # fmt: skip
        for k, i in enumerate(live):
            s = scored[k]
            if not (self.config.train.skip_zero_variance and zero_variance(s.rewards)):
                samples += base.answer_samples(
                    sol_prompts[k], answers[k], sol_adv[k], w_answer, eos
                )
            if update_proposer:
                tokens = base.trained_tokens(prop[i], eos)
                samples.append(
                    PolicySample(prop_prompts[i], tokens, prop_adv[k], w_query, "proposer")
                )
            games.append(
                self._record(iteration, i, proposals[i], prop[i], answers[k], s, sol_adv[k],
                             prop_rewards[k], prop_adv[k], shares[k])
            )  # fmt: skip
        games.sort(key=lambda game: game.index)
        band_only = q.buffer_band_only
        self._remember(
            [
                proposals[i].problem
                for k, i in enumerate(live)
                if not band_only or 0 < scored[k].solve_rate < 1
            ]
        )

        answer_tokens = [len(a.tokens) for group in answers for a in group]
        metrics = base.shared_metrics(
            [s.rewards for s in scored],
            sol_adv,
            prop_rewards,
            prop_adv,
            answer_tokens,
            [len(c.tokens) for c in prop],
        )
        metrics.update(self._own_metrics(scored, update_proposer))
        return Rollout(
            games=games,
            samples=samples,
            metrics=metrics,
            timings={"generate": t1 - t0, "score": t2 - t1},
            generated_tokens=sum(len(c.tokens) for c in prop) + sum(answer_tokens),
        )

    def _record(
        self,
        iteration: int,
        index: int,
        proposal: Proposal,
        prop: Completion,
        group: list[Completion],
        s: Scored,
        advantages: list[float],
        reward: float,
        advantage: float,
        share: float,
    ) -> Game:
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
            answers=base.answer_records(group, s.rewards, advantages, s.parts),
            value=mean(s.rewards),
            query_reward=reward,
            query_advantage=advantage,
            extra=extra,
        )

    def _own_metrics(self, scored: list[Scored], update_proposer: bool) -> dict[str, float]:
        """SQLM's metrics beyond the shared ones: solve rates, truth where known, sandbox."""
        n_answers = max(sum(len(s.rewards) for s in scored), 1)
        rates = [s.solve_rate for s in scored]
        metrics = {
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
            unparsed = sum(s.extra.get("unparsed", 0) for s in scored)
            metrics["sqlm/unparsed_answers"] = unparsed / n_answers
        if any("timeouts" in s.extra for s in scored):
            timeouts = sum(s.extra.get("timeouts", 0) for s in scored)
            metrics["sqlm/sandbox_timeouts"] = float(timeouts)
            metrics["sqlm/no_code"] = sum(s.extra.get("no_code", 0) for s in scored) / n_answers
        return metrics


def make_sqlm(config: Config, backend: Backend, world: World) -> SQLMGame:
    q = config.sqlm
    limits = SandboxLimits(
        timeout_s=q.sandbox_timeout,
        cpu_seconds=max(1, int(q.sandbox_timeout) + 1),
        memory_mb=q.sandbox_memory_mb,
        isolation=q.sandbox_isolation,
    )
    if q.verifier == "code":  # refused here, before the run starts, where it cannot be had
        check_isolation(q.sandbox_isolation)
    return SQLMGame(config, make_task(q.verifier, q.solver_reward, limits))

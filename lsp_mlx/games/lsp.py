"""Language Self-Play: LSP and LSP-Zero (arXiv 2509.07414; docs/algorithms.md §1).

One iteration, top to bottom:
1. The Challenger (the policy, prompted with the task and template) writes N queries.
2. The Solver (the same policy) writes G answers per query; the G answers share one prefill.
3. The reward source scores every answer: R(q_i, a_i^j).
   LSP adds the self-reward R_Q(q_i, a_i^j): the reference model judging on the 0..7 rubric.
4. V(q_i) = mean_j R; the Solver's reward is R (+ R_Q for LSP) and its advantage is that
   reward minus its group mean (no std division). The Challenger's reward is -V(q_i)
   (+ V_Q(q_i) for LSP) and its advantage that reward minus the batch mean.
5. The loss terms: Solver samples weigh 1/(N*G), Challenger samples alpha_Ch/N
   (``game.query_weight``; the backend adds the KL to the adapter-off reference, weighted by beta).

Choices the paper leaves open, made here and documented in the config help: G = 4,
alpha_Ch = 1.0; queries are parsed between <input> markers (the generation prompt ends with
the start marker); a query that comes out empty is masked out of both losses and of the
Challenger baseline, and counted in ``challenger/invalid``; completion tokens include the
EOS token when the model stopped, so it also learns when to stop.

The game keeps no state between iterations: every draw comes from the sampler the trainer
seeds with ``(train.seed, iteration)``, so a checkpoint needs nothing from it.

Data-parallel runs (`lsp_mlx.distributed`): ``world`` is the `World` the game is built with
(one process: every collective below is the identity). Every rank draws the same N queries
(the trainer seeds every rank alike) and plays its contiguous share; a query's G answers stay
on its rank, so V(q_i) and the Solver advantages are local. The Challenger baseline ``Vbar``,
the number of live queries in the weights 1/(N*G) and alpha_Ch/N, the game records and the
metrics are global (gathered in query order). Solver seeding rule: with
``world.seeding == "query"`` query i's answers are drawn with
``query_seed(train.seed, iteration, i)``, one query at a time, so the answers do not depend on
the rank count; with ``"batch"`` a rank samples all its answers in one batch, from the
iteration's stream (one process) or from ``rank_seed(train.seed, iteration, rank)``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from lsp_mlx.distributed import query_seed, rank_seed
from lsp_mlx.games.advantages import (
    challenger_rewards,
    group_advantages,
    group_values,
    mean,
    zero_variance,
)
from lsp_mlx.games.base import (
    Rollout,
    Stateless,
    answer_records,
    answer_samples,
    invalid_game,
    loss_weights,
    shared_metrics,
    trained_tokens,
)
from lsp_mlx.games.prompts import QUERY_START, challenger_messages, parse_query, solver_messages
from lsp_mlx.records import Game, PolicySample
from lsp_mlx.rewards import RewardFn, check_rewards, make_judge, make_reward

if TYPE_CHECKING:
    from lsp_mlx.backends.base import Backend, Completion
    from lsp_mlx.config import Config
    from lsp_mlx.distributed import World
    from lsp_mlx.rewards.judge import Judge


class LSPGame(Stateless):
    def __init__(self, config: Config, reward: RewardFn, judge: Judge | None, world: World) -> None:
        self.config = config
        self.name = config.game.name
        self.reward = reward
        self.judge = judge  # None for LSP-Zero
        self.world = world

    def _solve(
        self, backend: Backend, prompts: list[list[int]], indices: list[int], iteration: int
    ) -> list[list[Completion]]:
        """G answers per prompt, seeded by the rule in the module docstring."""
        g = self.config.game
        kw = {
            "n": g.group_size,
            "max_tokens": g.answer_max_tokens,
            "temperature": g.temperature,
            "top_p": g.top_p,
        }
        if self.world.seeding == "query":
            out: list[list[Completion]] = []
            for prompt, i in zip(prompts, indices):
                backend.seed(query_seed(self.config.train.seed, iteration, i))
                out += backend.generate([prompt], **kw)
            return out
        if self.world.size > 1:
            backend.seed(rank_seed(self.config.train.seed, iteration, self.world.rank))
        return backend.generate(prompts, **kw)

    def play(self, backend: Backend, iteration: int) -> Rollout:
        g, world = self.config.game, self.world
        eos = backend.eos_token_id
        t0 = time.perf_counter()

        # 1. Challenger: N queries from one shared prompt (every rank draws the same N), of
        #    which this rank plays its contiguous share
        # a trailing space would be tokenised on its own, unlike in text the model has read
        prefix = g.query_prefix.rstrip()
        ch_prompt = backend.chat_prompt(challenger_messages(g.task, g.template))
        ch_prompt += backend.encode(QUERY_START + prefix)
        ch = backend.generate(
            [ch_prompt], n=g.num_queries, max_tokens=g.query_max_tokens,
            temperature=g.temperature, top_p=g.top_p,
        )[0]  # fmt: skip
        mine = world.shard(len(ch))
        ch, first = ch[mine.start : mine.stop], mine.start
        parsed = [parse_query(c.text, prefix) for c in ch]
        queries = [q for q, _ in parsed]
        live = [i for i, q in enumerate(queries) if q]

        # 2. Solver: G answers per live query
        sol_prompts = [
            backend.chat_prompt(solver_messages(queries[i], g.system_prompt)) for i in live
        ]
        indices = [first + i for i in live]
        answers = self._solve(backend, sol_prompts, indices, iteration) if live else []
        t1 = time.perf_counter()

        # 3. Rewards: R from the reward source, R_Q from the reference-model judge (LSP). A
        #    query the source cannot score (None) is masked like an empty one: its value would
        #    otherwise be 0, the Challenger's best reward for a question that means nothing.
        texts = [[a.text for a in group] for group in answers]
        generated = sum(len(c.tokens) for c in ch) + sum(len(a.tokens) for x in answers for a in x)
        source = self.config.reward.source
        scored = [queries[i] for i in live]
        R_all = check_rewards(self.reward(scored, texts), texts, source) if live else []
        unscorable = {i for i, r in zip(live, R_all) if r is None}
        kept = [k for k, r in enumerate(R_all) if r is not None]
        live = [live[k] for k in kept]
        answers, sol_prompts = [answers[k] for k in kept], [sol_prompts[k] for k in kept]
        texts, R = [texts[k] for k in kept], [R_all[k] for k in kept]
        live_queries = [queries[i] for i in live]
        has_judge = self.judge is not None and bool(live)
        RQ = self.judge(live_queries, texts) if has_judge else [[0.0] * len(t) for t in texts]
        t2 = time.perf_counter()

        # 4. Values and advantages; the Challenger baseline Vbar is over every rank's queries
        totals = [[r + rq for r, rq in zip(gr, gq)] for gr, gq in zip(R, RQ)]
        values = group_values(R)
        self_values = group_values(RQ) if self.judge is not None else None
        sol_adv = [group_advantages(t) for t in totals]
        ch_rewards = challenger_rewards(values, self_values)
        ranks_rewards = world.all_gather_object(ch_rewards, "the Challenger baseline")
        all_ch_rewards = [r for part in ranks_rewards for r in part]
        offset = sum(len(part) for part in ranks_rewards[: world.rank])
        ch_adv = group_advantages(all_ch_rewards)[offset : offset + len(ch_rewards)]

        # 5. Loss terms and records (N: the live queries of all ranks)
        w_answer, w_query = loss_weights(len(all_ch_rewards), g.group_size, g.query_weight)
        skip_flat = self.config.train.skip_zero_variance
        samples: list[PolicySample] = []
        games = [
            invalid_game(iteration, first + i, self.name, c.text, len(c.tokens))
            for i, c in enumerate(ch)
            if not queries[i]
        ]
        games += [
            invalid_game(
                iteration, first + i, self.name, queries[i], len(ch[i].tokens),
                {"reason": f"reward source {source!r} cannot score it"},
            )
            for i in sorted(unscorable)
        ]  # fmt: skip
        for k, i in enumerate(live):
            if not (skip_flat and zero_variance(totals[k])):
                samples += answer_samples(sol_prompts[k], answers[k], sol_adv[k], w_answer, eos)
            samples.append(
                PolicySample(
                    ch_prompt, trained_tokens(ch[i], eos), ch_adv[k], w_query, "challenger"
                )
            )
            parts = [
                {"reward": r, **({"self_reward": rq} if self.judge else {})}
                for r, rq in zip(R[k], RQ[k])
            ]
            extra = {"format_ok": parsed[i][1]}
            if self_values:
                extra["self_value"] = self_values[k]
            if self.judge is not None and all(0.0 <= r <= 1.0 for r in R[k]):
                # R + R_Q leaves [0, 1], so the diagnostics read the solve rate from R alone
                extra["solve_rate"] = sum(R[k]) / len(R[k])
            games.append(
                Game(
                    iteration=iteration,
                    index=first + i,
                    game=self.name,
                    query=queries[i],
                    query_tokens=len(ch[i].tokens),
                    answers=answer_records(answers[k], totals[k], sol_adv[k], parts),
                    value=values[k],
                    query_reward=ch_rewards[k],
                    query_advantage=ch_adv[k],
                    extra=extra,
                )
            )
        answer_tokens = [len(a.tokens) for group in answers for a in group]
        scorer = self.judge if self.judge is not None else self.reward
        stats = getattr(scorer, "stats", None)

        # records and metrics over every rank's share, in query order
        parts_of_ranks = world.all_gather_object(
            {
                "games": [x.to_dict() for x in games] if world.size > 1 else [],
                "totals": totals,
                "R": R,
                "RQ": RQ,
                "sol_adv": sol_adv,
                "answer_tokens": answer_tokens,
                "query_tokens": [len(c.tokens) for c in ch],
                "format_ok": [ok for _, ok in parsed],
                "judge": [stats.unparsable, stats.judged] if stats is not None else [0, 0],
            },
            "the game records",
        )

        def every(key: str) -> list:
            return [x for part in parts_of_ranks for x in part[key]]

        if world.size > 1:
            games = [Game.from_dict(d) for d in every("games")]
        games.sort(key=lambda game: game.index)
        metrics = shared_metrics(
            every("totals"),
            every("sol_adv"),
            all_ch_rewards,
            group_advantages(all_ch_rewards),
            every("answer_tokens"),
            every("query_tokens"),
        )
        metrics["reward/base_mean"] = mean([x for group in every("R") for x in group])
        metrics["challenger/format_ok"] = mean([1.0 if ok else 0.0 for ok in every("format_ok")])
        if self.judge is not None:
            metrics["self_reward/mean"] = mean([x for group in every("RQ") for x in group])
        if stats is not None and all_ch_rewards:
            unparsable, judged = (sum(p["judge"][k] for p in parts_of_ranks) for k in (0, 1))
            metrics["judge/unparsable"] = unparsable / max(judged, 1)
        return Rollout(
            games=games,
            samples=samples,
            metrics=metrics,
            timings={"generate": t1 - t0, "score": t2 - t1},
            generated_tokens=generated,
        )


def make_lsp(config: Config, backend: Backend, world: World) -> LSPGame:
    reward = make_reward(config, backend)
    judge = make_judge(config, backend) if config.game.name == "lsp" else None
    return LSPGame(config, reward, judge, world)

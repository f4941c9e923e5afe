"""Language Self-Play: LSP and LSP-Zero (arXiv 2509.07414; ALGORITHMS.md §1).

One iteration, top to bottom:
1. The Challenger (the policy, prompted with the task and template) writes N queries.
2. The Solver (the same policy) writes G answers per query; the G answers share one prefill.
3. The reward source scores every answer: R(q_i, a_i^j).
   LSP adds the self-reward R_Q(q_i, a_i^j): the reference model judging on the 0..7 rubric.
4. V(q_i) = mean_j R; the Solver's reward is R (+ R_Q for LSP) and its advantage is that
   reward minus its group mean (no std division). The Challenger's reward is -V(q_i)
   (+ V_Q(q_i) for LSP) and its advantage that reward minus the batch mean.
5. The loss terms: Solver samples weigh 1/(N*G), Challenger samples alpha_Ch/N (the backend
   adds the KL to the adapter-off reference, weighted by beta).

Choices the paper leaves open, made here and documented in the config help: G = 4,
alpha_Ch = 1.0; queries are parsed between <input> markers (the generation prompt ends with
the start marker); a query that comes out empty is masked out of both losses and of the
Challenger baseline, and counted in ``challenger/invalid``; completion tokens include the
EOS token when the model stopped, so it also learns when to stop.

Data-parallel runs (`lsp_mlx.distributed`, issue 7): ``self.dist`` is the `World`. Every rank
draws the same N queries (the trainer seeds every rank alike) and plays its contiguous share;
a query's G answers stay on its rank, so V(q_i) and the Solver advantages are local. The
Challenger baseline ``Vbar``, the number of live queries in the weights 1/(N*G) and alpha_Ch/N,
the game records and the metrics are global (gathered in query order). Solver seeding rule:
with ``dist.seeding == "query"`` query i's answers are drawn with
``query_seed(train.seed, iteration, i)``, one query at a time, so the answers do not depend on
the rank count; with ``"batch"`` a rank samples all its answers in one batch, from the
iteration's stream (one process) or from ``rank_seed(train.seed, iteration, rank)``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from lsp_mlx.distributed import World, query_seed, rank_seed
from lsp_mlx.games.advantages import (
    challenger_rewards,
    group_values,
    mean,
    solver_advantages,
    std,
    zero_variance,
)
from lsp_mlx.games.base import Rollout
from lsp_mlx.games.prompts import QUERY_START, challenger_messages, parse_query, solver_messages
from lsp_mlx.records import Answer, Game, PolicySample
from lsp_mlx.rewards import RewardFn, check_rewards, make_judge, make_reward

if TYPE_CHECKING:
    from lsp_mlx.backends.base import Backend, Completion
    from lsp_mlx.config import Config
    from lsp_mlx.rewards.judge import Judge


class LSPGame:
    supports_distributed = True  # [distributed]

    def __init__(self, config: Config, reward: RewardFn, judge: Judge | None) -> None:
        self.config = config
        self.name = config.game.name
        self.reward = reward
        self.judge = judge  # None for LSP-Zero
        self.dist = World()  # [distributed] the trainer sets the launched World

    def _trained_tokens(self, backend: Backend, c: Completion) -> list[int]:
        eos = getattr(backend, "eos_token_id", None)
        return c.tokens + [eos] if c.finish_reason == "stop" and eos is not None else list(c.tokens)

    def _solve(self, backend: Backend, prompts: list[list[int]], indices: list[int], iteration: int) -> list[list[Completion]]:
        """[distributed] G answers per prompt, seeded by the rule in the module docstring."""
        g = self.config.game
        kw = {"n": g.group_size, "max_tokens": g.solver_max_tokens, "temperature": g.temperature, "top_p": g.top_p}
        if self.dist.seeding == "query":
            out: list[list[Completion]] = []
            for prompt, i in zip(prompts, indices):
                backend.seed(query_seed(self.config.train.seed, iteration, i))
                out += backend.generate([prompt], **kw)
            return out
        if self.dist.size > 1:
            backend.seed(rank_seed(self.config.train.seed, iteration, self.dist.rank))
        return backend.generate(prompts, **kw)

    def play(self, backend: Backend, iteration: int) -> Rollout:
        g = self.config.game
        dist = self.dist
        t0 = time.perf_counter()

        # 1. Challenger: N queries from one shared prompt (every rank the same N: same seed),
        #    of which this rank plays its contiguous share [distributed]
        ch_prompt = backend.chat_prompt(challenger_messages(g.task, g.template)) + backend.encode(QUERY_START)
        ch = backend.generate([ch_prompt], n=g.num_queries, max_tokens=g.challenger_max_tokens,
                              temperature=g.temperature, top_p=g.top_p)[0]
        mine = dist.shard(len(ch))
        ch, first = ch[mine.start : mine.stop], mine.start
        parsed = [parse_query(c.text) for c in ch]
        queries = [q for q, _ in parsed]
        valid = [bool(q) for q in queries]
        live = [i for i, ok in enumerate(valid) if ok]

        # 2. Solver: G answers per valid query
        sol_prompts = [backend.chat_prompt(solver_messages(queries[i], g.system_prompt)) for i in live]
        answers_live = self._solve(backend, sol_prompts, [first + i for i in live], iteration) if live else []
        t1 = time.perf_counter()

        # 3. Rewards: R from the reward source, R_Q from the reference-model judge (LSP)
        texts = [[a.text for a in group] for group in answers_live]
        live_queries = [queries[i] for i in live]
        R = check_rewards(self.reward(live_queries, texts), texts, self.config.reward.source) if live else []
        if self.judge is not None and live:
            RQ = self.judge(live_queries, texts)
        else:
            RQ = [[0.0] * len(group) for group in texts]
        t2 = time.perf_counter()

        # 4. Values and advantages
        totals = [[r + rq for r, rq in zip(gr, gq)] for gr, gq in zip(R, RQ)]
        values = group_values(R)
        self_values = group_values(RQ) if self.judge is not None else None
        sol_adv = solver_advantages(totals)
        ch_rewards = challenger_rewards(values, self_values)
        # [distributed] Vbar over the whole batch: every rank's Challenger rewards, in query order
        all_ch_rewards = dist.all_concat(ch_rewards, "the Challenger baseline")
        vbar = mean(all_ch_rewards)
        ch_adv = [r - vbar for r in ch_rewards]  # challenger_advantages() of the global batch

        # 5. Loss terms and records (N: the live queries of all ranks)
        n_live = max(len(all_ch_rewards), 1)
        samples: list[PolicySample] = []
        games: list[Game] = []
        zero_var = 0
        for k, i in enumerate(live):
            group = answers_live[k]
            flat = zero_variance(totals[k])
            zero_var += flat
            if not (flat and self.config.train.skip_zero_variance):
                for a, adv in zip(group, sol_adv[k]):
                    samples.append(PolicySample(sol_prompts[k], self._trained_tokens(backend, a), adv,
                                                1.0 / (n_live * g.group_size), "solver"))
            samples.append(PolicySample(ch_prompt, self._trained_tokens(backend, ch[i]), ch_adv[k],
                                        g.alpha_challenger / n_live, "challenger"))
            games.append(Game(
                iteration=iteration, index=first + i, game=self.name, query=queries[i],
                query_tokens=len(ch[i].tokens),
                answers=[Answer(text=a.text, tokens=len(a.tokens), reward=tot, advantage=adv,
                                reward_parts={"reward": r, **({"self_reward": rq} if self.judge else {})},
                                finish_reason=a.finish_reason)
                         for a, tot, adv, r, rq in zip(group, totals[k], sol_adv[k], R[k], RQ[k])],
                value=values[k], challenger_reward=ch_rewards[k], challenger_advantage=ch_adv[k],
                extra={"format_ok": parsed[i][1], **({"self_value": self_values[k]} if self_values else {})},
            ))
        for i in range(len(ch)):
            if not valid[i]:
                games.append(Game(iteration=iteration, index=first + i, game=self.name, query=ch[i].text,
                                  query_tokens=len(ch[i].tokens), answers=[], value=0.0,
                                  challenger_reward=0.0, challenger_advantage=0.0, valid=False))
        answer_tokens = [len(a.tokens) for group in answers_live for a in group]
        judge = self.judge if self.judge is not None else (self.reward if hasattr(self.reward, "stats") else None)

        # [distributed] records and metrics over every rank's share (in query order)
        parts = dist.all_gather_object({
            "games": [x.to_dict() for x in games] if dist.size > 1 else [], "totals": totals, "R": R,
            "RQ": RQ, "sol_adv": sol_adv, "ch_adv": ch_adv, "zero_var": zero_var, "answer_tokens": answer_tokens,
            "query_tokens": [len(c.tokens) for c in ch], "format_ok": [ok for _, ok in parsed],
            "judge": [judge.stats.unparsable, judge.stats.judged] if judge is not None else [0, 0],
        }, "the game records")

        def every(key: str) -> list:
            return [x for part in parts for x in part[key]]

        if dist.size > 1:
            games = [Game.from_dict(d) for d in every("games")]
        games.sort(key=lambda game: game.index)
        flat_total = [x for group in every("totals") for x in group]
        n_queries = len(every("query_tokens"))
        metrics = {
            "reward/solver_mean": mean(flat_total),
            "reward/solver_std": std(flat_total),
            "reward/base_mean": mean([x for group in every("R") for x in group]),
            "reward/challenger_mean": mean(all_ch_rewards),
            "reward/challenger_std": std(all_ch_rewards),
            "advantage/solver_abs_mean": mean([abs(x) for group in every("sol_adv") for x in group]),
            "advantage/challenger_abs_mean": mean([abs(x) for x in every("ch_adv")]),
            "zero_variance_groups": sum(p["zero_var"] for p in parts) / n_live if all_ch_rewards else 1.0,
            "answer_tokens_mean": mean(every("answer_tokens")),
            "query_tokens_mean": mean(every("query_tokens")),
            "challenger/invalid": (n_queries - len(all_ch_rewards)) / n_queries,
            "challenger/format_ok": mean([1.0 if ok else 0.0 for ok in every("format_ok")]),
        }
        if self.judge is not None:
            metrics["self_reward/mean"] = mean([x for group in every("RQ") for x in group])
        if judge is not None and all_ch_rewards:
            unparsable, judged = (sum(p["judge"][k] for p in parts) for k in (0, 1))
            metrics["judge/unparsable"] = unparsable / max(judged, 1)
        generated = sum(len(c.tokens) for c in ch) + sum(answer_tokens)
        return Rollout(games=games, samples=samples, metrics=metrics,
                       timings={"generate": t1 - t0, "score": t2 - t1}, generated_tokens=generated)


def make_lsp(config: Config, backend: Backend) -> LSPGame:
    reward = make_reward(config, backend)
    judge = make_judge(config, backend) if config.game.name == "lsp" else None
    return LSPGame(config, reward, judge)

"""SPIN: self-play fine-tuning on (prompt, response) pairs (arXiv 2401.01335; docs/algorithms.md §3).

One iteration: take the next ``spin.pairs_per_iteration`` pairs (x, y) of the JSONL file (a
seeded shuffle, one epoch after another); the opponent p_t writes y' for each x; the loss is

    L = mean_i -log sigmoid(z_i),
    z_i = lambda * [ (log p(y|x) - log p_t(y|x)) - (log p(y'|x) - log p_t(y'|x)) ]

with lambda = ``spin.beta`` (0.1 in the paper and the official ``spin_loss``).

**p_t is the reference policy, the base model with the adapter off.** A training run is
therefore SPIN's iteration t = 0 against the model it starts from; the paper's next
iteration starts a new run from the merged model (``lsp-mlx export`` the adapter merged,
then train again with ``--model`` pointing at it), so p_t is again "adapter off".

**How the loss reaches the backend.** The backend minimises the policy-gradient loss of
`lsp_mlx.records.PolicySample`, whose gradient with ``train.beta = 0`` is
``-sum_k w_k A_k grad log p(c_k|x_k)``. The SPIN loss has the gradient
``-(1/B) sum_i lambda sigmoid(-z_i) (grad log p(y_i|x_i) - grad log p(y'_i|x_i))``, so two
samples per pair with weight 1/B and advantages ``+lambda sigmoid(-z_i)`` (for y) and
``-lambda sigmoid(-z_i)`` (for y'), z_i computed at the current weights, give exactly the
SPIN gradient (tested against autograd of the loss itself). That is why this game needs
``train.beta: 0``: a KL term would add its own gradient. The reported ``spin/loss`` is the
SPIN loss; the backend's ``loss`` is the surrogate's value, which is 0 in expectation.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lsp_mlx.backends.base import Completion
from lsp_mlx.errors import UserError
from lsp_mlx.games.advantages import mean
from lsp_mlx.games.base import Rollout, Stateless, answer_records, trained_tokens
from lsp_mlx.readers import read_text
from lsp_mlx.records import Answer, Game, PolicySample

if TYPE_CHECKING:
    from lsp_mlx.backends.base import Backend
    from lsp_mlx.config import Config
    from lsp_mlx.distributed import World


@dataclass(frozen=True)
class Pair:
    prompt: str
    response: str


def load_pairs(path: str | Path) -> list[Pair]:
    """(prompt, response) pairs from JSONL; also accepts ``instruction``/``output`` and
    ``messages`` (a user turn followed by an assistant turn)."""
    path = Path(path)
    fix = 'pass a JSONL file of {"prompt", "response"} lines as spin.data'
    pairs = []
    for n, line in enumerate(read_text(path, "the spin.data file", fix=fix).splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise UserError(f"{path}:{n} is not valid JSON: write one object per line") from None
        prompt = row.get("prompt", row.get("instruction")) if isinstance(row, dict) else None
        response = row.get("response", row.get("output")) if isinstance(row, dict) else None
        messages = row.get("messages") if isinstance(row, dict) else None
        if prompt is None and isinstance(messages, list) and len(messages) >= 2:
            prompt, response = messages[-2].get("content"), messages[-1].get("content")
        if not (
            isinstance(prompt, str)
            and prompt.strip()
            and isinstance(response, str)
            and response.strip()
        ):
            raise UserError(f"{path}:{n} needs non-empty 'prompt' and 'response' strings")
        pairs.append(Pair(prompt.strip(), response.strip()))
    if not pairs:
        raise UserError(f"spin.data file {path} holds no pairs")
    return pairs


def spin_terms(z: float, lam: float) -> tuple[float, float]:
    """(loss, advantage magnitude) of one pair: ``-log sigmoid(z)`` and ``lambda * sigmoid(-z)``."""
    # computed without overflow for either sign of z
    if z >= 0:
        e = math.exp(-z)
        return math.log1p(e), lam * e / (1.0 + e)
    e = math.exp(z)
    return -z + math.log1p(e), lam / (1.0 + e)


class SPINGame(Stateless):
    """Stateless: the pairs of an iteration derive from ``(train.seed, epoch)`` (`batch`)."""

    name = "spin"

    def __init__(self, config: Config, pairs: list[Pair]) -> None:
        self.config = config
        self.pairs = pairs

    def batch(self, iteration: int) -> list[Pair]:
        """Pairs for an iteration: epoch e is the data shuffled with seed (train.seed, e)."""
        size = self.config.spin.pairs_per_iteration
        start = (iteration - 1) * size
        out = []
        for k in range(start, start + size):
            epoch, pos = divmod(k, len(self.pairs))
            order = list(range(len(self.pairs)))
            random.Random(f"{self.config.train.seed}:{epoch}").shuffle(order)
            out.append(self.pairs[order[pos]])
        return out

    def play(self, backend: Backend, iteration: int) -> Rollout:
        s, g = self.config.spin, self.config.game
        t0 = time.perf_counter()
        batch = self.batch(iteration)
        prompts = [backend.chat_prompt([{"role": "user", "content": p.prompt}]) for p in batch]
        eos = backend.eos_token_id
        # the data's response ends like a reply the model stopped writing
        real = [backend.encode(p.response) + [eos] for p in batch]
        # the opponent p_t (adapter off) writes y'
        gen = backend.generate(
            prompts,
            n=1,
            max_tokens=s.max_tokens,
            temperature=g.temperature,
            top_p=g.top_p,
            adapter=False,
        )
        fake = [trained_tokens(grp[0], eos) for grp in gen]
        t1 = time.perf_counter()

        seqs = list(zip(prompts, real)) + list(zip(prompts, fake))
        policy = backend.sequence_logprobs(seqs, adapter=True)
        ref = backend.sequence_logprobs(seqs, adapter=False)
        t2 = time.perf_counter()

        b = len(batch)
        samples: list[PolicySample] = []
        games: list[Game] = []
        losses, zs, wins = [], [], []
        for i, pair in enumerate(batch):
            m_real = policy[i] - ref[i]
            m_fake = policy[b + i] - ref[b + i]
            z = s.beta * (m_real - m_fake)
            loss, adv = spin_terms(z, s.beta)
            losses.append(loss)
            zs.append(z)
            wins.append(1.0 if z > 0 else 0.0)
            samples.append(PolicySample(prompts[i], real[i], adv, 1.0 / b, "spin_real"))
            samples.append(PolicySample(prompts[i], fake[i], -adv, 1.0 / b, "spin_generated"))
            games.append(
                Game(
                    iteration=iteration,
                    index=i,
                    game=self.name,
                    query=pair.prompt,
                    query_tokens=len(prompts[i]),
                    answers=self._answers(pair, real[i], gen[i][0], adv, m_real, m_fake),
                    value=0.5,
                    query_reward=0.0,
                    query_advantage=0.0,
                    extra={"spin_loss": loss, "z": z},
                )
            )
        metrics = {
            "spin/loss": mean(losses),
            "spin/z_mean": mean(zs),
            "spin/prefers_real": mean(
                wins
            ),  # share of pairs where the policy already ranks y above y'
            "spin/log_ratio_real": mean([policy[i] - ref[i] for i in range(b)]),
            "spin/log_ratio_generated": mean([policy[b + i] - ref[b + i] for i in range(b)]),
            "answer_tokens_mean": mean([len(grp[0].tokens) for grp in gen]),
            "real_tokens_mean": mean([len(r) for r in real]),
        }
        return Rollout(
            games=games,
            samples=samples,
            metrics=metrics,
            timings={"generate": t1 - t0, "score": t2 - t1},
            generated_tokens=sum(len(grp[0].tokens) for grp in gen),
        )

    @staticmethod
    def _answers(
        pair: Pair, real: list[int], fake: Completion, adv: float, m_real: float, m_fake: float
    ) -> list[Answer]:
        """The data's response y (reward 1) and the opponent's y' (reward 0)."""
        y = Completion(real, pair.response, [], "stop")
        return answer_records(
            [y, fake], [1.0, 0.0], [adv, -adv], [{"log_ratio": m_real}, {"log_ratio": m_fake}]
        )


def make_spin(config: Config, backend: Backend, world: World) -> SPINGame:
    if config.train.beta != 0:
        raise UserError(
            f"game spin needs train.beta: 0 (got {config.train.beta}): SPIN's loss already holds the model "
            "to p_t, and a KL term would change its gradient; set it in the YAML or --set train.beta=0"
        )
    return SPINGame(config, load_pairs(config.spin.data))

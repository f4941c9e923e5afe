"""The MLX backend: one policy model (base + mlx-lm LoRA), its tokenizer and optimizer.

Algorithm choices (docs/algorithms.md §1 and §5):
- Sampling goes through mlx-lm's `BatchGenerator` (continuous batching, its samplers).
  The prompt of a query is prefilled once and its KV cache handed to all G samples.
- Every log-probability used for the loss is recomputed teacher-forced with the prompt as
  context, so it is the temperature-1 policy the loss assumes, whatever the sampler did.
  The teacher-forced passes (`mlx_forward`) run each prompt once for all its completions and
  the blocks below the first LoRA layer once for the reference and the policy, and compute
  logits only where a completion token is scored; tests/test_exactness.py holds them equal to
  the full-sequence computation.
- The reference policy is the same model with every LoRA layer's ``scale`` set to 0: no
  second copy of the weights.
- The loss is ``sum_k w_k * -(exp(lp_k - sg(lp_k)) * A_k - beta * KL_k)`` with ``lp_k`` the
  sequence log-prob of completion k; gradients of the passes add up (the weights
  ``w_k`` already hold the 1/(NG) and query_weight/N factors), then one clipped AdamW step.
"""

from __future__ import annotations

import contextlib
import json
import platform
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lsp_mlx.blas import preload

_BLAS = preload()  # must run before mlx.core is imported

import mlx.core as mx  # noqa: E402
import mlx.nn as nn  # noqa: E402
import mlx.optimizers as optim  # noqa: E402
from mlx.utils import tree_flatten, tree_map, tree_unflatten  # noqa: E402
from mlx_lm.generate import BatchGenerator  # noqa: E402
from mlx_lm.models.cache import make_prompt_cache  # noqa: E402
from mlx_lm.sample_utils import make_sampler  # noqa: E402
from mlx_lm.tuner.utils import linear_to_lora_layers  # noqa: E402
from mlx_lm.utils import dequantize_model, load  # noqa: E402

from lsp_mlx.adapter_files import ADAPTER_CONFIG, ADAPTER_WEIGHTS, OPTIMIZER_STATE  # noqa: E402
from lsp_mlx.backends.base import (  # noqa: E402
    Completion,
    RoleTotals,
    Sampling,
    StepStats,
    TokenizerText,
    rss_peak_gb,
    sampling_options,
)
from lsp_mlx.backends.mlx_common import (  # noqa: E402
    adapter_off,
    is_quantized,
    lora_modules,
    use_fast_dtype,
)
from lsp_mlx.backends.mlx_forward import Forward, Scored, completion_positions  # noqa: E402
from lsp_mlx.backends.passes import (  # noqa: E402
    Pass,
    common_prefix_length,
    plan_passes,
    sequence_passes,
    token_budget,
)
from lsp_mlx.config import Config  # noqa: E402
from lsp_mlx.errors import UserError  # noqa: E402
from lsp_mlx.models import resolve_model  # noqa: E402
from lsp_mlx.records import PolicySample  # noqa: E402

if TYPE_CHECKING:
    from typing_extensions import Unpack


def pass_loss(
    model: nn.Module,
    forward: Forward,
    p: Pass,
    x_prefix: mx.array | None,
    x_suffix: mx.array,
    scored: Scored,
    advantages: mx.array,  # (rows,)
    weights: mx.array,  # (rows,)
    ref_logprobs: mx.array,  # (N,) reference log-prob of each scored token
    beta: float,
    k3: bool,
) -> tuple[mx.array, tuple[mx.array, mx.array]]:
    """The loss of docs/algorithms.md §1 on one pass (one prompt, several completions).

    Returns (loss, (per-sample sequence log-ratio log pi - log pi_ref, per-sample loss)); the
    log-ratio is what StepStats.kl reports whichever estimator enters the loss.
    """
    hidden = forward.top(p, x_prefix, x_suffix)
    tok_lp = forward.token_logprobs(hidden, scored.flat_positions, scored.targets)
    seq_lp = scored.segments @ tok_lp
    ratio = mx.exp(seq_lp - mx.stop_gradient(seq_lp))  # 1 in value, d ratio = d log pi
    log_ratio = seq_lp - scored.segments @ ref_logprobs
    if k3:
        r = ref_logprobs - tok_lp
        kl = scored.segments @ (mx.exp(r) - r - 1)
    else:
        kl = log_ratio
    per_sample = -(ratio * advantages - beta * kl)
    return (weights * per_sample).sum(), (mx.stop_gradient(log_ratio), per_sample)


class MLXBackend(TokenizerText):
    name = "mlx"

    def __init__(self, config: Config) -> None:
        self.config = config
        resolved = resolve_model(config.model.path, config.model.dequantize)
        self.model_path = resolved.path
        self.base_model = config.model.base_model or resolved.base_model
        try:
            self.model, self.tokenizer = load(
                str(resolved.path),
                tokenizer_config={"trust_remote_code": config.model.trust_remote_code},
            )
        except FileNotFoundError as e:
            raise UserError(
                f"cannot load model {config.model.path!r} ({e}): pass a model folder, a .gguf or a cached Hub id"
            ) from None
        self.dequantized = False
        if self._should_dequantize() and any(
            isinstance(m, (nn.QuantizedLinear, nn.QuantizedEmbedding))
            for _, m in self.model.named_modules()
        ):
            self.model = dequantize_model(self.model)
            self.dequantized = True
        use_fast_dtype(self.model)
        self.model.freeze()
        lora = config.lora
        self.num_layers = len(self.model.layers) if lora.num_layers == -1 else lora.num_layers
        if self.num_layers > len(self.model.layers):
            raise UserError(
                f"lora.num_layers is {lora.num_layers} but the model has {len(self.model.layers)} blocks: lower it or use -1"
            )
        self.lora_parameters = {
            "rank": lora.rank,
            "scale": lora.scale,
            "dropout": lora.dropout,
            "keys": lora.keys,
        }
        mx.random.seed(config.train.seed)  # the LoRA init depends on it
        try:
            linear_to_lora_layers(self.model, self.num_layers, dict(self.lora_parameters))
        except (KeyError, ValueError) as e:
            raise UserError(
                f"cannot apply LoRA with keys {lora.keys}: {e}; fix lora.keys"
            ) from None
        self._lora_modules = lora_modules(self.model)
        if not self._lora_modules:
            raise UserError(
                f"lora.keys {lora.keys} matched no layer: use module paths such as self_attn.q_proj"
            )
        self.model.train()
        # bias_correction: mlx's default is off, torch's AdamW (and the papers') is on; without
        # it the first steps are ~3x smaller and the two backends would train differently.
        self.optimizer = optim.AdamW(
            learning_rate=config.train.learning_rate,
            weight_decay=config.train.weight_decay,
            bias_correction=True,
        )
        self.optimizer.init(self.model.trainable_parameters())
        self.forward = Forward(self.model, len(self.model.layers) - self.num_layers)
        self._loss_and_grad = nn.value_and_grad(self.model, pass_loss)

    # ------------------------------------------------------------------ facts
    def _should_dequantize(self) -> bool:
        if self.config.model.dequantize is not None:
            return self.config.model.dequantize
        return not (sys.platform == "darwin" and platform.machine() == "arm64")

    def info(self) -> dict[str, Any]:
        total = sum(v.size for _, v in tree_flatten(self.model.parameters()))
        trainable = sum(v.size for _, v in tree_flatten(self.model.trainable_parameters()))
        dtype = next(iter(v.dtype for _, v in tree_flatten(self.model.parameters())))
        return {
            "backend": "mlx",
            "device": str(mx.default_device()),
            "dtype": "quantized"
            if is_quantized(self.model)
            else str(dtype).replace("mlx.core.", ""),
            "blas": _BLAS,
            "model": str(self.model_path),
            "base_model": self.base_model,
            "params": total,
            "trainable_params": trainable,
            "lora_layers": len(self._lora_modules),
        }

    # ------------------------------------------------------------------ text
    @property
    def eos_token_id(self) -> int:
        return next(iter(self.tokenizer.eos_token_ids))

    # ------------------------------------------------------------- adapters
    def adapter_disabled(self) -> contextlib.AbstractContextManager[None]:
        """pi_ref: the base model, by zeroing every LoRA scale for the duration."""
        return adapter_off(self._lora_modules)

    def _maybe_disabled(self, adapter: bool) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext() if adapter else self.adapter_disabled()

    # ------------------------------------------------------------- sampling
    def generate(
        self, prompts: list[list[int]], n: int, max_tokens: int, **sampling: Unpack[Sampling]
    ) -> list[list[Completion]]:
        temperature, top_p, adapter = sampling_options(sampling)
        self.model.eval()
        sampler = make_sampler(temp=temperature, top_p=top_p if top_p < 1.0 else 0.0)
        total = len(prompts) * n
        gen = BatchGenerator(
            self.model,
            max_tokens=max_tokens,
            stop_tokens=[[t] for t in self.tokenizer.eos_token_ids],
            sampler=sampler,
            completion_batch_size=max(total, 1),
            prefill_batch_size=max(total, 1),
        )
        owners: dict[int, tuple[int, int]] = {}
        tokens: dict[int, list[int]] = {}
        logprobs: dict[int, list[mx.array]] = {}
        finish: dict[int, str] = {}
        try:
            with self._maybe_disabled(adapter):
                for i, prompt in enumerate(prompts):
                    caches = self._shared_prefill(prompt, n)
                    uids = gen.insert([prompt[-1:] if caches else prompt] * n, caches=caches)
                    for j, uid in enumerate(uids):
                        owners[uid] = (i, j)
                        tokens[uid], logprobs[uid] = [], []
                while responses := gen.next_generated():
                    for r in responses:
                        if r.finish_reason != "stop":
                            tokens[r.uid].append(r.token)
                            logprobs[r.uid].append(r.logprobs[r.token])
                        if r.finish_reason is not None:
                            finish[r.uid] = r.finish_reason
        finally:
            gen.close()
            self.model.train()
        flat_lp = [mx.stack(v) if v else mx.zeros((0,)) for v in logprobs.values()]
        mx.eval(flat_lp)
        lp_by_uid = dict(zip(logprobs.keys(), flat_lp))
        out: list[list[Completion]] = [[None] * n for _ in prompts]  # type: ignore[list-item]
        for uid, (i, j) in owners.items():
            toks = tokens[uid]
            out[i][j] = Completion(
                tokens=toks,
                text=self.tokenizer.decode(toks),
                logprobs=lp_by_uid[uid].tolist(),
                finish_reason=finish.get(uid, "length"),
            )
        return out

    def _shared_prefill(self, prompt: list[int], n: int) -> list[list[Any]] | None:
        """Run the prompt (all but its last token) once; the n samples share the KV cache.

        BatchGenerator merges the per-sequence caches into a batch cache by copying, so
        handing the same cache object to the n sequences is safe.
        """
        if len(prompt) < 2 or n < 2:
            return None
        cache = make_prompt_cache(self.model)
        self.model(mx.array(prompt[:-1])[None], cache=cache)
        mx.eval([c.state for c in cache])
        return [cache] * n

    # -------------------------------------------------------------- scoring
    def _budget(self, lengths: list[int]) -> int:
        return token_budget(lengths, self.config.train.micro_batch_size)

    def sequence_logprobs(
        self, pairs: list[tuple[list[int], list[int]]], adapter: bool = True
    ) -> list[float]:
        out = [0.0] * len(pairs)
        budget = self._budget([len(p) + len(c) for p, c in pairs])
        self.model.eval()
        try:
            with self._maybe_disabled(adapter):
                for p, completions in sequence_passes(pairs, budget):
                    scored = completion_positions(p, completions)
                    hidden = self.forward.top(p, *self.forward.trunk(p))
                    tok = self.forward.token_logprobs(hidden, scored.flat_positions, scored.targets)
                    for i, lp in zip(p.owners, (scored.segments @ tok).tolist()):
                        out[i] = lp
        finally:
            self.model.train()
        return out

    def next_token_logprobs(
        self, prompts: list[list[int]], token_ids: list[int], adapter: bool = True
    ) -> list[list[float]]:
        """log p(t | prompt) of each token id in ``token_ids`` at the position after each prompt.

        The prompts' longest common prefix (the judge's rubric) runs once for all of them.
        """
        out: list[list[float]] = [[] for _ in prompts]
        if not prompts:
            return out
        ids = mx.array(token_ids)
        shared = common_prefix_length(prompts)
        passes = plan_passes(
            [p[:shared] for p in prompts],
            [p[shared:] for p in prompts],
            self._budget([len(p) for p in prompts]),
        )
        self.model.eval()
        try:
            with self._maybe_disabled(adapter):
                for p in passes:
                    hidden = self.forward.top(p, *self.forward.trunk(p))
                    width = hidden.shape[1]
                    last = mx.array([i * width + len(s) - 1 for i, s in enumerate(p.suffixes)])
                    lp = self.forward.log_softmax_at(hidden, last)
                    for i, row in zip(p.owners, lp[:, ids].tolist()):
                        out[i] = row
        finally:
            self.model.train()
        return out

    def loss_and_gradients(
        self, samples: list[PolicySample], beta: float, kl_estimator: str = "k1"
    ) -> tuple[float, dict[str, Any], RoleTotals]:
        """The step's loss, the summed gradients of its passes (evaluated) and the per-role sums.

        One pass per prompt (or per token budget of its completions): the frozen trunk once,
        the reference top blocks without gradient, then the policy's loss and gradients.
        """
        k3 = kl_estimator == "k3"
        pairs = [(s.prompt, s.completion) for s in samples]
        budget = self._budget([len(p) + len(c) for p, c in pairs])
        grads_acc = None
        loss_total = mx.array(0.0)
        roles = RoleTotals()
        passes = sequence_passes(pairs, budget)
        covered = {i for p, _ in passes for i in p.owners}
        # a sample without completion tokens has log-prob and KL 0 and no gradient
        empty = [s for i, s in enumerate(samples) if i not in covered]
        if empty:
            per_sample = [-s.advantage for s in empty]
            loss_total = loss_total + sum(s.weight * x for s, x in zip(empty, per_sample))
            roles.add(empty, [0.0] * len(empty), per_sample)
        for p, completions in passes:
            chunk = [samples[i] for i in p.owners]
            scored = completion_positions(p, completions)
            adv = mx.array([s.advantage for s in chunk])
            w = mx.array([s.weight for s in chunk])
            x_prefix, x_suffix = self.forward.trunk(p)
            with self.adapter_disabled():
                ref_hidden = self.forward.top(p, x_prefix, x_suffix)
                ref = mx.stop_gradient(
                    self.forward.token_logprobs(ref_hidden, scored.flat_positions, scored.targets)
                )
            (loss, (kl, per_sample)), grads = self._loss_and_grad(
                self.model, self.forward, p, x_prefix, x_suffix, scored, adv, w, ref, beta, k3
            )
            grads_acc = grads if grads_acc is None else tree_map(mx.add, grads_acc, grads)
            loss_total = loss_total + loss
            mx.eval(loss_total, grads_acc, kl, per_sample)
            roles.add(chunk, kl.tolist(), per_sample.tolist())
        if grads_acc is None:  # no completion token: the gradient is zero
            grads_acc = tree_map(mx.zeros_like, self.model.trainable_parameters())
        return float(loss_total.item()), grads_acc, roles

    # ------------------------------------------------------------- training
    def train_step(
        self,
        samples: list[PolicySample],
        beta: float,
        kl_estimator: str = "k1",
        grad_reduce: Callable[[Any], Any] | None = None,
    ) -> StepStats:
        """The gradients of `loss_and_gradients`, summed over ranks by ``grad_reduce`` when
        given, then one clipped AdamW step."""
        if not samples and grad_reduce is None:
            return StepStats(loss=0.0, kl=0.0, grad_norm=0.0, tokens=0)
        loss_total, grads_acc, roles = self.loss_and_gradients(samples, beta, kl_estimator)
        if grad_reduce is not None:  # the global gradient is the sum over ranks (see Backend)
            grads_acc = grad_reduce(grads_acc)
        grad_norm = mx.sqrt(sum(mx.sum(g * g) for _, g in tree_flatten(grads_acc)))
        if self.config.train.max_grad_norm > 0:
            grads_acc, grad_norm = optim.clip_grad_norm(grads_acc, self.config.train.max_grad_norm)
        self.optimizer.update(self.model, grads_acc)
        mx.eval(self.model.trainable_parameters(), self.optimizer.state, grad_norm)
        return StepStats(
            loss=loss_total,
            kl=roles.mean_kl(),
            grad_norm=grad_norm.item(),
            tokens=sum(len(s.completion) for s in samples),
            per_role=roles.per_role(),
        )

    # ---------------------------------------------------------------- state
    def adapter_config(self) -> dict[str, Any]:
        return {
            "fine_tune_type": "lora",
            "num_layers": self.num_layers,
            "lora_parameters": dict(self.lora_parameters),
            "model": str(self.model_path),
            "base_model": self.base_model,
        }

    def save_adapter(self, folder: Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        weights = dict(tree_flatten(self.model.trainable_parameters()))
        mx.save_safetensors(str(folder / ADAPTER_WEIGHTS), weights)
        (folder / ADAPTER_CONFIG).write_text(json.dumps(self.adapter_config(), indent=2))

    def load_adapter(self, folder: Path) -> None:
        path = Path(folder) / ADAPTER_WEIGHTS
        if not path.is_file():
            raise UserError(
                f"no {ADAPTER_WEIGHTS} in {folder}: pass a checkpoint or adapter folder"
            )
        weights = mx.load(str(path))
        expected = set(dict(tree_flatten(self.model.trainable_parameters())))
        if set(weights) != expected:
            raise UserError(
                f"adapter in {folder} does not fit this model/LoRA config (rank, layers or keys differ): use the run's own config"
            )
        self.model.load_weights(list(weights.items()), strict=False)
        mx.eval(self.model.trainable_parameters())

    def save_state(self, folder: Path) -> None:
        state = dict(tree_flatten(self.optimizer.state))
        mx.save_safetensors(str(Path(folder) / OPTIMIZER_STATE), state)

    def load_state(self, folder: Path) -> None:
        path = Path(folder) / OPTIMIZER_STATE
        if path.is_file():
            self.optimizer.state = tree_unflatten(list(mx.load(str(path)).items()))
            mx.eval(self.optimizer.state)

    def seed(self, seed: int) -> None:
        mx.random.seed(seed)

    def peak_memory_gb(self) -> float:
        """MLX's own peak allocation; the process RSS peak where MLX reports none."""
        peak = mx.get_peak_memory() / 1e9
        return peak if peak > 0 else rss_peak_gb()

    def reset_peak_memory(self) -> None:
        mx.reset_peak_memory()

    def load_reward_model(self, spec: str) -> Any:
        from lsp_mlx.backends.mlx_reward_model import MLXRewardModel

        return MLXRewardModel(spec, micro_batch_size=self.config.train.micro_batch_size)

"""The PyTorch backend (``--backend torch``): transformers + PEFT LoRA on CUDA, MPS or CPU.

It plays the same games as the MLX backend through the same `Backend` interface, with the
same algorithm (docs/algorithms.md §1 and §5):
- the LoRA adapts the modules mlx-lm would (``lora.keys``, ``null`` = every linear layer of a
  block; ``lora.num_layers`` blocks counted from the last), with PEFT's ``lora_alpha = scale * r``
  so the update is ``scale * B(A(x))`` in both; A is uniform(+-1/sqrt(in)) and B zero in both;
- pi_ref is the same model with the adapter disabled (PEFT ``disable_adapter``), no copy;
- the loss is ``sum_k w_k * -(exp(lp_k - sg(lp_k)) * A_k - beta * KL_k)`` with ``lp_k`` the
  teacher-forced sequence log-prob of completion k given its prompt, KL_k = lp_k - lp_ref_k
  (k1) or the per-token ``exp(r) - r - 1``, r = lp_ref - lp, summed (k3); micro-batches
  accumulate gradients, then one clipped AdamW step.
Adapters are written in PEFT's format and mlx-lm's in the same folder (see `torch_adapters`).
Device and dtype rules: `lsp_mlx.backends.torch_models`.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import peft
import torch
import transformers
from peft import LoraConfig, get_peft_model

from lsp_mlx.backends import base
from lsp_mlx.backends import torch_adapters as adapters
from lsp_mlx.backends.base import Completion, RoleTotals, StepStats, TokenizerText
from lsp_mlx.backends.passes import (
    Pass,
    common_prefix_length,
    plan_passes,
    sequence_passes,
    token_budget,
)
from lsp_mlx.backends.torch_models import (
    TorchRewardModel,
    eos_token_ids,
    load_causal_lm,
    pick_device,
    pick_dtype,
)
from lsp_mlx.backends.torch_sampling import next_token_logprobs, pass_logprobs, sample
from lsp_mlx.config import Config
from lsp_mlx.errors import UserError
from lsp_mlx.records import PolicySample

if TYPE_CHECKING:
    from typing_extensions import Unpack

MAX_SAMPLING_ROWS = 64  # sequences decoded together; bounds the KV cache of one chunk


class TorchBackend(TokenizerText):
    name = "torch"

    def __init__(self, config: Config) -> None:
        self.config = config
        self.device = pick_device()
        self.dtype = pick_dtype(self.device)
        loaded = load_causal_lm(
            config.model.path, self.device, self.dtype, config.model.trust_remote_code
        )
        self.model_path = loaded.path
        self.base_model = config.model.base_model or loaded.base_model
        self.tokenizer = loaded.tokenizer
        base = loaded.model
        self.stop_ids = eos_token_ids(base, self.tokenizer)
        pad = self.tokenizer.pad_token_id
        # any id will do for padding: padded positions are masked out of attention and loss
        self.pad_id = int(pad) if pad is not None else min(self.stop_ids)

        lora = config.lora
        self.layout = adapters.lora_layout(base, lora.keys, lora.num_layers, lora.rank)
        self.num_layers = self.layout.num_layers
        self.lora_parameters = {
            "rank": lora.rank,
            "scale": lora.scale,
            "dropout": lora.dropout,
            "keys": lora.keys,
        }
        torch.manual_seed(config.train.seed)  # the LoRA init depends on it
        peft_config = LoraConfig(
            r=lora.rank,
            lora_alpha=lora.scale * lora.rank,  # PEFT scales by alpha / r: mlx-lm's scale
            lora_dropout=lora.dropout,
            target_modules=self.layout.peft.target_modules,
            layers_to_transform=self.layout.peft.layers_to_transform,
            layers_pattern=self.layout.peft.layers_pattern,
            bias="none",
            task_type="CAUSAL_LM",
        )
        with warnings.catch_warnings():  # peft 0.21 calls a transformers method deprecated in 5.x
            warnings.filterwarnings(
                "ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning
            )
            self.model = get_peft_model(base, peft_config)
        self._lora = adapters.lora_parameters(self.model)
        if sorted(m for m, _ in self._lora) != sorted(self.layout.peft.modules):
            raise UserError(
                f"PEFT adapted other modules than lora.keys {lora.keys} select: name the modules exactly (e.g. self_attn.q_proj)"
            )
        # only LoRA's own dropout follows train/eval; the base model stays in eval mode like mlx-lm's
        self._dropouts = [
            m for n, m in self.model.named_modules() if n.endswith("lora_dropout.default")
        ]
        self.model.eval()
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            params,
            lr=config.train.learning_rate,
            weight_decay=config.train.weight_decay,
            betas=(0.9, 0.999),
            eps=1e-8,
        )
        self.generator = torch.Generator(device=self.device)
        self.seed(config.train.seed)

    # ------------------------------------------------------------------ facts
    def info(self) -> dict[str, Any]:
        total = sum(p.numel() for p in self.model.parameters())
        trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        device = str(self.device)
        if self.device.type == "cuda":
            device = f"cuda ({torch.cuda.get_device_name(self.device)})"
            blas = "cuBLAS"
        elif self.device.type == "mps":
            blas = "Metal (MPS)"
        else:
            blas = "MKL" if torch.backends.mkl.is_available() else "torch CPU BLAS"
            blas += f", {torch.get_num_threads()} threads"
        return {
            "backend": "torch",
            "device": device,
            "dtype": str(self.dtype).replace("torch.", ""),
            "blas": blas,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "peft": peft.__version__,
            "model": self.model_path,
            "base_model": self.base_model,
            "params": total,
            "trainable_params": trainable,
            "lora_layers": len(self._lora),
        }

    # ------------------------------------------------------------------ text
    @property
    def eos_token_id(self) -> int:
        return (
            self.tokenizer.eos_token_id
            if self.tokenizer.eos_token_id is not None
            else min(self.stop_ids)
        )

    # ------------------------------------------------------------- adapters
    def _maybe_disabled(self, adapter: bool) -> contextlib.AbstractContextManager[Any]:
        return contextlib.nullcontext() if adapter else self.model.disable_adapter()

    @contextlib.contextmanager
    def _lora_dropout(self) -> Iterator[None]:
        for m in self._dropouts:
            m.train()
        try:
            yield
        finally:
            for m in self._dropouts:
                m.eval()

    # ------------------------------------------------------------- sampling
    def generate(
        self, prompts: list[list[int]], n: int, max_tokens: int, **sampling: Unpack[base.Sampling]
    ) -> list[list[Completion]]:
        temperature, top_p, adapter = base.sampling_options(sampling)
        if not prompts or n < 1:
            return [[] for _ in prompts]
        with self._maybe_disabled(adapter):
            groups = sample(
                self.model,
                prompts,
                n,
                max_tokens,
                temperature,
                top_p,
                self.stop_ids,
                self.pad_id,
                self.generator,
                max_rows=MAX_SAMPLING_ROWS,
            )
        return [
            [
                Completion(
                    tokens=s.tokens,
                    text=self.decode(s.tokens),
                    logprobs=s.logprobs,
                    finish_reason=s.finish_reason,
                )
                for s in group
            ]
            for group in groups
        ]

    # -------------------------------------------------------------- scoring
    def _passes(
        self, pairs: list[tuple[list[int], list[int]]]
    ) -> list[tuple[Pass, list[list[int]]]]:
        """Each prompt once per pass; passes no larger than a padded micro-batch."""
        lengths = [len(p) + len(c) for p, c in pairs]
        return sequence_passes(pairs, token_budget(lengths, self.config.train.micro_batch_size))

    def _pass_logprobs(self, p: Pass, completions: list[list[int]]) -> Any:
        return pass_logprobs(self.model, p.prefix, p.suffixes, completions, self.pad_id)

    @torch.no_grad()
    def sequence_logprobs(
        self, pairs: list[tuple[list[int], list[int]]], adapter: bool = True
    ) -> list[float]:
        out = [0.0] * len(pairs)  # an empty completion has log-prob 0
        with self._maybe_disabled(adapter):
            for p, completions in self._passes(pairs):
                token_lp, _ = self._pass_logprobs(p, completions)
                for i, lp in zip(p.owners, token_lp.sum(-1).tolist()):
                    out[i] = lp
        return out

    @torch.no_grad()
    def next_token_logprobs(
        self, prompts: list[list[int]], token_ids: list[int], adapter: bool = True
    ) -> list[list[float]]:
        """``log p(t | prompt)`` of each id in ``token_ids`` at the position after each prompt."""
        out: list[list[float]] = [[] for _ in prompts]
        if not token_ids or not prompts:
            return out
        shared = common_prefix_length(prompts)  # the judge's rubric: run once
        lengths = [len(p) for p in prompts]
        passes = plan_passes(
            [p[:shared] for p in prompts],
            [p[shared:] for p in prompts],
            token_budget(lengths, self.config.train.micro_batch_size),
        )
        with self._maybe_disabled(adapter):
            for p in passes:
                lp = next_token_logprobs(self.model, p.prefix, p.suffixes, token_ids, self.pad_id)
                for i, row in zip(p.owners, lp.tolist()):
                    out[i] = row
        return out

    # ------------------------------------------------------------- training
    def train_step(
        self,
        samples: list[PolicySample],
        beta: float,
        kl_estimator: str = "k1",
        grad_reduce: Callable[[list[torch.nn.Parameter]], Any] | None = None,
    ) -> StepStats:
        """``grad_reduce`` sums the trainable parameters' ``.grad`` over the ranks, in place."""
        if not samples and grad_reduce is None:
            return StepStats(loss=0.0, kl=0.0, grad_norm=0.0, tokens=0)
        if kl_estimator not in ("k1", "k3"):
            raise UserError(f"train.kl_estimator must be k1 or k3, got {kl_estimator!r}")
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer.zero_grad(set_to_none=True)
        loss_total = 0.0
        roles = RoleTotals()
        passes = self._passes([(s.prompt, s.completion) for s in samples])
        covered = {i for p, _ in passes for i in p.owners}
        empty = [s for i, s in enumerate(samples) if i not in covered]
        if empty:  # no completion token: log-prob and KL 0, no gradient
            loss_total += sum(-s.weight * s.advantage for s in empty)
            roles.add(empty, [0.0] * len(empty), [-s.advantage for s in empty])
        with self._lora_dropout():
            for p, completions in passes:
                chunk = [samples[i] for i in p.owners]
                with torch.no_grad(), self.model.disable_adapter():
                    ref_tok, _ = self._pass_logprobs(p, completions)
                tok, mask = self._pass_logprobs(p, completions)
                adv = torch.tensor([s.advantage for s in chunk], device=tok.device, dtype=tok.dtype)
                weight = torch.tensor([s.weight for s in chunk], device=tok.device, dtype=tok.dtype)
                seq = tok.sum(-1)
                ratio = torch.exp(seq - seq.detach())  # 1 in value; its gradient is d log pi
                log_ratio = seq - ref_tok.sum(-1)
                if kl_estimator == "k3":
                    r = (ref_tok - tok) * mask
                    kl = ((torch.exp(r) - r - 1) * mask).sum(-1)
                else:
                    kl = log_ratio
                per_sample = -(ratio * adv - beta * kl)
                loss = (weight * per_sample).sum()
                loss.backward()
                loss_total += loss.item()
                roles.add(chunk, log_ratio.tolist(), per_sample.tolist())
        if grad_reduce is not None:  # the global gradient is the sum over ranks (see Backend)
            grad_reduce(params)
        max_norm = self.config.train.max_grad_norm
        grad_norm = torch.nn.utils.clip_grad_norm_(
            params, max_norm if max_norm > 0 else float("inf")
        )
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return StepStats(
            loss=loss_total,
            kl=roles.mean_kl(),
            grad_norm=float(grad_norm),
            tokens=sum(len(s.completion) for s in samples),
            per_role=roles.per_role(),
        )

    # ---------------------------------------------------------------- state
    def adapter_config(self) -> dict[str, Any]:
        """mlx-lm's adapter config (what the MLX backend writes) plus PEFT's LoraConfig fields."""
        return adapters.adapter_config(
            self.layout, self.lora_parameters, str(self.model_path), self.base_model
        )

    def save_adapter(self, folder: Path) -> None:
        adapters.save_adapter(self.model, self._lora, Path(folder), self.adapter_config())

    def load_adapter(self, folder: Path) -> None:
        adapters.load_adapter(self._lora, Path(folder), self.lora_parameters["scale"])

    def save_state(self, folder: Path) -> None:
        adapters.save_optimizer(self.optimizer, self._lora, Path(folder))
        adapters.save_rng(self.generator, Path(folder))

    def load_state(self, folder: Path) -> None:
        adapters.load_optimizer(self.optimizer, self._lora, Path(folder))
        adapters.load_rng(self.generator, Path(folder))

    def seed(self, seed: int) -> None:
        torch.manual_seed(seed)  # CPU and every CUDA device: LoRA dropout draws from it
        self.generator.manual_seed(seed)

    def peak_memory_gb(self) -> float:
        """CUDA's peak allocation; on MPS the driver's current allocation; on CPU the process RSS peak."""
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 1e9
        if self.device.type == "mps":
            return torch.mps.driver_allocated_memory() / 1e9
        return base.rss_peak_gb()

    def reset_peak_memory(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def load_reward_model(self, spec: str) -> Any:
        return TorchRewardModel(
            spec,
            self.device,
            self.dtype,
            self.config.train.micro_batch_size,
            self.config.model.trust_remote_code,
        )

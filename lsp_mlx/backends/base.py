"""The narrow interface every backend implements.

The games, rewards and the trainer talk to a model only through `Backend`; they never
import mlx or torch. A backend owns one policy model (base weights + LoRA adapter), its
tokenizer and the optimizer of the adapter. The reference policy ``pi_ref`` is the same
model with the adapter switched off (docs/algorithms.md §5): no second copy of the weights.
"""

from __future__ import annotations

import resource
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypedDict, runtime_checkable

from lsp_mlx.records import PolicySample

if TYPE_CHECKING:
    from typing_extensions import Unpack


@dataclass
class Completion:
    """One sampled completion of a prompt."""

    tokens: list[int]  # generated token ids, without the stop token
    text: str
    logprobs: list[float]  # per-token log-probs at sampling time (temperature-1 policy)
    finish_reason: str  # "stop" (EOS) or "length"


@dataclass
class StepStats:
    """What one optimizer step measured (all floats, already evaluated)."""

    loss: float
    kl: float  # mean over samples of the sequence log-ratio log pi(c|p) - log pi_ref(c|p)
    grad_norm: float
    tokens: int  # completion tokens trained on
    # role -> {"loss": summed weighted loss, "kl": mean KL}
    per_role: dict[str, dict[str, float]] = field(default_factory=dict)


class RoleTotals:
    """Per-role sums over one step (weighted loss, sequence KL, sample count), filled by the
    backends micro-batch by micro-batch and merged across ranks by `lsp_mlx.distributed`."""

    def __init__(self) -> None:
        self.totals: dict[str, dict[str, float]] = {}

    def add(
        self, samples: Iterable[PolicySample], kls: Iterable[float], per_sample: Iterable[float]
    ) -> None:
        for s, kl, loss in zip(samples, kls, per_sample):
            self.merge({s.role: {"loss": s.weight * loss, "kl": kl, "n": 1.0}})

    def merge(self, totals: dict[str, dict[str, float]]) -> None:
        for role, values in totals.items():
            acc = self.totals.setdefault(role, {"loss": 0.0, "kl": 0.0, "n": 0.0})
            for key in acc:
                acc[key] += values[key]

    def mean_kl(self) -> float:
        """The mean KL over every sample of every role, as `StepStats.kl`."""
        n = sum(acc["n"] for acc in self.totals.values())
        return sum(acc["kl"] for acc in self.totals.values()) / max(n, 1.0)

    def per_role(self) -> dict[str, dict[str, float]]:
        """role -> {"loss": summed weighted loss, "kl": mean KL}, as `StepStats.per_role`."""
        return {
            role: {"loss": acc["loss"], "kl": acc["kl"] / max(acc["n"], 1.0)}
            for role, acc in self.totals.items()
        }


class Sampling(TypedDict, total=False):
    """How `Backend.generate` samples (keyword arguments, each optional)."""

    temperature: float  # default 1.0; 0 is greedy
    top_p: float  # default 1.0: no nucleus cut
    adapter: bool  # default True; False samples from the reference policy


def sampling_options(options: Sampling) -> tuple[float, float, bool]:
    """(temperature, top_p, adapter) with their defaults; an unknown option is an error."""
    unknown = set(options) - set(Sampling.__annotations__)
    if unknown:
        raise TypeError(f"generate() got unexpected options {sorted(unknown)}")
    return (
        float(options.get("temperature", 1.0)),
        float(options.get("top_p", 1.0)),
        bool(options.get("adapter", True)),
    )


def chat_tokens(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    """``messages`` rendered with a Hugging Face tokenizer's chat template, ready for the reply;
    a model without a template gets the contents separated by blank lines."""
    if tokenizer.chat_template is None:
        return list(tokenizer.encode("\n\n".join(m["content"] for m in messages) + "\n\n"))
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    if hasattr(ids, "keys"):  # transformers 5 answers a BatchEncoding by default
        ids = ids["input_ids"]
    return [int(t) for t in ids]


class TokenizerText:
    """The text methods of `Backend` for a backend whose ``tokenizer`` is a Hugging Face one
    (mlx-lm's wrapper included)."""

    tokenizer: Any

    def chat_prompt(self, messages: list[dict[str, str]]) -> list[int]:
        return chat_tokens(self.tokenizer, messages)

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def decode(self, tokens: list[int]) -> str:
        return str(self.tokenizer.decode(tokens))


def rss_peak_gb() -> float:
    """The process's peak resident memory, where no accelerator reports its own peak."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1e9 if sys.platform == "darwin" else rss / 1e6  # bytes on macOS, KiB on Linux


@runtime_checkable
class Backend(Protocol):
    name: str
    eos_token_id: int  # the id that ends a reply (the tokenizer's EOS)

    # --- text ---
    def chat_prompt(self, messages: list[dict[str, str]]) -> list[int]:
        """Token ids of ``messages`` rendered with the model's chat template, ready for the reply."""
        ...

    def encode(self, text: str) -> list[int]: ...

    def decode(self, tokens: list[int]) -> str: ...

    # --- sampling and scoring ---
    def generate(
        self, prompts: list[list[int]], n: int, max_tokens: int, **sampling: Unpack[Sampling]
    ) -> list[list[Completion]]:
        """``n`` sampled completions for each prompt; a prompt's prefill is shared by its ``n``.

        ``adapter=False`` samples from the reference policy. Temperature 0 is greedy.
        """
        ...

    def sequence_logprobs(
        self, pairs: list[tuple[list[int], list[int]]], adapter: bool = True
    ) -> list[float]:
        """Teacher-forced ``log pi(completion | prompt)`` (summed over completion tokens)."""
        ...

    def next_token_logprobs(
        self, prompts: list[list[int]], token_ids: list[int], adapter: bool = True
    ) -> list[list[float]]:
        """``log p(t | prompt)`` for each ``t`` in ``token_ids``, at the position after each prompt."""
        ...

    # --- training ---
    def train_step(
        self,
        samples: list[PolicySample],
        beta: float,
        kl_estimator: str = "k1",
        grad_reduce: Callable[[Any], Any] | None = None,
    ) -> StepStats:
        """One optimizer step on the loss of docs/algorithms.md §1 (see `PolicySample`).

        ``grad_reduce`` (data-parallel runs only) sums the accumulated gradients over the ranks
        before clipping; each sample's weight already holds the global 1/(N*G), so the global
        gradient is the sum, not the mean. With it, a rank without samples still steps with zeros.
        """
        ...

    # --- state ---
    def save_adapter(self, folder: Path) -> None:
        """Write ``adapters.safetensors`` + ``adapter_config.json`` in mlx-lm's format."""
        ...

    def load_adapter(self, folder: Path) -> None: ...

    def save_state(self, folder: Path) -> None:
        """Optimizer state and RNG state, next to the adapter in a checkpoint folder."""
        ...

    def load_state(self, folder: Path) -> None: ...

    def seed(self, seed: int) -> None:
        """Reset the sampling RNG (the trainer seeds every iteration, so resume is exact)."""
        ...

    def info(self) -> dict[str, Any]:
        """Device, dtype, BLAS and model facts for the run log."""
        ...

    def peak_memory_gb(self) -> float: ...

    def reset_peak_memory(self) -> None: ...

    def load_reward_model(self, spec: str) -> Any:
        """A scorer ``(queries: list[str], answers: list[list[str]]) -> list[list[float]]``."""
        ...

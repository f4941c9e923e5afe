"""A Hugging Face sequence-classification reward model, run in MLX.

Models such as Skywork-Reward-V2 are ``*ForSequenceClassification`` checkpoints: the base
transformer plus a ``score`` head (num_labels x hidden, no bias) read at the last token.
We load the base with mlx-lm (its architectures, its weight sanitising) and apply the head
to the final hidden state of the last real token, exactly as transformers does.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlx.core as mx
from mlx_lm.utils import _download, load_model, load_tokenizer

from lsp_mlx.backends.passes import micro_batches
from lsp_mlx.errors import UserError
from lsp_mlx.rewards.groups import regroup


def _score_weight(path: Path) -> mx.array:
    for f in sorted(path.glob("*.safetensors")):
        weights = mx.load(str(f))
        for key in ("score.weight", "classifier.weight", "v_head.summary.weight"):
            if key in weights:
                return weights[key]
    raise UserError(
        f"reward model {path} has no score head (score.weight): pass a *ForSequenceClassification checkpoint"
    )


class MLXRewardModel:
    """Reward source ``reward_model``: ``(queries, answers) -> [[score, ...], ...]``."""

    def __init__(self, spec: str, micro_batch_size: int = 8) -> None:
        try:
            path = Path(_download(spec))
        except Exception as e:  # network, missing repo: one line
            raise UserError(
                f"cannot open reward model {spec!r} ({type(e).__name__}): pass a local folder or a cached Hub id"
            ) from None
        if not (path / "config.json").is_file():
            raise UserError(
                f"reward model {spec!r} has no config.json: pass a Hugging Face model folder"
            )
        config = json.loads((path / "config.json").read_text())
        archs = config.get("architectures") or []
        if archs and not any("SequenceClassification" in a for a in archs):
            raise UserError(
                f"reward model {spec!r} is a {archs[0]}, not a sequence classifier: pass a *ForSequenceClassification model"
            )
        head = _score_weight(path)
        # mlx-lm's loader drops the head (it is not an LM weight); strict=False tolerates it
        self.model, _ = load_model(path, strict=False)
        self.model.eval()
        self.tokenizer = load_tokenizer(path)
        self.head = head.astype(mx.float32)  # (num_labels, hidden)
        self.micro_batch_size = micro_batch_size

    def _encode(self, query: str, answer: str) -> list[int]:
        messages = [{"role": "user", "content": query}, {"role": "assistant", "content": answer}]
        if getattr(self.tokenizer, "chat_template", None):
            return list(self.tokenizer.apply_chat_template(messages, tokenize=True))
        return list(self.tokenizer.encode(f"{query}\n\n{answer}"))

    def score(self, sequences: list[list[int]]) -> list[float]:
        out: list[float] = []
        for chunk in micro_batches(sequences, self.micro_batch_size):
            length = max(len(s) for s in chunk)
            ids = mx.array([s + [0] * (length - len(s)) for s in chunk])
            last = mx.array([len(s) - 1 for s in chunk])
            # (B, L, D), final norm applied; right padding is causal-safe
            hidden = self.model.model(ids)
            h_last = hidden[mx.arange(len(chunk)), last].astype(mx.float32)
            logits = h_last @ self.head.T  # (B, num_labels)
            out.extend(logits[:, 0].tolist())
        return out

    def __call__(self, queries: list[str], answers: list[list[str]]) -> list[list[float]]:
        seqs = [self._encode(q, a) for q, group in zip(queries, answers) for a in group]
        return regroup(self.score(seqs), answers)

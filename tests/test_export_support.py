"""Builders shared by the export and chat tests (this module holds no tests).

`make_adapter_run` writes a run folder the way the trainer does (docs/design.md): the tiny
model's real mlx-lm LoRA layers (``linear_to_lora_layers``) with random non-zero ``lora_b``,
saved as mlx-lm saves them, a resolved ``config.yaml``, metrics and game events written by
`EventWriter`, and checkpoints. Only the training itself is skipped: the tests are about
what happens to an adapter after training.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lsp_mlx import blas

blas.preload()


class LoraWriter:
    """The tiny model with mlx-lm LoRA layers; `save` writes one random adapter in mlx-lm format."""

    def __init__(
        self,
        model_dir: Path,
        *,
        num_layers: int,
        rank: int,
        scale: float,
        keys: list[str] | None,
        base_model: str | None,
    ) -> None:
        from mlx_lm import load
        from mlx_lm.tuner.utils import linear_to_lora_layers

        self.model, _ = load(str(model_dir))
        self.model.freeze()
        self.params = {"rank": rank, "scale": scale, "dropout": 0.0, "keys": keys}
        linear_to_lora_layers(self.model, num_layers, self.params)
        self.config = {
            "fine_tune_type": "lora",
            "num_layers": num_layers,
            "lora_parameters": self.params,
            "base_model": base_model,
            "model": str(model_dir),
        }

    def save(self, out_dir: Path, seed: int) -> Path:
        import mlx.core as mx
        from mlx.utils import tree_flatten

        mx.random.seed(seed)
        # lora_b is zero at init (the adapter would be a no-op): make it large enough to move logits
        for _, module in self.model.named_modules():
            if hasattr(module, "lora_b"):
                module.lora_b = 0.05 * mx.random.normal(module.lora_b.shape)
        weights = dict(tree_flatten(self.model.trainable_parameters()))
        out_dir.mkdir(parents=True, exist_ok=True)
        mx.save_safetensors(str(out_dir / "adapters.safetensors"), weights)
        (out_dir / "adapter_config.json").write_text(json.dumps(self.config, indent=2))
        return out_dir


def make_adapter_run(
    run_dir: Path,
    model_dir: Path,
    *,
    num_layers: int = -1,
    rank: int = 4,
    scale: float = 2.0,
    keys: list[str] | None = None,
    seed: int = 1,
    iterations: int = 4,
    base_model: str | None = None,
    game: str = "lsp",
) -> Path:
    """A finished run folder: config.yaml, events.jsonl, adapters/ and two checkpoints."""
    from lsp_mlx import config as cfg
    from lsp_mlx.events import EventWriter
    from lsp_mlx.records import Answer, Game

    config = cfg.load(
        overrides={
            "model.path": str(model_dir),
            "model.base_model": base_model,
            "lora.rank": rank,
            "lora.scale": scale,
            "lora.num_layers": num_layers,
            "lora.keys": keys,
            "game.name": game,
            "train.iterations": iterations,
            "train.run_dir": str(run_dir),
        }
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(cfg.to_yaml(config))
    events = EventWriter(run_dir)
    events.emit(
        "run_start",
        config=config.to_dict(),
        model=str(model_dir),
        base_model=base_model,
        backend="mlx",
        start_iteration=0,
        iterations=iterations,
    )
    for it in range(1, iterations + 1):
        metrics: dict[str, Any] = {
            "reward/solver_mean": 0.3 + 0.1 * it,
            "reward/challenger_mean": 0.5 - 0.05 * it,
            "loss": 1.0 / it,
            "kl": 0.01 * it,
        }
        events.emit("metrics", iteration=it, metrics=metrics)
        answers = [
            Answer(text=f"answer {j}", tokens=3, reward=0.1 * j, advantage=0.0) for j in range(2)
        ]
        events.emit(
            "game", **Game(it, 0, game, f"query {it}", 4, answers, 0.05, 0.1, 0.0).to_dict()
        )
    writer = LoraWriter(
        model_dir, num_layers=num_layers, rank=rank, scale=scale, keys=keys, base_model=base_model
    )
    checkpoints = run_dir / "checkpoints"
    for it, ckpt_seed in ((iterations // 2, seed + 100), (iterations, seed)):
        folder = checkpoints / f"iter-{it:06d}"
        writer.save(folder, ckpt_seed)
        (folder / "state.json").write_text(json.dumps({"iteration": it, "seed": 0}))
        events.emit("checkpoint", iteration=it, path=str(folder), reason="periodic")
    (checkpoints / "latest").write_text(f"iter-{iterations:06d}\n")
    writer.save(run_dir / "adapters", seed)
    events.emit("run_end", status="finished")
    events.close()
    return run_dir


def make_readable_tiny_model(folder: Path, seed: int = 5) -> Path:
    """The tiny model, made to greedy-decode letters: every token that is not a lowercase letter
    or a space gets a zero embedding row, hence logit 0 (embeddings are tied), which the
    largest of ~27 random letter logits beats. Random-model text would otherwise be invalid
    UTF-8 that decodes to identical replacement characters whatever the tokens."""
    import mlx.core as mx
    from tokenizers import Tokenizer

    from lsp_mlx.models.tiny import make_tiny_model

    make_tiny_model(folder, seed=seed)
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    keep = [
        i
        for i in range(tokenizer.get_vocab_size())
        if tokenizer.decode([i]) in set("abcdefghijklmnopqrstuvwxyz ")
    ]
    assert len(keep) == 27
    weights = mx.load(str(folder / "model.safetensors"))
    mask = mx.zeros((weights["model.embed_tokens.weight"].shape[0], 1))
    mask[mx.array(keep)] = 1.0
    weights["model.embed_tokens.weight"] = weights["model.embed_tokens.weight"] * mask
    mx.save_safetensors(str(folder / "model.safetensors"), weights, metadata={"format": "mlx"})
    return folder

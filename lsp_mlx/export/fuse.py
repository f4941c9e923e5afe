"""Fuse an mlx-lm LoRA adapter into its base model: a full model folder ``mlx_lm.load`` opens.

This is what ``mlx_lm fuse --dequantize`` does (``mlx_lm/fuse.py``), called as functions:
that script parses ``sys.argv`` itself. Each ``LoRALinear.fuse`` folds
``W + scale * lora_b.T @ lora_a.T`` into a plain ``nn.Linear``. A quantized base is always
dequantized: re-quantizing ``W + delta`` to 4 bits would round most of the small LoRA
update away, so the fused model would no longer be base + adapter.
"""

from __future__ import annotations

from pathlib import Path


def fuse_adapter(model_dir: Path | str, adapter_dir: Path, out_dir: Path) -> dict[str, bool]:
    """Write the fused model to ``out_dir``; returns ``{"dequantized": ...}``."""
    from mlx.utils import tree_unflatten
    from mlx_lm.utils import dequantize_model, load, save

    model, tokenizer, config = load(
        str(model_dir), adapter_path=str(adapter_dir), return_config=True
    )
    fused = [
        (name, module.fuse(dequantize=True))
        for name, module in model.named_modules()
        if hasattr(module, "fuse")
    ]
    if fused:
        model.update_modules(tree_unflatten(fused))
    quantized = "quantization" in config or "quantization_config" in config
    if quantized:
        model = dequantize_model(model)  # the layers without an adapter (embeddings, other linears)
        config.pop("quantization", None)
        config.pop("quantization_config", None)
    save(out_dir, str(model_dir), model, tokenizer, config, donate_model=False)
    return {"dequantized": quantized}

"""Adapters out to the ecosystem: mlx-lm and PEFT formats, model card, fused model, Hub upload.

``exporter.export_adapter`` writes an export folder; ``peft`` converts mlx-lm LoRA tensors to
PEFT's layout; ``card`` and ``history`` write the model card and its curves; ``fuse`` merges
the adapter into the base with mlx-lm; ``hub`` uploads with huggingface_hub; ``session``
loads base + adapter for ``lsp-mlx chat`` and ``generate``. Importing this package imports
neither mlx nor torch.
"""

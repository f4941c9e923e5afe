"""The file names of an adapter folder and a checkpoint, in one place.

mlx-lm reads ``adapters.safetensors`` + ``adapter_config.json``; PEFT reads
``adapter_model.safetensors`` + the same ``adapter_config.json`` (its fields sit next to
mlx-lm's); the optimizer state of a checkpoint sits next to the adapter.
"""

ADAPTER_WEIGHTS = "adapters.safetensors"  # mlx-lm's LoRA tensors
ADAPTER_CONFIG = "adapter_config.json"  # mlx-lm's and PEFT's config fields
PEFT_WEIGHTS = "adapter_model.safetensors"  # the same adapter in PEFT's layout
OPTIMIZER_STATE = "optimizer.safetensors"  # AdamW moments and step, in the MLX layout

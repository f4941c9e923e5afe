"""LoRA placement and adapter/optimizer files of the torch backend, interchangeable with MLX.

Placement mirrors mlx-lm's ``linear_to_lora_layers``: ``keys`` (module paths inside a block,
``None`` = every linear layer of a block) on the last ``num_layers`` blocks (-1 = all). The
PEFT ``target_modules``/``layers_to_transform`` come from `lsp_mlx.export.peft.plan_layout`,
the same planner the exporter uses.

An adapter folder holds both formats, so either backend, ``mlx_lm.generate --adapter-path``
and ``PeftModel.from_pretrained`` open it:
- ``adapters.safetensors``: mlx-lm tensors ``<module>.lora_a`` (in, r) and ``.lora_b`` (r, out);
- ``adapter_model.safetensors``: PEFT tensors ``base_model.model.<module>.lora_A.weight`` (r, in)
  and ``lora_B.weight`` (out, r), i.e. the transposes (docs/algorithms.md §5);
- ``adapter_config.json``: mlx-lm's keys (fine_tune_type, num_layers, lora_parameters) and PEFT's
  LoraConfig keys side by side; each reader ignores the other's (PEFT warns that it does).
``optimizer.safetensors`` uses the MLX backend's layout (``<param>.m``, ``<param>.v``, ``step``),
so a checkpoint resumes on either backend.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from peft import get_peft_model_state_dict
from peft.tuners.lora import LoraLayer
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from lsp_mlx.adapter_files import ADAPTER_CONFIG, ADAPTER_WEIGHTS, OPTIMIZER_STATE, PEFT_WEIGHTS
from lsp_mlx.errors import UserError
from lsp_mlx.export.peft import PEFT_PREFIX, PeftLayout, peft_config, plan_layout

RNG_FILE = "torch_rng.safetensors"
_PEFT_NAME = re.compile(r"^(?P<module>.+)\.lora_(?P<leaf>[AB])(?:\.default)?\.weight$")

LoraModules = list[tuple[str, LoraLayer]]  # (module path in the base model, its PEFT LoRA layer)


@dataclass
class LoraLayout:
    peft: PeftLayout
    num_layers: int  # blocks with LoRA, counted from the last (mlx-lm's num_layers, resolved)


def _blocks(base: torch.nn.Module) -> tuple[str, torch.nn.ModuleList]:
    """The transformer blocks and their path, e.g. ``model.layers``."""
    decoder = base.get_decoder() if hasattr(base, "get_decoder") else base
    layers = getattr(decoder, "layers", None)
    if isinstance(layers, torch.nn.ModuleList):
        for name, module in base.named_modules():
            if module is layers:
                return name, layers
    raise UserError(
        f"cannot find the transformer blocks of {type(base).__name__}: the torch backend supports decoder models with a .layers list (llama, qwen, mistral ...)"
    )


def lora_layout(
    base: torch.nn.Module, keys: list[str] | None, num_layers: int, rank: int
) -> LoraLayout:
    prefix, blocks = _blocks(base)
    if num_layers == -1:
        num_layers = len(blocks)
    if num_layers > len(blocks):
        raise UserError(
            f"lora.num_layers is {num_layers} but the model has {len(blocks)} blocks: lower it or use -1"
        )
    if keys is None:  # mlx-lm: every linear layer found in any block
        keys = sorted(
            {
                n
                for block in blocks
                for n, m in block.named_modules()
                if isinstance(m, torch.nn.Linear)
            }
        )
    names: list[str] = []
    shapes: dict[str, tuple[int, ...]] = {}
    for index in range(len(blocks) - num_layers, len(blocks)):
        found = dict(blocks[index].named_modules())
        for key in keys:
            module = found.get(key)
            if module is None:
                continue
            if not isinstance(module, torch.nn.Linear):
                raise UserError(
                    f"lora.keys entry {key!r} is a {type(module).__name__}, not a linear layer: list linear layers only"
                )
            path = f"{prefix}.{index}.{key}"
            names += [f"{path}.lora_a", f"{path}.lora_b"]
            shapes[f"{path}.lora_a"] = (module.in_features, rank)
            shapes[f"{path}.lora_b"] = (rank, module.out_features)
    if not names:
        raise UserError(
            f"lora.keys {keys} matched no layer: use module paths such as self_attn.q_proj"
        )
    all_modules = {n for n, _ in base.named_modules()}
    return LoraLayout(peft=plan_layout(names, shapes, all_modules), num_layers=num_layers)


def lora_parameters(model: torch.nn.Module) -> LoraModules:
    """The PEFT LoRA layers of ``model`` by base-model path, sorted."""
    prefix = PEFT_PREFIX
    found = [
        (name[len(prefix) :] if name.startswith(prefix) else name, m)
        for name, m in model.named_modules()
        if isinstance(m, LoraLayer) and "default" in m.lora_A
    ]
    return sorted(found, key=lambda item: item[0])


def mlx_weights(lora: LoraModules) -> dict[str, torch.Tensor]:
    """The adapter in mlx-lm's names and layout."""
    out = {}
    for name, layer in lora:
        out[f"{name}.lora_a"] = layer.lora_A["default"].weight.detach().T.contiguous().cpu()
        out[f"{name}.lora_b"] = layer.lora_B["default"].weight.detach().T.contiguous().cpu()
    return out


def adapter_config(
    layout: LoraLayout, lora: dict[str, Any], model_path: str, base_model: str | None
) -> dict[str, Any]:
    mlx = {
        "fine_tune_type": "lora",
        "num_layers": layout.num_layers,
        "lora_parameters": dict(lora),
        "model": model_path,
        "base_model": base_model,
    }
    return {
        **mlx,
        **peft_config(layout.peft, lora["scale"], lora["dropout"], base_model or model_path),
    }


def save_adapter(
    model: torch.nn.Module, lora: LoraModules, folder: Path, config: dict[str, Any]
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    save_file(mlx_weights(lora), str(folder / ADAPTER_WEIGHTS))
    peft_state = {
        k: v.detach().contiguous().cpu() for k, v in get_peft_model_state_dict(model).items()
    }
    save_file(peft_state, str(folder / PEFT_WEIGHTS), metadata={"format": "pt"})
    (folder / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2))


def _read(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise UserError(
            f"cannot read {path} ({e}): the file is damaged; use another checkpoint"
        ) from None


def _peft_to_mlx(tensors: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in tensors.items():
        match = _PEFT_NAME.match(key[len(PEFT_PREFIX) :] if key.startswith(PEFT_PREFIX) else key)
        if match is None:
            raise UserError(
                f"{path}: tensor {key!r} is not a PEFT LoRA matrix: only plain LoRA adapters load"
            )
        out[f"{match['module']}.lora_{match['leaf'].lower()}"] = value.T
    return out


def _saved_scale(folder: Path) -> float | None:
    try:
        config = json.loads((folder / ADAPTER_CONFIG).read_text())
    except (OSError, ValueError):
        return None
    if isinstance(config.get("lora_parameters"), dict) and "scale" in config["lora_parameters"]:
        return float(config["lora_parameters"]["scale"])
    if "lora_alpha" in config and config.get("r"):
        return float(config["lora_alpha"]) / float(config["r"])
    return None


def load_adapter(lora: LoraModules, folder: Path, scale: float) -> None:
    """Load an adapter folder in mlx-lm format (preferred) or PEFT format into the LoRA layers."""
    if (folder / ADAPTER_WEIGHTS).is_file():
        weights = _read(folder / ADAPTER_WEIGHTS)
    elif (folder / PEFT_WEIGHTS).is_file():
        weights = _peft_to_mlx(_read(folder / PEFT_WEIGHTS), folder / PEFT_WEIGHTS)
    else:
        raise UserError(
            f"no {ADAPTER_WEIGHTS} or {PEFT_WEIGHTS} in {folder}: pass a checkpoint or adapter folder"
        )
    saved = _saved_scale(folder)
    if saved is not None and abs(saved - scale) > 1e-6 * max(1.0, abs(scale)):
        raise UserError(
            f"the adapter in {folder} was trained with LoRA scale {saved:g} but lora.scale is {scale:g}: set lora.scale={saved:g}"
        )
    expected = mlx_weights(lora)
    if set(weights) != set(expected) or any(
        weights[k].shape != v.shape for k, v in expected.items()
    ):
        raise UserError(
            f"adapter in {folder} does not fit this model/LoRA config (rank, layers or keys differ): use the run's own config"
        )
    with torch.no_grad():
        for name, layer in lora:
            a, b = layer.lora_A["default"].weight, layer.lora_B["default"].weight
            a.copy_(weights[f"{name}.lora_a"].T.to(a))
            b.copy_(weights[f"{name}.lora_b"].T.to(b))


def _param_names(lora: LoraModules) -> list[tuple[str, torch.nn.Parameter]]:
    out = []
    for name, layer in lora:
        out.append((f"{name}.lora_a", layer.lora_A["default"].weight))
        out.append((f"{name}.lora_b", layer.lora_B["default"].weight))
    return out


def save_optimizer(optimizer: torch.optim.Optimizer, lora: LoraModules, folder: Path) -> None:
    """AdamW moments as the MLX backend stores them: ``<param>.m``/``.v`` in mlx layout, ``step``."""
    tensors: dict[str, torch.Tensor] = {}
    step = 0
    for name, param in _param_names(lora):
        state = optimizer.state.get(param, {})
        m = state.get("exp_avg", torch.zeros_like(param))
        v = state.get("exp_avg_sq", torch.zeros_like(param))
        tensors[f"{name}.m"] = m.detach().T.contiguous().cpu()
        tensors[f"{name}.v"] = v.detach().T.contiguous().cpu()
        if "step" in state:
            step = int(state["step"])
    tensors["step"] = torch.tensor(step, dtype=torch.uint64)
    tensors["learning_rate"] = torch.tensor(optimizer.param_groups[0]["lr"], dtype=torch.float32)
    save_file(
        tensors, str(folder / OPTIMIZER_STATE), metadata={"written_by": "lsp_mlx torch backend"}
    )


def load_optimizer(optimizer: torch.optim.Optimizer, lora: LoraModules, folder: Path) -> None:
    path = folder / OPTIMIZER_STATE
    if not path.is_file():
        return  # an adapter-only folder: the optimizer starts fresh, as on the MLX backend
    tensors = _read(path)
    step = int(tensors["step"].item()) if "step" in tensors else 0
    if step == 0:
        return
    for name, param in _param_names(lora):
        m, v = tensors.get(f"{name}.m"), tensors.get(f"{name}.v")
        if m is None or v is None or m.T.shape != param.shape:
            raise UserError(
                f"optimizer state in {folder} does not fit this LoRA config: resume with the run's own config"
            )
        optimizer.state[param] = {
            "step": torch.tensor(float(step)),
            "exp_avg": m.T.to(param).contiguous(),
            "exp_avg_sq": v.T.to(param).contiguous(),
        }


def save_rng(generator: torch.Generator, folder: Path) -> None:
    states = {"sampler": generator.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            states[f"cuda{i}"] = state
    save_file({k: v.contiguous() for k, v in states.items()}, str(folder / RNG_FILE))


def load_rng(generator: torch.Generator, folder: Path) -> None:
    path = folder / RNG_FILE
    if not path.is_file():
        return  # written by the MLX backend: the trainer re-seeds every iteration anyway
    states = _read(path)
    generator.set_state(states["sampler"])
    torch.set_rng_state(states["torch"])
    if torch.cuda.is_available():
        cuda = [states[k] for k in sorted(states) if k.startswith("cuda")]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)

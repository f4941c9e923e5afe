"""mlx-lm LoRA adapter -> PEFT LoRA adapter (``adapter_model.safetensors`` + config fields).

mlx-lm's ``LoRALinear`` stores ``lora_a`` (in, r) and ``lora_b`` (r, out) and adds
``scale * x @ lora_a @ lora_b``; PEFT stores ``lora_A.weight`` (r, in) and ``lora_B.weight``
(out, r) and adds ``(lora_alpha / r) * B(A(x))``. So (docs/algorithms.md §5)::

    base_model.model.<module>.lora_A.weight = lora_a.T
    base_model.model.<module>.lora_B.weight = lora_b.T
    lora_alpha = scale * r

``base_model.model.`` is the prefix ``PeftModel.save_pretrained`` writes for a
``*ForCausalLM`` (checked against peft 0.21). The adapted modules are read from the saved
tensor names, never from the config: ``keys: null`` in mlx-lm means "every linear layer".
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lsp_mlx.adapter_files import PEFT_WEIGHTS
from lsp_mlx.errors import UserError

PEFT_PREFIX = "base_model.model."
_LORA_NAME = re.compile(r"^(?P<module>.+)\.(?P<leaf>lora_a|lora_b)$")
# "model.layers.12.self_attn.q_proj" -> prefix "model.layers", index 12, rest "self_attn.q_proj"
_LAYER_NAME = re.compile(r"^(?P<prefix>(?:.+\.)?(?P<pattern>[^.]+))\.(?P<index>\d+)\.(?P<rest>.+)$")


@dataclass
class PeftLayout:
    """Which modules carry the adapter, in the words of a PEFT ``LoraConfig``."""

    modules: list[str]  # full module paths, e.g. model.layers.1.self_attn.q_proj
    rank: int
    target_modules: list[str] | str  # a list of suffixes, or an exact regex when no list fits
    layers_to_transform: list[int] | None
    layers_pattern: str | None


def adapted_modules(names: Iterable[str]) -> dict[str, dict[str, str]]:
    """``{module: {"lora_a": name, "lora_b": name}}`` from the tensor names of an adapter."""
    modules: dict[str, dict[str, str]] = {}
    for name in names:
        match = _LORA_NAME.match(name)
        if match is None:
            raise UserError(
                f"adapter tensor {name!r} is not a LoRA matrix (lora_a/lora_b): only plain LoRA "
                "adapters (fine_tune_type: lora) convert to PEFT; export with the mlx-lm format only"
            )
        modules.setdefault(match["module"], {})[match["leaf"]] = name
    for module, leaves in modules.items():
        if set(leaves) != {"lora_a", "lora_b"}:
            raise UserError(
                f"adapter module {module!r} lacks lora_a or lora_b: the adapter file is damaged, re-train"
            )
    if not modules:
        raise UserError("the adapter has no LoRA tensors: it is empty, train it first")
    return modules


def _layer_parts(module: str) -> tuple[str, str, int, str] | None:
    match = _LAYER_NAME.match(module)
    if match is None:
        return None
    return match["prefix"], match["pattern"], int(match["index"]), match["rest"]


def _selected_by_list(
    candidates: Iterable[str], targets: list[str], layers: list[int], pattern: str
) -> set[str]:
    """The modules PEFT's ``check_target_module_exists`` picks for a suffix list + layer indices."""
    picked = set()
    for key in candidates:
        if key not in targets and not any(key.endswith(f".{t}") for t in targets):
            continue
        match = re.match(rf"(?:^|.*?\.){re.escape(pattern)}\.(?P<idx>\d+)\.", key)
        if match is not None and int(match["idx"]) in layers:
            picked.add(key)
    return picked


def plan_layout(
    names: Iterable[str], shapes: dict[str, tuple[int, ...]], base_modules: set[str] | None
) -> PeftLayout:
    """Describe the adapted modules as PEFT ``target_modules`` (+ ``layers_to_transform``).

    The suffix-list form is used only when it selects exactly the adapted modules (checked
    against the base model's module names when we have them); otherwise an exact regex.
    """
    modules = adapted_modules(names)
    ranks = {shapes[leaves["lora_a"]][-1] for leaves in modules.values()}
    if len(ranks) != 1:
        raise UserError(
            f"adapter modules have different ranks {sorted(ranks)}: PEFT export needs one rank, re-train"
        )
    ordered = sorted(modules)
    parts = [_layer_parts(m) for m in ordered]
    layout = PeftLayout(
        modules=ordered,
        rank=ranks.pop(),
        target_modules="|".join(re.escape(m) for m in ordered),
        layers_to_transform=None,
        layers_pattern=None,
    )
    if any(p is None for p in parts) or len({(p[0], p[1]) for p in parts if p}) != 1:
        return layout
    pattern = parts[0][1]  # type: ignore[index]
    layers = sorted({p[2] for p in parts if p})
    rests = sorted({p[3] for p in parts if p})
    if len(layers) * len(rests) != len(ordered):
        return layout  # not every layer has every module: only the regex is exact
    universe = base_modules if base_modules is not None else set(ordered)
    if _selected_by_list(universe, rests, layers, pattern) != set(ordered):
        return layout
    layout.target_modules, layout.layers_to_transform, layout.layers_pattern = (
        rests,
        layers,
        pattern,
    )
    return layout


def base_linear_modules(model_dir: Path) -> dict[str, tuple[int, ...] | None]:
    """Module paths with a ``.weight`` in a model folder's safetensors, with the weight shape
    (None for quantized weights, whose stored shape is packed)."""
    from safetensors import safe_open

    shapes: dict[str, tuple[int, ...] | None] = {}
    for file in sorted(model_dir.glob("*.safetensors")):
        with safe_open(str(file), framework="numpy") as fh:
            keys = set(fh.keys())
            for key in keys:
                if key.endswith(".weight"):
                    module = key[: -len(".weight")]
                    quantized = f"{module}.scales" in keys
                    shapes[module] = None if quantized else tuple(fh.get_slice(key).get_shape())
    return shapes


def check_against_base(
    layout: PeftLayout,
    shapes: dict[str, tuple[int, ...]],
    names: dict[str, dict[str, str]],
    base: dict[str, tuple[int, ...] | None],
) -> None:
    """Each adapted module must be a matrix of the base under the same name and shape, or
    transformers would not find it (mlx-lm and HF module names agree for the llama family)."""
    for module in layout.modules:
        if module not in base:
            raise UserError(
                f"adapted module {module!r} has no weight in the base model folder: this architecture's "
                "mlx-lm names differ from transformers'; use the mlx-lm export only"
            )
        weight = base[module]
        a, b = shapes[names[module]["lora_a"]], shapes[names[module]["lora_b"]]
        if weight is not None and len(weight) == 2 and weight != (b[1], a[0]):
            raise UserError(
                f"the adapter does not fit this base model: {module!r} is {weight[1]}->{weight[0]} in the "
                f"base but {a[0]}->{b[1]} in the adapter: pass the base it was trained on with --model"
            )
        if weight is not None and len(weight) != 2:
            raise UserError(
                f"adapted module {module!r} is not a linear layer of the base (weight {weight}, adapter "
                f"{a[0]}->{b[1]}): only LoRA on linear layers converts to PEFT; use the mlx-lm export only"
            )


def peft_config(
    layout: PeftLayout, scale: float, dropout: float, base_model_name_or_path: str
) -> dict[str, Any]:
    """The PEFT ``LoraConfig`` fields (plus the defaults PEFT itself writes, for older readers)."""
    return {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model_name_or_path,
        "r": layout.rank,
        "lora_alpha": float(scale) * layout.rank,
        "lora_dropout": float(dropout),
        "target_modules": layout.target_modules,
        "layers_to_transform": layout.layers_to_transform,
        "layers_pattern": layout.layers_pattern,
        "bias": "none",
        "fan_in_fan_out": False,
        "use_rslora": False,
        "use_dora": False,
        "init_lora_weights": True,
        "inference_mode": True,
        "modules_to_save": None,
        "rank_pattern": {},
        "alpha_pattern": {},
    }


def write_peft_adapter(
    adapter_file: Path,
    out_dir: Path,
    lora: dict[str, Any],
    base_model_name_or_path: str,
    model_dir: Path | None,
) -> dict[str, Any]:
    """Write ``out_dir/adapter_model.safetensors``; returns the PEFT config fields.

    ``lora`` is mlx-lm's ``lora_parameters`` (its ``scale`` and ``dropout`` are used; the
    rank comes from the tensors). ``model_dir``, when given, is checked for the module names.
    """
    import mlx.core as mx

    weights = mx.load(str(adapter_file))
    shapes = {k: tuple(v.shape) for k, v in weights.items()}
    base = base_linear_modules(model_dir) if model_dir is not None else None
    layout = plan_layout(weights, shapes, set(base) if base is not None else None)
    names = adapted_modules(weights)
    if base is not None:
        check_against_base(layout, shapes, names, base)
    if "scale" not in lora:
        raise UserError(
            f"{adapter_file.parent}/adapter_config.json has no lora_parameters.scale: re-train or fix the file"
        )
    tensors = {}
    for module in layout.modules:
        tensors[f"{PEFT_PREFIX}{module}.lora_A.weight"] = weights[names[module]["lora_a"]].T
        tensors[f"{PEFT_PREFIX}{module}.lora_B.weight"] = weights[names[module]["lora_b"]].T
    out_dir.mkdir(parents=True, exist_ok=True)
    mx.save_safetensors(str(out_dir / PEFT_WEIGHTS), tensors, metadata={"format": "pt"})
    return peft_config(layout, lora["scale"], lora.get("dropout", 0.0), base_model_name_or_path)

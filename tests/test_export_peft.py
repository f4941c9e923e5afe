"""The PEFT export, loaded by the real consumer: ``peft.PeftModel.from_pretrained`` over the same
base in transformers (torch, CPU, fp32), must give the logits mlx-lm gives with the run's
adapter (max abs difference < 1e-4; both fp32, the remaining difference is summation order),
differ from the base's (the adapter is not empty), and adapt exactly the modules mlx-lm did.

The adapters are mlx-lm's own LoRA layers on the tiny model with random non-zero ``lora_b``
(test_export_support.py), in three layouts: every linear of every block, two projections of
the last block, and an irregular one that only an exact regex in ``target_modules`` describes.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from test_export_support import make_adapter_run

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch")
peft = pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")

TOLERANCE = 1e-4
PROMPTS = [[1, 40, 80, 120, 160, 200, 240, 30, 2], [5, 9, 77, 130, 131, 132]]


def mlx_logits(model_dir: Path, adapter: Path | None) -> list[np.ndarray]:
    import mlx.core as mx
    from mlx_lm import load

    model, _ = load(str(model_dir), adapter_path=str(adapter) if adapter else None)
    return [np.array(model(mx.array([ids]))[0]) for ids in PROMPTS]


def torch_logits(model: torch.nn.Module) -> list[np.ndarray]:
    model.eval()
    with torch.no_grad():
        return [model(torch.tensor([ids])).logits[0].numpy() for ids in PROMPTS]


def load_peft(base_dir: Path, export: Path) -> tuple[torch.nn.Module, torch.nn.Module, list[str]]:
    """(base, PEFT model, warning messages) from transformers + peft, as a user would load them."""
    base = transformers.AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    base_out = torch_logits(base)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = peft.PeftModel.from_pretrained(base, str(export))
    return base_out, model, [str(w.message) for w in caught]


def lora_modules(model: torch.nn.Module) -> set[str]:
    prefix = "base_model.model."
    return {
        name[len(prefix) :]
        for name, m in model.named_modules()
        if hasattr(m, "lora_A") and len(m.lora_A)
    }


def drop_module(adapter_dir: Path, module: str, out: Path) -> Path:
    """A copy of an mlx-lm adapter folder without one module's LoRA pair."""
    import mlx.core as mx

    weights = mx.load(str(adapter_dir / "adapters.safetensors"))
    kept = {k: v for k, v in weights.items() if not k.startswith(module + ".")}
    assert len(kept) == len(weights) - 2
    out.mkdir(parents=True)
    mx.save_safetensors(str(out / "adapters.safetensors"), kept)
    (out / "adapter_config.json").write_text((adapter_dir / "adapter_config.json").read_text())
    return out


LAYOUTS = {
    "all-linears": dict(num_layers=-1, keys=None, rank=4, scale=2.0),
    "last-block-qv": dict(
        num_layers=1, keys=["self_attn.q_proj", "self_attn.v_proj"], rank=2, scale=8.0
    ),
    "irregular": dict(num_layers=-1, keys=["self_attn.q_proj", "mlp.down_proj"], rank=3, scale=4.0),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_peft_matches_mlx(layout: str, tiny_model: Path, tmp_path: Path) -> None:
    import mlx.core as mx
    from safetensors.numpy import load_file

    from lsp_mlx.export.exporter import export_adapter

    run = make_adapter_run(tmp_path / "run", tiny_model, **LAYOUTS[layout])
    source = run / "adapters"
    if layout == "irregular":  # layer 0 keeps down_proj only: no suffix list + layer list says that
        source = drop_module(source, "model.layers.0.self_attn.q_proj", tmp_path / "irregular")
    result = export_adapter(source, tmp_path / "export")
    config = json.loads((result.out_dir / "adapter_config.json").read_text())
    adapted = {k.rsplit(".", 1)[0] for k in mx.load(str(source / "adapters.safetensors"))}

    ours = mlx_logits(tiny_model, source)
    base_out, model, messages = load_peft(tiny_model, result.out_dir)
    theirs = torch_logits(model)

    assert lora_modules(model) == adapted  # PEFT adapts exactly mlx-lm's modules, no more
    assert not [m for m in messages if "missing adapter keys" in m], messages
    # every saved tensor landed in the PEFT model (unexpected keys would be dropped silently)
    state = model.state_dict()
    saved = load_file(str(result.out_dir / "adapter_model.safetensors"))
    for key, value in saved.items():
        loaded = key.replace(".lora_A.", ".lora_A.default.").replace(".lora_B.", ".lora_B.default.")
        np.testing.assert_array_equal(state[loaded].numpy(), value)
    for o, t, b in zip(ours, theirs, base_out):
        assert np.abs(o - t).max() < TOLERANCE
        assert (
            np.abs(o - b).max() > 0.05
        )  # the adapter moves the logits: the comparison is not vacuous
    lora = LAYOUTS[layout]
    assert config["r"] == lora["rank"] and config["lora_alpha"] == pytest.approx(
        lora["scale"] * lora["rank"]
    )
    if layout == "last-block-qv":
        assert config["target_modules"] == ["self_attn.q_proj", "self_attn.v_proj"]
        assert config["layers_to_transform"] == [1]
    if layout == "irregular":
        assert isinstance(config["target_modules"], str) and config["layers_to_transform"] is None


def test_peft_tensors_are_transposes_and_alpha_matters(tiny_model: Path, tmp_path: Path) -> None:
    """The PEFT tensors are exactly mlx-lm's, transposed; and the parity check above is sharp
    enough to catch the classic mistake of lora_alpha = scale (instead of scale * r)."""
    import mlx.core as mx
    from safetensors.numpy import load_file, save_file

    from lsp_mlx.export.exporter import export_adapter

    run = make_adapter_run(
        tmp_path / "run", tiny_model, num_layers=1, keys=["self_attn.q_proj"], rank=4, scale=4.0
    )
    out = export_adapter(run, tmp_path / "export").out_dir
    weights = load_file(str(out / "adapter_model.safetensors"))
    mlx_weights = mx.load(str(run / "adapters" / "adapters.safetensors"))
    module = "model.layers.1.self_attn.q_proj"
    np.testing.assert_array_equal(
        weights[f"base_model.model.{module}.lora_A.weight"],
        np.array(mlx_weights[f"{module}.lora_a"]).T,
    )
    np.testing.assert_array_equal(
        weights[f"base_model.model.{module}.lora_B.weight"],
        np.array(mlx_weights[f"{module}.lora_b"]).T,
    )
    # alpha off by the rank factor (alpha = scale instead of scale * r) must break parity
    config = json.loads((out / "adapter_config.json").read_text())
    config["lora_alpha"] = config["lora_alpha"] / config["r"]
    (out / "adapter_config.json").write_text(json.dumps(config))
    save_file(weights, str(out / "adapter_model.safetensors"))
    _, model, _ = load_peft(tiny_model, out)
    ours = mlx_logits(tiny_model, run / "adapters")
    assert max(np.abs(o - t).max() for o, t in zip(ours, torch_logits(model))) > 10 * TOLERANCE

"""PEFT parity on the embedded SmolLM2-135M-Instruct: the export of an adapter trained over the
embedded model, loaded by ``peft.PeftModel.from_pretrained`` over

- the converted model folder opened by transformers (a plain HF llama layout), and
- transformers' own GGUF loader over the original ``SmolLM2-135M-Instruct.Q4_1.gguf``,

gives the logits mlx-lm gives with the adapter (max abs difference < 1e-3 on logits of
magnitude ~20; measured ~2e-4, the fp32 summation-order noise of 30 blocks), and the fused
model gives them too. The adapter is mlx-lm's own LoRA on the last 4 blocks with random
non-zero ``lora_b`` (test_export_support.py), moving the logits by ~2.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_export_support import make_adapter_run

pytestmark = [pytest.mark.slow, pytest.mark.torch]
torch = pytest.importorskip("torch")
peft = pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")
pytest.importorskip("gguf")  # transformers' GGUF loader needs it

TOLERANCE = 1e-3


def _torch_logits(model: torch.nn.Module, ids: list[int]) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float().numpy()


def test_smollm2_export_matches_peft_gguf_and_fused(tmp_path: Path) -> None:
    import mlx.core as mx
    from huggingface_hub import ModelCard
    from mlx_lm import load

    from lsp_mlx.export.exporter import export_adapter
    from lsp_mlx.models import DEFAULT_BASE_MODEL, resolve_model
    from lsp_mlx.models.embedded import embedded_gguf_path

    folder = resolve_model("default", dequantize=True).path
    run = make_adapter_run(
        tmp_path / "run", folder, num_layers=4, rank=8, scale=2.0, base_model=DEFAULT_BASE_MODEL
    )
    result = export_adapter(run, tmp_path / "export", fuse=True)
    export = result.out_dir

    card = ModelCard.load(export / "README.md")
    assert card.data.base_model == DEFAULT_BASE_MODEL and card.data.license == "apache-2.0"
    config = json.loads((export / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == DEFAULT_BASE_MODEL
    assert config["layers_to_transform"] == [26, 27, 28, 29] and len(config["target_modules"]) == 7

    model, tokenizer = load(str(folder), adapter_path=str(run / "adapters"))
    ids = list(
        tokenizer.apply_chat_template(
            [{"role": "user", "content": "What is the capital of France?"}],
            add_generation_prompt=True,
        )
    )
    ours = np.array(model(mx.array([ids]))[0])
    for m in (m for _, m in model.named_modules() if hasattr(m, "lora_a")):
        m.scale = 0.0  # adapter off: the base
    ours_base = np.array(model(mx.array([ids]))[0])
    del model
    assert np.abs(ours - ours_base).max() > 0.1

    hf = transformers.AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
    np.testing.assert_allclose(_torch_logits(hf, ids), ours_base, atol=TOLERANCE, rtol=0)
    adapted = peft.PeftModel.from_pretrained(hf, str(export))
    np.testing.assert_allclose(_torch_logits(adapted, ids), ours, atol=TOLERANCE, rtol=0)
    del hf, adapted

    gguf = embedded_gguf_path()
    from_gguf = transformers.AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
    )
    np.testing.assert_allclose(_torch_logits(from_gguf, ids), ours_base, atol=TOLERANCE, rtol=0)
    adapted = peft.PeftModel.from_pretrained(from_gguf, str(export))
    np.testing.assert_allclose(_torch_logits(adapted, ids), ours, atol=TOLERANCE, rtol=0)
    del from_gguf, adapted

    fused, _ = load(str(export / "fused"))
    np.testing.assert_allclose(np.array(fused(mx.array([ids]))[0]), ours, atol=TOLERANCE, rtol=0)

"""`lsp-mlx export` end to end: a real `lsp-mlx train` run on the tiny model, exported with
`--fuse`, then opened by the real consumers: mlx-lm (`load`, the `mlx_lm generate` CLI),
huggingface_hub (the card's metadata) and matplotlib (the PNG). The PEFT side is in
test_export_peft.py."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

from lsp_mlx.errors import UserError

PROMPT_IDS = [1, 40, 80, 120, 160, 200, 240, 30, 2]


@pytest.fixture(scope="module")
def trained_run(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two real self-play iterations (configs/tiny.yaml), a checkpoint after each."""
    run_dir = tmp_path_factory.mktemp("export") / "run"
    result = run_cli(
        "train",
        "--config",
        "configs/tiny.yaml",
        "--model",
        str(tiny_model),
        "--iterations",
        "2",
        "--run-dir",
        str(run_dir),
        "--set",
        "lora.scale=40.0",
        "--set",
        "train.learning_rate=0.01",
    )
    assert result.returncode == 0, result.stderr
    return run_dir


@pytest.fixture(scope="module")
def export_dir(trained_run: Path) -> Path:
    out = trained_run.parent / "exports" / "x"
    result = run_cli("export", "--adapter", str(trained_run), "--out", str(out), "--fuse")
    assert result.returncode == 0, result.stderr
    assert "fused/" in result.stdout and "lsp-mlx chat --adapter" in result.stdout
    return out


def _logits(model_dir: Path | str, adapter: Path | None = None) -> np.ndarray:
    import mlx.core as mx
    from mlx_lm import load

    model, _ = load(str(model_dir), adapter_path=str(adapter) if adapter else None)
    return np.array(model(mx.array([PROMPT_IDS]))[0].astype(mx.float32))


def test_export_writes_both_formats_card_and_fused(
    export_dir: Path, trained_run: Path, tiny_model: Path
) -> None:
    files = {p.name for p in export_dir.iterdir()}
    assert files == {
        "adapters.safetensors",
        "adapter_model.safetensors",
        "adapter_config.json",
        "README.md",
        "training_curves.png",
        "fused",
    }
    # the mlx-lm adapter is the run's newest one, byte for byte
    assert (export_dir / "adapters.safetensors").read_bytes() == (
        trained_run / "adapters" / "adapters.safetensors"
    ).read_bytes()
    config = json.loads((export_dir / "adapter_config.json").read_text())
    lora = json.loads((trained_run / "adapters" / "adapter_config.json").read_text())[
        "lora_parameters"
    ]
    # mlx-lm's fields ...
    assert (
        config["fine_tune_type"] == "lora"
        and config["num_layers"] == 2
        and config["lora_parameters"] == lora
    )
    # ... and PEFT's, in the same file
    assert config["peft_type"] == "LORA" and config["task_type"] == "CAUSAL_LM"
    assert config["base_model_name_or_path"] == str(
        tiny_model
    )  # no Hub id recorded: the local folder
    assert config["r"] == lora["rank"] == 4
    assert config["lora_alpha"] == pytest.approx(lora["scale"] * lora["rank"]) == 160.0
    assert config["lora_dropout"] == 0.0
    assert sorted(config["target_modules"]) == sorted(
        [
            "self_attn.q_proj",
            "self_attn.k_proj",
            "self_attn.v_proj",
            "self_attn.o_proj",
            "mlp.gate_proj",
            "mlp.up_proj",
            "mlp.down_proj",
        ]
    )  # keys: null = every linear of a block
    assert config["layers_to_transform"] == [0, 1]
    # only the keys mlx-lm reads beyond PEFT's (PEFT warns about each), and no machine-local path
    assert not {"model", "base_model"} & set(config)


def test_model_card(export_dir: Path, trained_run: Path) -> None:
    from huggingface_hub import ModelCard

    from lsp_mlx.events import read_events

    card = ModelCard.load(export_dir / "README.md")
    assert card.data.library_name == "peft"
    assert card.data.license == "other"  # the tiny model records none, and the card says so
    assert "self-play" in card.data.tags and "lsp" in card.data.tags
    assert card.data.base_model is None  # a local base has no Hub id to link
    text = card.text
    assert "license: other" not in text and "records no license" in text
    last = [e for e in read_events(trained_run) if e["type"] == "metrics"][-1]
    assert last["iteration"] == 2
    loss_row = next(line for line in text.splitlines() if line.startswith("| `loss` |"))
    assert loss_row.rstrip(" |").endswith(f"{last['metrics']['loss']:.4g}")
    assert "Iterations: 2 of 2 planned" in text and "lsp_mlx.rewards.heuristics:quality" in text
    assert "| LoRA scale (mlx-lm) / lora_alpha (PEFT) | 40 / 160 |" in text
    assert (
        "PeftModel.from_pretrained" in text and "mlx_lm.generate" in text and "adapter_path" in text
    )
    assert "![reward, loss and KL curves](training_curves.png)" in text


def test_curves_png(export_dir: Path) -> None:
    import matplotlib.image

    png = export_dir / "training_curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = matplotlib.image.imread(png)
    assert pixels.shape[0] > 200 and pixels.shape[1] > 600
    assert pixels.std() > 0.01  # not a blank canvas


def test_mlx_lm_loads_the_export_and_fused_model(
    export_dir: Path, trained_run: Path, tiny_model: Path
) -> None:
    base = _logits(tiny_model)
    ours = _logits(tiny_model, trained_run / "adapters")
    exported = _logits(tiny_model, export_dir)  # the merged adapter_config.json is read by mlx-lm
    fused = _logits(export_dir / "fused")
    assert np.abs(ours - base).max() > 1e-2  # two real training steps moved the model
    np.testing.assert_array_equal(exported, ours)
    np.testing.assert_allclose(fused, ours, atol=1e-4, rtol=0)
    fused_config = json.loads((export_dir / "fused" / "config.json").read_text())
    assert "quantization" not in fused_config


def test_mlx_lm_generate_cli_uses_the_adapter(export_dir: Path, tiny_model: Path) -> None:
    """`mlx_lm generate --adapter-path EXPORT` (mlx-lm's own CLI) runs, and greedy-decodes the same
    text as `lsp-mlx generate` on the export."""
    args = ["--prompt", "hello", "--max-tokens", "12"]
    theirs = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlx_lm",
            "generate",
            "--model",
            str(tiny_model),
            "--adapter-path",
            str(export_dir),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert theirs.returncode == 0, theirs.stderr
    text = re.search(r"==========\n(.*)\n==========", theirs.stdout, re.S)
    assert text is not None and "Generation: 12 tokens" in theirs.stdout
    ours = run_cli("generate", "--adapter", str(export_dir), *args)
    assert ours.returncode == 0, ours.stderr
    assert ours.stdout.rstrip("\n") == text.group(1)


def test_checkpoint_selection_and_errors(trained_run: Path, tmp_path: Path) -> None:
    from lsp_mlx.export.exporter import export_adapter

    first = export_adapter(trained_run, tmp_path / "it1", checkpoint=1)
    ckpt = trained_run / "checkpoints" / "iter-000001" / "adapters.safetensors"
    assert (first.out_dir / "adapters.safetensors").read_bytes() == ckpt.read_bytes()
    assert first.source.iteration == 1
    # the checkpoint folder itself names the same adapter, as part of its run
    by_folder = export_adapter(trained_run / "checkpoints" / "iter-000001", tmp_path / "by-folder")
    assert by_folder.source.kind == "run" and by_folder.source.iteration == 1
    assert (by_folder.out_dir / "adapters.safetensors").read_bytes() == ckpt.read_bytes()
    assert "- Iterations: 1 of 2 planned" in (first.out_dir / "README.md").read_text()
    # exporting again over an earlier export replaces it
    again = export_adapter(trained_run, tmp_path / "it1", checkpoint=2)
    assert "- Iterations: 2 of 2 planned" in (again.out_dir / "README.md").read_text()
    assert (again.out_dir / "adapters.safetensors").read_bytes() != ckpt.read_bytes()
    with pytest.raises(UserError, match=r"no checkpoint 7 \(have: 1, 2\)"):
        export_adapter(trained_run, tmp_path / "x", checkpoint=7)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="not an lsp-mlx export"):
        export_adapter(trained_run, tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    with pytest.raises(UserError, match="inside the source"):
        export_adapter(trained_run, trained_run / "export")
    with pytest.raises(UserError, match="neither a run folder"):
        export_adapter(tmp_path / "mine", tmp_path / "y")
    with pytest.raises(UserError, match="does not exist"):
        export_adapter(tmp_path / "nope", tmp_path / "y")


def test_cli_flag_errors_are_one_line(trained_run: Path, tmp_path: Path) -> None:
    for args, expected in (
        (["--private"], "--private only applies to --push-to-hub"),
        (["--dry-run"], "--dry-run lists what --push-to-hub would upload"),
        (["--checkpoint", "9"], "no checkpoint 9"),
    ):
        result = run_cli("export", str(trained_run), "--out", str(tmp_path / "out"), *args)
        assert result.returncode == 2
        assert result.stderr.strip().splitlines()[-1].startswith("lsp-mlx: error:")
        assert expected in result.stderr


def test_fuse_dequantizes_a_quantized_base(tiny_model: Path, tmp_path: Path) -> None:
    """A 4-bit base (as on Apple Silicon) fuses into a float model equal to base + adapter:
    re-quantizing W + delta would round the small LoRA update away."""
    from mlx_lm.utils import load, quantize_model, save
    from test_export_support import make_adapter_run

    from lsp_mlx.export.exporter import export_adapter

    model, tokenizer, config = load(str(tiny_model), return_config=True)
    model, config = quantize_model(model, config, group_size=32, bits=4)
    quantized = tmp_path / "q4"
    save(quantized, str(tiny_model), model, tokenizer, config, donate_model=False)
    run = make_adapter_run(tmp_path / "run", quantized, num_layers=1, rank=4, scale=2.0)
    result = export_adapter(run, tmp_path / "export", fuse=True)
    assert result.dequantized
    fused_config = json.loads((result.out_dir / "fused" / "config.json").read_text())
    assert "quantization" not in fused_config and "quantization_config" not in fused_config
    ours = _logits(quantized, run / "adapters")
    np.testing.assert_allclose(_logits(result.out_dir / "fused"), ours, atol=1e-4, rtol=0)
    assert np.abs(ours - _logits(quantized)).max() > 1e-2
    # a quantized base is named in the card: PEFT users load the full-precision one
    assert "quantized copy of the base" in (result.out_dir / "README.md").read_text()


def test_card_snippets_run(export_dir: Path) -> None:
    """The card's Python snippets (mlx-lm, PEFT, fused) run as written, on this export."""
    text = (export_dir / "README.md").read_text()
    snippets = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(snippets) == 3
    for code in snippets:
        if "peft" in code:
            pytest.importorskip("peft")
        namespace: dict[str, object] = {}
        exec(code.replace("path/to/this/folder", str(export_dir)), namespace)  # noqa: S102
        assert "model" in namespace

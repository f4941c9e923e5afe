"""The typed config: presets load, flags override YAML, help lists every key."""

from pathlib import Path

import pytest

from lsp_mlx import config as cfg

PRESETS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.name)
def test_every_preset_is_valid(preset):
    config = cfg.load(preset)
    assert config.game.name
    # a saved config round-trips
    assert cfg.from_dict(config.to_dict()) == config


def test_presets_exist():
    names = {p.name for p in PRESETS}
    assert {"demo.yaml", "lsp.yaml", "lsp-zero.yaml", "tiny.yaml"} <= names


def test_flags_override_yaml(tmp_path):
    base = tmp_path / "c.yaml"
    base.write_text("game:\n  num_queries: 3\ntrain:\n  seed: 1\n")
    config = cfg.load(base, cfg.parse_set(["train.seed=7", "lora.keys=[self_attn.q_proj]"]))
    assert config.game.num_queries == 3 and config.train.seed == 7
    assert config.lora.keys == ["self_attn.q_proj"]
    assert cfg.load(base, {"train.learning_rate": 1}).train.learning_rate == 1.0  # ints accepted as floats


def test_help_lists_every_key():
    text = cfg.help_text()
    for section in ("model", "lora", "game", "reward", "train"):
        assert f"{section}:" in text
    assert "num_queries" in text and "N: Challenger queries" in text

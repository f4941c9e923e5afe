"""The typed config: presets load, flags override YAML, help lists every key."""

from pathlib import Path

import pytest

from lsp_mlx import config as cfg
from lsp_mlx.errors import ConfigError, UserError

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
    assert (
        cfg.load(base, {"train.learning_rate": 1}).train.learning_rate == 1.0
    )  # ints accepted as floats


def test_help_lists_every_key():
    text = cfg.help_text()
    for section in ("model", "lora", "game", "reward", "train"):
        assert f"{section}:" in text
    assert "num_queries" in text and "N: Challenger queries" in text


@pytest.mark.parametrize("spelling", ["1e-4", "1E-4", "1.0e-4", "0.0001", "+1e-4", "10e-5"])
def test_learning_rate_in_any_common_spelling(tmp_path, spelling):
    # PyYAML reads 1e-4 (no dot) as a string; it is a number all the same
    path = tmp_path / "c.yaml"
    path.write_text(f"train:\n  learning_rate: {spelling}\n")
    assert cfg.load(path).train.learning_rate == pytest.approx(1e-4)
    flag = cfg.parse_set([f"train.learning_rate={spelling}"])
    assert cfg.load(None, flag).train.learning_rate == pytest.approx(1e-4)
    assert cfg.load(None, {"train.beta": "5e-3"}).train.beta == pytest.approx(5e-3)


def test_renamed_keys_are_read_with_one_hint(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cfg, "_hinted", set())
    path = tmp_path / "old.yaml"
    path.write_text(
        "game:\n  challenger_max_tokens: 11\n  solver_max_tokens: 12\n  alpha_challenger: 0.3\n"
    )
    config = cfg.load(path)
    cfg.load(path)  # a second read does not repeat the hints
    g = config.game
    assert (g.query_max_tokens, g.answer_max_tokens, g.query_weight) == (11, 12, 0.3)
    hints = capsys.readouterr().err.strip().splitlines()
    assert len(hints) == 3 and all("is now called" in h for h in hints)
    assert "game.challenger_max_tokens is now called game.query_max_tokens" in hints[0]
    # what a run saves uses the new names only
    saved = cfg.to_yaml(config)
    assert "query_max_tokens: 11" in saved and "challenger_max_tokens" not in saved
    flag = cfg.parse_set(["game.solver_max_tokens=5"])
    assert cfg.load(None, flag).game.answer_max_tokens == 5


@pytest.mark.parametrize(
    ("value", "expected"),
    [("none", []), ("None", []), ([], []), ("wandb", ["wandb"]),
     ("tensorboard,wandb", ["tensorboard", "wandb"]), (["trackio"], ["trackio"])],
)  # fmt: skip
def test_report_to_forms(value, expected):
    config = cfg.load(None, {"train.report_to": value})
    assert config.train.report_to == expected
    assert cfg.from_dict(config.to_dict()) == config


def test_new_fields_have_their_defaults():
    config = cfg.Config()
    assert config.train.report_to == [] and config.train.tracker_project == "lsp-mlx"
    assert config.train.run_name is None and config.sqlm.sandbox_isolation == "os"
    assert cfg.load(None, {"sqlm.sandbox_isolation": "python"}).sqlm.sandbox_isolation == "python"


def test_a_config_built_in_code_is_checked_for_finite_numbers():
    config = cfg.Config()
    config.train.learning_rate = float("nan")
    with pytest.raises(ConfigError, match="train.learning_rate must be a finite number"):
        cfg.validate(config)


def test_reward_functions_with_the_reward_signature_are_accepted(tmp_path, monkeypatch):
    module = tmp_path / "my_rewards.py"
    module.write_text(
        "def plain(queries, answers):\n    return [[0.0] * len(a) for a in answers]\n"
        "def extra(queries, answers, scale=2.0):\n    return [[scale] * len(a) for a in answers]\n"
        "def only_one(queries):\n    return []\n"
        "raise_on_import = None\n"
    )
    (tmp_path / "broken_rewards.py").write_text("1 / 0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("plain", "extra"):
        assert cfg.load(None, {"reward.function": f"my_rewards:{name}"}).reward.function
    with pytest.raises(UserError, match="has the signature"):
        cfg.load(None, {"reward.function": "my_rewards:only_one"})
    with pytest.raises(
        UserError, match=r"importing reward module 'broken_rewards' failed \(ZeroDivisionError"
    ):
        cfg.load(None, {"reward.function": "broken_rewards:f"})

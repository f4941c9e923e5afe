"""The examples run: a user reward function named by import path trains the tiny model."""

from pathlib import Path

from conftest import REPO, tiny_train_args

from lsp_mlx.cli import main
from lsp_mlx.events import read_events


def test_user_reward_function_from_examples(tiny_model, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "examples"))
    run_dir = tmp_path / "run"
    code = main(
        [
            "train",
            *tiny_train_args(
                tiny_model, run_dir, 1, "--set", "reward.function=concise_reward:reward"
            ),
        ]
    )
    assert code == 0
    import concise_reward

    for e in read_events(run_dir):
        if e["type"] == "game" and e["answers"]:
            for a in e["answers"]:
                assert a["reward_parts"]["reward"] == concise_reward.score(e["query"], a["text"])


def test_examples_are_documented():
    for path in Path(REPO / "examples").glob("*.py"):
        assert path.read_text().startswith('"""'), path

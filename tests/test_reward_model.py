"""The MLX reward model (base + score head on the last token) against transformers, on a
tiny randomly initialised LlamaForSequenceClassification that the test creates."""

from __future__ import annotations

import shutil

import pytest

pytestmark = pytest.mark.torch


@pytest.fixture(scope="module")
def tiny_reward_model(tmp_path_factory, tiny_model):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    folder = tmp_path_factory.mktemp("rm") / "reward-model"
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=259,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        num_labels=1,
        pad_token_id=0,
        tie_word_embeddings=False,
    )
    model = transformers.LlamaForSequenceClassification(config).eval()
    with torch.no_grad():  # a random head on random weights gives scores near 0: make them spread
        model.score.weight.mul_(50.0)
    model.save_pretrained(folder, safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json"):  # the tiny byte-level tokenizer
        shutil.copy(tiny_model / name, folder / name)
    return folder, model


def test_scores_match_transformers(tiny_reward_model):
    import torch

    from lsp_mlx.backends.mlx_reward_model import MLXRewardModel

    folder, hf_model = tiny_reward_model
    rm = MLXRewardModel(str(folder), micro_batch_size=3)
    queries = ["What is 2+2?", "Name a colour."]
    answers = [
        ["4", "It is four, obviously."],
        ["red", "blue", "a very long answer about green things"],
    ]
    ours = rm(queries, answers)
    assert [len(g) for g in ours] == [2, 3]
    flat = [s for g in ours for s in g]
    expected = []
    for q, group in zip(queries, answers):
        for a in group:
            ids = rm._encode(q, a)
            with torch.no_grad():
                expected.append(hf_model(torch.tensor([ids])).logits[0, 0].item())
    # fp32 on both sides; measured max difference ~1e-6
    assert flat == pytest.approx(expected, abs=1e-4)
    assert max(flat) - min(flat) > 1e-3  # the scores depend on the answer


def test_causal_lm_without_score_head_is_rejected(tiny_model):
    from lsp_mlx.backends.mlx_reward_model import MLXRewardModel
    from lsp_mlx.errors import UserError

    with pytest.raises(UserError, match="no score head"):
        MLXRewardModel(str(tiny_model))

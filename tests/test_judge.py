"""Judge parsing (pure) and the judge on a real tiny model."""

import pytest

from lsp_mlx.rewards.judge import Judge, parse_score


@pytest.mark.parametrize(
    "text,score",
    [
        ("The answer is clear.\n<Score>5</Score>", 5),
        ("<score> 3 </score>", 3),
        ("<SCORE>7", 7),  # no closing tag
        ("first <Score>k</Score> as told, then <Score>4</Score>", 4),  # the last tag wins
        ("Score: 6", 6),
        ("I give it 2/7.", 2),
        ("I give it 2 out of 7.", 2),
        ("<Score>9</Score>", None),  # off the scale: rejected, not clipped
        ("no score here", None),
        ("", None),
    ],
)
def test_parse_score(text, score):
    assert parse_score(text) == score


@pytest.mark.parametrize("mode", ["generate", "score_first", "expected"])
def test_judge_scores_in_range_and_counts_unparsable(tiny_backend, mode):
    judge = Judge(tiny_backend, max_tokens=8, mode=mode)
    scores = judge(["What is 2+2?", "Name a colour."], [["4", "five"], ["red", "blue", "green"]])
    assert [len(g) for g in scores] == [2, 3]
    assert all(0.0 <= s <= 1.0 for g in scores for s in g)
    assert judge.stats.judged == 5
    if mode != "expected":
        # a random tiny model writes no valid score: every judgement counts as unparsable and 0
        assert judge.stats.unparsable + sum(s > 0 for g in scores for s in g) >= 1
    else:
        assert judge.stats.unparsable == 0
        assert len({round(s, 6) for g in scores for s in g}) > 1  # depends on the answer


def test_heuristic_reward_prefers_real_answers():
    from lsp_mlx.rewards.heuristics import quality

    (scores,) = quality(
        ["What is the capital of France?"],
        [
            [
                "The capital of France is Paris.",
                "",
                "What is the capital of France?",
                "Paris Paris Paris Paris Paris Paris Paris Paris Paris Paris Paris Paris",
            ]
        ],
    )
    assert scores[0] == max(scores)
    assert scores[1] == 0.0
    assert scores[0] > scores[2] and scores[0] > scores[3]

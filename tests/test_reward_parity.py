"""The GRPO rewards read answers exactly as hba-score does, and the rewards by name (paper, reference, harpo).

Reward accuracy is compared with the scorer's correctness (the confusion matrix's diagonal of a real
``score`` call) on every case of the answer tests, for every gold label of the case's dataset.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from hba_core import registry
from hba_core.errors import UnknownNameError
from hba_core.rewards import (
    REWARDS,
    accuracy_reward,
    declared_rewards,
    format_reward,
    harpo_terms,
    overlong_penalty,
    reference_terms,
    reward,
    training_reward,
)
from hba_core.scoring import predictions_from_rows, score, truth_from_rows
from test_answers import EXTRACT_CASES

CLS_CASES = [c for c in EXTRACT_CASES if not registry.dataset(c[1]).is_free_text]


@pytest.mark.parametrize(("text", "dataset", "label"), CLS_CASES)
def test_reward_accuracy_equals_scorer_correctness(text, dataset, label):
    labels = registry.dataset(dataset).labels
    rows = [
        {"id": f"s{i}", "dataset": dataset, "problem": "q", "answer": g, "class_label": g} for i, g in enumerate(labels)
    ]
    truth = truth_from_rows(rows)
    preds = predictions_from_rows("m", [{"id": r["id"], "prediction": text} for r in rows], truth)
    matrix = score(truth, [preds])["models"][0]["datasets"][dataset]["confusion"]["matrix"]
    scorer = [float(matrix[i][i]) for i in range(len(labels))]  # sample i has gold labels[i]
    rewarded = accuracy_reward(None, [text] * len(labels), answer=list(labels), dataset=[dataset] * len(labels))
    assert rewarded == scorer
    assert sum(scorer) == (0.0 if label is None else 1.0)  # the case's own expectation, through the scorer


def test_the_two_cases_of_the_issue():
    boxed_latex = r"<think>flat tone</think> \boxed{\text{not sarcasm}}"
    hedged = r"<think>loud \boxed{anger}</think> I cannot tell."
    assert accuracy_reward(
        None, [boxed_latex, hedged], answer=["not sarcasm", "anger"], dataset=["mmsd", "cremad"]
    ) == [
        1.0,
        0.0,
    ]
    assert format_reward(None, [boxed_latex, hedged]) == [1.0, 0.5]  # a box inside the reasoning is no answer


def test_rewards_are_declared_once_and_looked_up_by_name():
    assert list(declared_rewards()) == list(REWARDS) == ["paper", "reference", "harpo"]
    assert all(reward(name) is REWARDS[name] for name in REWARDS)
    with pytest.raises(UnknownNameError, match="Did you mean 'harpo'"):
        reward("harp")


def test_reference_reward_hand_computed():
    texts = [
        r"<think>r</think> \boxed{Anger}",  # acc 1 (lowercased), format 1
        r"<think>r</think> \boxed{ anger }",  # the reference does not strip: acc 0
        r"\boxed{anger}",  # no think: format 0
        "[anger] because",  # no box: the first [...] is the answer
        r"<think>\boxed{anger}</think> I cannot tell.",  # first box counts, even inside <think>; format 0
        "< think >r</ think > \\boxed{anger}",  # spaces around < > / removed first: format 1
    ]
    terms = reference_terms(texts, ["anger"] * len(texts))
    assert [t.accuracy for t in terms] == [1.0, 0.0, 1.0, 1.0, 1.0, 1.0]
    assert [t.format for t in terms] == [1.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    for t in terms:
        assert t.total == pytest.approx(t.accuracy + 0.2 * t.format + 0.5 * t.similarity, abs=1e-12)
        assert 0.0 <= t.similarity <= 1.0
    assert terms[0].similarity == pytest.approx(1.0, abs=1e-5)


def test_harpo_reward_hand_computed():
    cls = r"<think>r</think>\boxed{ anger }"  # harpo strips: acc 1
    long = r"<think>" + "x" * 740 + r"</think>\boxed{anger}"  # 764 characters: past 812 - 128 = 684
    qa = r"<think>r</think>\boxed{They are friends.}"
    terms = harpo_terms([cls, long, qa], ["anger", "anger", "They are friends."], ["cremad", "cremad", "siq2"])
    assert (terms[0].total, terms[0].accuracy, terms[0].overlong) == (pytest.approx(1.0), 1.0, 0.0)
    assert terms[1].overlong == pytest.approx((684 - len(long)) / 128)
    assert terms[1].total == pytest.approx(0.8 + 0.2 + 0.75 * terms[1].overlong)
    assert terms[2].accuracy == 0.0 and terms[2].similarity == pytest.approx(1.0, abs=1e-5)  # (cos + 1) / 2
    assert terms[2].total == pytest.approx(0.8 * terms[2].similarity + 0.2)
    assert [overlong_penalty(n, 812, 128) for n in (684, 748, 812, 900)] == [0.0, -0.5, -1.0, -1.0]


def test_training_reward_by_name():
    samples = [{"answer": "anger", "dataset": "cremad"}]
    text = [r"<think>r</think>\boxed{Anger}"]
    assert training_reward("paper", {"similarity": 0.0})(text, samples)["total"] == [pytest.approx(1.2)]
    assert set(training_reward("harpo")(text, samples)) == {"total", "accuracy", "format", "similarity", "overlong"}
    with pytest.raises(ValueError, match="paper reward only"):
        training_reward("reference", {"similarity": 0.0})


def test_hba_grpo_offers_the_reward_names():
    from hba_tools.grpo import main

    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0 and "--reward " in result.output and "harpo" in result.output


def test_hba_grpo_refuses_an_unknown_reward_before_loading_a_model(tmp_path):
    from hba_tools.grpo import main

    train = tmp_path / "train.jsonl"
    train.write_text('{"dataset": "cremad", "problem": "What emotion?", "answer": "anger"}\n')
    args = ["--init", str(tmp_path / "no-model"), "--train", str(train), "--out", str(tmp_path / "o")]
    result = CliRunner().invoke(main, [*args, "--prompts-per-step", "1", "--mini-batch", "1", "--reward", "harp"])
    assert result.exit_code == 1
    assert "unknown reward 'harp'. Did you mean 'harpo'? Valid: paper, reference, harpo" in result.output

"""GRPO reward terms (App. B.2, Eq. 5) on hand-computed cases."""

from __future__ import annotations

import orjson
import pytest

from hba_core import registry
from hba_core.rewards import WEIGHTS, accuracy_reward, format_reward, grpo_rewards, similarity_reward

CORRECT = r"<think>The voice is loud and tense.</think> The answer is \boxed{anger}"
WRONG = r"<think>Sounds calm.</think> \boxed{neutral}"
NO_THINK = r"It is \boxed{anger}"
NO_BOX = "<think>loud voice</think> anger"
NESTED = r"<think>x</think> \boxed{\text{not sarcasm}}"
UPPER = r"<think>x</think> \boxed{  ANGER }"


def test_accuracy_reward_on_real_samples(fixture_data):
    # gold answers and datasets of real fixture-atlas samples (registry labels), not invented strings
    rows = [orjson.loads(line) for line in fixture_data.atlas.read_bytes().splitlines()]
    anger = next(r for r in rows if r["dataset"] == "cremad" and r["answer"] == "anger")
    not_sarcasm = next(r for r in rows if r["dataset"] == "mmsd" and r["answer"] == "not sarcasm")
    assert anger["answer"] in registry.dataset("cremad").labels
    assert not_sarcasm["answer"] in registry.dataset("mmsd").labels
    cases = [
        (CORRECT, anger, 1.0),
        (WRONG, anger, 0.0),
        (NO_THINK, anger, 1.0),  # accuracy reads the box; the format reward is what asks for <think>
        (UPPER, anger, 1.0),  # case and spaces do not matter
        (NESTED, not_sarcasm, 1.0),  # \text{...} inside the box is LaTeX, not the answer
        (r"<think>x</think> \boxed{sarcasm}", not_sarcasm, 0.0),  # the other label
        (r"<think>x</think> \boxed{not sarcasm}", anger, 0.0),  # a label of another dataset
    ]
    got = accuracy_reward(
        None,
        [text for text, _, _ in cases],
        answer=[row["answer"] for _, row, _ in cases],
        dataset=[row["dataset"] for _, row, _ in cases],
    )
    assert got == [want for _, _, want in cases]


def test_accuracy_uses_the_last_box_and_none_for_missing_gold():
    assert accuracy_reward(None, [r"\boxed{sad} no, \boxed{happy}"], answer=["happy"]) == [1.0]
    assert accuracy_reward(None, [CORRECT], answer=[None]) == [None]


def test_format_reward_hand_computed():
    assert format_reward(None, [CORRECT, NO_THINK, NO_BOX, "plain", r"<think>x</think>\boxed{unclosed"]) == [
        1.0,
        0.5,
        0.5,
        0.0,
        0.5,
    ]


def test_similarity_reward_is_cosine_clamped_and_zero_without_a_box():
    sim = similarity_reward(
        None,
        [CORRECT, UPPER, NO_BOX, r"\boxed{angry}", r"\boxed{the stock market}"],
        answer=["anger", "anger", "anger", "anger", "anger"],
    )
    assert sim[0] == pytest.approx(1.0, abs=1e-5)
    assert sim[1] == pytest.approx(1.0, abs=1e-5)  # the model is uncased
    assert sim[2] == 0.0
    assert 0.8 < sim[3] < 0.95  # "angry" vs "anger": 0.90 with all-MiniLM-L6-v2
    assert 0.0 <= sim[4] < sim[3]
    assert all(0.0 <= s <= 1.0 for s in sim)


def test_total_is_eq5_weighted_sum():
    rewards = grpo_rewards([CORRECT, WRONG, NO_THINK, NO_BOX, "plain"], ["anger"] * 5)
    assert WEIGHTS == {"accuracy": 1.0, "format": 0.2, "similarity": 0.5}
    assert rewards[0].total == pytest.approx(1.0 + 0.2 * 1.0 + 0.5 * 1.0, abs=1e-5)
    wrong = rewards[1]
    assert (wrong.accuracy, wrong.format) == (0.0, 1.0)
    assert wrong.total == pytest.approx(0.2 + 0.5 * wrong.similarity, abs=1e-6)
    assert rewards[2].total == pytest.approx(1.0 + 0.1 + 0.5, abs=1e-5)
    # think only, no box: format 0.5 and no similarity; whether the bare text counts as the answer is the
    # scorer's call (hba_core.answers), and the total adds up either way
    no_box = rewards[3]
    assert (no_box.format, no_box.similarity) == (0.5, 0.0)
    assert no_box.total == pytest.approx(no_box.accuracy + 0.1, abs=1e-6)
    assert rewards[4].total == 0.0


def test_weights_override_and_unknown_weight():
    assert grpo_rewards([CORRECT], ["anger"], weights={"similarity": 0.0})[0].total == pytest.approx(1.2)
    with pytest.raises(ValueError, match="valid: accuracy, format, similarity"):
        grpo_rewards([CORRECT], ["anger"], weights={"lenght": 1.0})


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="2 completions but 1 gold"):
        accuracy_reward(None, [CORRECT, WRONG], answer=["anger"])

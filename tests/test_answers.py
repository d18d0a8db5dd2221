"""Answer extraction: <think> stripping, \\boxed{}, and free text -> dataset label."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hba_core import registry
from hba_core.answers import answer_span, extract_boxed, extract_label, extract_labels, has_think, strip_think

CLS_DATASETS = [d.name for d in registry.get().datasets.values() if not d.is_free_text]


def test_strip_think_and_boxed_keep_their_behaviour():
    assert strip_think("<think>a</think> b") == "b"
    assert strip_think("reasoning</think>answer") == "answer"
    assert strip_think("answer <think>unfinished") == "answer"
    assert extract_boxed(r"\boxed{a} then \boxed{b{c}}") == "b{c}"
    assert extract_boxed(r"\boxed{never closed") is None
    assert has_think("<think>x</think>") and not has_think("<think>x")


# (reply, dataset, label it names or None): also the cases of the reward/scorer parity test (test_reward_parity.py)
EXTRACT_CASES = [
    # explicit markers
    (r"\boxed{sad}", "tess", "sad"),
    (r"<think>it could be anger</think> \boxed{\text{Joy}}", "meld_emotion", "happy"),
    ("<answer> Not Sarcastic </answer>", "mmsd", "not sarcasm"),
    ("Reasoning first.\nAnswer: weakly positive", "mosei_senti", "weakly positive"),
    ("The answer is: angry.", "cremad", "anger"),
    # the first label mentioned; the longest form wins where several start at one position
    ("I think the speaker is not sarcastic at all.", "mmsd", "not sarcasm"),
    ("The tone is sarcastic, not sincere.", "mmsd", "sarcasm"),
    ("The interview shows no depression.", "daicwoz", "no depression"),
    ("Signs of depression are clear.", "daicwoz", "depression"),
    ("The participant is non-anxious.", "mmpsy_anxiety", "no anxiety"),
    ("She seems unhappy.", "cremad", "sad"),
    ("It is a very negative statement", "mosei_senti", "highly negative"),
    ("HUMOROUS!!", "urfunny", "humour"),
    # yes / no for binary detection
    ("Yes.", "ptsd_in_the_wild", "ptsd"),
    ("no", "mmsd", "not sarcasm"),
    ("No, nothing points that way.", "urfunny", "not humour"),
    # names no label, several labels, negates or hedges: unparseable (issue 19.1)
    ("This sounds weakly positive overall, though positive words appear.", "mosei_senti", None),
    ("happiness, then anger", "tess", None),
    (
        "highly negative, negative, weakly negative, neutral, weakly positive, positive, highly positive",
        "mosei_senti",
        None,
    ),
    ("Options: anger, disgust, fear, happy, neutral, sad", "cremad", None),
    ("There is no sign of depression.", "daicwoz", None),
    ("The speaker is not happy at all, rather sad.", "meld_emotion", None),
    ("I cannot tell whether it is negative or positive.", "mosei_senti", None),
    (r"<think>the voice is loud \boxed{anger}</think> I cannot tell.", "cremad", None),
    ("I do not think the speaker is sarcastic.", "mmsd", None),
    ("Maybe sad.", "tess", None),
    ("It could be either humour or not.", "urfunny", None),
    ("Yes, the speaker is not sarcastic.", "mmsd", None),  # its yes/no contradicts the label it names
    (r"\boxed{happy or sad}", "tess", None),
    ("The answer is C", "cremad", None),
    (r"\boxed{C} although the voice sounds happy", "tess", None),  # an explicit answer decides alone
    ("<think>happy</think>I cannot tell.", "tess", None),  # reasoning is not the answer
    ("positive", "chsimsv2", None),  # CH-SIMS v2 has only weakly/highly positive
    ("surprise", "cremad", None),  # not in CREMA-D's label set
    ("", "tess", None),
    (None, "tess", None),
    ("anything at all", "siq2", None),  # free-text datasets have no labels
]


@pytest.mark.parametrize(("text", "dataset", "label"), EXTRACT_CASES)
def test_extract_label(text, dataset, label):
    assert extract_label(text, dataset) == label


def test_answer_span_prefers_boxed_then_answer_tag_then_answer_line():
    assert answer_span(r"<answer>a</answer> \boxed{b}") == "b"
    assert answer_span("Answer: x\n<answer>y</answer>") == "y"
    assert answer_span("first Answer: x\nthen Answer: z") == "z"
    assert answer_span("no marker here") is None


def test_extract_labels_matches_one_by_one():
    texts = ["happy", "Happy!", None, "joy", "??", "happy"]
    assert extract_labels(texts, "tess") == [extract_label(t, "tess") for t in texts]


@given(
    st.sampled_from(CLS_DATASETS),
    st.data(),
    st.sampled_from(
        [
            "{}",
            "{}.",
            "**{}**",
            " {} ",
            "{}!",
            "The answer is {}.",
            r"\boxed{{{}}}",
            "<answer>{}</answer>",
            "Answer: {}",
            "<think>hmm</think>{}",
        ]
    ),
)
def test_every_label_round_trips_in_any_dress(dataset, data, template):
    label = data.draw(st.sampled_from(registry.dataset(dataset).labels))
    cased = data.draw(st.sampled_from([label, label.upper(), label.title()]))
    assert extract_label(template.format(cased), dataset) == label


@given(st.sampled_from(CLS_DATASETS), st.data())
def test_every_surface_form_maps_to_its_label(dataset, data):
    forms = registry.label_surface_forms(dataset)
    form = data.draw(st.sampled_from(sorted(forms)))
    assert extract_label(form, dataset) == forms[form]


@given(st.text(max_size=60))
def test_any_text_gives_a_label_or_none(text):
    for dataset in ("mmsd", "mosei_senti", "meld_emotion"):
        assert extract_label(text, dataset) in (None, *registry.dataset(dataset).labels)

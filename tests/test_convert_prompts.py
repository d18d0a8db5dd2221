"""The shared prompt builder (hba_core.prompts) and the samples hba-convert makes with it."""

from __future__ import annotations

import copy

from hba_core.convert.base import label_instruction, make_sample
from hba_core.prompts import build_problem, split_problem, with_transcript

# The official release's example line (reference repository README).
OFFICIAL_PROBLEM = (
    "<audio>\nDon't forget a jacket.\nThe above is a speech recording along with the transcript from a clinical "
    "context. What emotion is the speaker expressing? Answer with one word from the following: anger, disgust, "
    "fear, happy, neutral, sad"
)


def test_tags_first_then_transcript_then_question():
    assert build_problem(["video", "<audio>"], "Hi.", "Q?") == "<video>\n<audio>\nHi.\nQ?"
    assert build_problem(["audio"], None, "Q?") == "<audio>\nQ?"
    assert build_problem([], "   ", "Q?") == "Q?"


def test_cremad_sample_reproduces_the_official_prompt():
    context = "The above is a speech recording along with the transcript from a clinical context."
    instruction = label_instruction("cremad", context, "What emotion is the speaker expressing?")
    row = make_sample(
        "cremad",
        split="test",
        instruction=instruction,
        question="What emotion is the speaker expressing?",
        answer="sad",
        class_label="sad",
        audio="AudioWAV/1077_DFA_SAD_XX.wav",
        transcript="Don't forget a jacket.",
        source_ids={"file": "1077_DFA_SAD_XX"},
        original_label="SAD",
    )
    assert row["problem"] == OFFICIAL_PROBLEM
    assert row["modality_signature"] == "text_audio"
    assert row["task"] == "emotion_cls"
    assert row["audios"] == ["cremad/AudioWAV/1077_DFA_SAD_XX.wav"]
    assert row["metadata"]["instruction"] == instruction
    assert row["id"].startswith("cremad-")


def test_split_problem_inverts_build_problem():
    assert split_problem(OFFICIAL_PROBLEM) == (["<audio>"], "Don't forget a jacket.", OFFICIAL_PROBLEM.split("\n")[-1])
    assert split_problem("<video>\nQ?") == (["<video>"], None, "Q?")


def test_with_transcript_rerenders_and_records_provenance():
    row = make_sample(
        "mmsd",
        split="train",
        instruction="Is the speaker sarcastic?",
        question="Is it?",
        answer="sarcasm",
        class_label="sarcasm",
        video="u/1.mp4",
        audio="u/1.mp4",
        transcript="Oh great.",
        source_ids={"id": "1"},
    )
    before = copy.deepcopy(row)
    out = with_transcript(row, "Oh, just great.", model="whisper-large-v3", language="en")
    assert row == before  # the input is not changed
    assert out["problem"] == "<video>\n<audio>\nOh, just great.\nIs the speaker sarcastic?"
    assert out["metadata"]["transcript"] == "Oh, just great."
    assert out["metadata"]["original_transcript"] == "Oh great."
    assert out["metadata"]["transcript_source"] == {"model": "whisper-large-v3", "language": "en"}


def test_with_transcript_keeps_prompt_where_template_has_no_transcript():
    row = make_sample(
        "intentqa",
        split="val",
        instruction="Why? Options: (A) x (B) y",
        question="Why?",
        answer="x",
        class_label=None,
        video="videos/1.mp4",
        audio="videos/1.mp4",
        transcript=None,
        transcript_slot=False,
        source_ids={"video_id": "1"},
    )
    out = with_transcript(row, "hello there", model="m", language=None)
    assert out["problem"] == row["problem"]
    assert out["metadata"]["transcript"] == "hello there"


def test_with_transcript_on_an_official_line_without_metadata():
    line = {"problem": OFFICIAL_PROBLEM, "answer": "sad", "dataset": "cremad"}
    out = with_transcript(line, "Do not forget a jacket.", model="m", language="en")
    assert out["problem"].split("\n")[1] == "Do not forget a jacket."
    assert out["problem"].split("\n")[2] == OFFICIAL_PROBLEM.split("\n")[2]
    assert out["metadata"]["original_transcript"] == "Don't forget a jacket."


def test_instruction_mentions_a_transcript_only_when_there_is_one():
    template = "The above is a video and audio recording of a social interaction[[, along with the transcript]]. Why?"
    row = make_sample(
        "siq2",
        split="train",
        instruction=template,
        question="Why?",
        answer="Because.",
        class_label=None,
        video="video/v.mp4",
        audio="audio/wav/v.wav",
        transcript=None,
        source_ids={"video_id": "v"},
    )
    assert row["problem"] == "<video>\n<audio>\nThe above is a video and audio recording of a social interaction. Why?"
    assert row["modality_signature"] == "video_audio"
    out = with_transcript(row, "hello", model="whisper", language="en")
    assert out["problem"] == (
        "<video>\n<audio>\nhello\nThe above is a video and audio recording of a social "
        "interaction, along with the transcript. Why?"
    )
    assert out["metadata"]["instruction"].endswith("along with the transcript. Why?")
    assert out["modality_signature"] == "text_video_audio"
    assert "original_transcript" not in out["metadata"]

"""Every adapter on a small release built in its dataset's real format (tmp dirs; no dataset files copied)."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from hba_core import registry
from hba_core.convert import Reject, build_source
from hba_core.convert.chsimsv2 import sentiment_class as sims_class
from hba_core.convert.mosei import sentiment_class as mosei_class
from hba_core.errors import InputError
from hba_core.fixtures.qa_releases import INTENTQA_HEADER
from hba_core.fixtures.sources import MELD_HEADER, MOSEI_HEADER, write_csv


def run(source: str, raw: Path, check_media: bool = True):
    items = list(build_source(source, raw, check_media=check_media))
    samples = [x for x in items if isinstance(x, dict)]
    rejects = [x for x in items if isinstance(x, Reject)]
    for s in samples:
        ds = registry.dataset(s["dataset"])
        assert ds.source == source
        assert ds.is_free_text or s["class_label"] in ds.labels
        assert s["split"] in registry.SPLITS
        assert s["problem"].endswith(s["metadata"]["instruction"])
        for path in s["videos"] + s["audios"]:
            assert path.startswith(f"{source}/")
    return samples, rejects


def touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")


def meld_release(root: Path) -> Path:
    write_csv(
        root / "train_sent_emo.csv",
        MELD_HEADER,
        [
            [1, "Oh my God!", "Rachel", "joy", "positive", 0, 0, 1, 1, "00:00:01,000", "00:00:02,000"],
            [2, "No way.", "Ross", "anger", "negative", 0, 1, 1, 1, "00:00:02,000", "00:00:03,000"],
            [3, "Hm.", "Joey", "bored", "neutral", 0, 2, 1, 1, "00:00:03,000", "00:00:04,000"],
        ],
    )
    write_csv(
        root / "dev_sent_emo.csv", MELD_HEADER, [[1, "Okay.", "Monica", "neutral", "neutral", 3, 0, 2, 2, "a", "b"]]
    )
    write_csv(
        root / "test_sent_emo.csv",
        MELD_HEADER,
        [
            [1, "Wow.", "Chandler", "surprise", "positive", 5, 1, 3, 3, "a", "b"],
            [2, "x", "Phoebe", "fear", "negative", "", 0, 1, 1, "a", "b"],
        ],
    )
    for rel in (
        "train_splits/dia0_utt0.mp4",
        "train_splits/dia0_utt2.mp4",
        "dev_splits_complete/dia3_utt0.mp4",
        "output_repeated_splits_test/dia5_utt1.mp4",
    ):
        touch(root / rel)  # dia0_utt1 is missing, as two clips are in the real MELD.Raw
    return root


def test_meld(tmp_path):
    samples, rejects = run("meld", meld_release(tmp_path))
    by = {
        (s["dataset"], s["metadata"]["source_ids"]["dialogue_id"], s["metadata"]["source_ids"]["utterance_id"]): s
        for s in samples
    }
    joy = by[("meld_emotion", 0, 0)]
    assert joy["class_label"] == "happy" and joy["metadata"]["original_label"] == "joy"  # joy -> happy
    assert joy["problem"].startswith("<video>\n<audio>\nOh my God!\n")
    assert joy["videos"] == ["meld/train_splits/dia0_utt0.mp4"] == joy["audios"]
    assert by[("meld_senti", 3, 0)]["split"] == "val"
    reasons = sorted(r.reason for r in rejects)
    assert reasons == ["media missing: train_splits/dia0_utt1.mp4"] * 2 + ["unknown label: 'bored' (meld_emotion)"] + [
        next(r for r in reasons if r.startswith("unreadable row"))
    ]
    assert any(":3" in r.where for r in rejects if r.reason.startswith("unreadable"))  # test csv line 3
    assert len(samples) == 2 + 1 + 2 + 2  # dia0_utt0 (2), dia0_utt2 senti (1), dev (2), test (2)


def test_meld_no_media_keeps_every_row_and_strict_fails(tmp_path):
    raw = meld_release(tmp_path)
    samples, rejects = run("meld", raw, check_media=False)
    assert len(samples) == 9 and len(rejects) == 2
    with pytest.raises(InputError, match="dia0_utt1.mp4"):
        list(build_source("meld", raw, strict=True))


def test_missing_annotation_file_is_one_clear_error(tmp_path):
    with pytest.raises(InputError, match="train_sent_emo.csv: annotation file not found"):
        list(build_source("meld", tmp_path))


def test_cremad(tmp_path):
    names = [
        f"{actor}_{s}_{e}_XX" for actor in range(1001, 1021) for s in ("DFA", "IEO") for e in ("SAD", "HAP", "NEU")
    ]
    write_csv(
        tmp_path / "SentenceFilenames.csv",
        ["Stimulus_Number", "Filename"],
        [[i, n] for i, n in enumerate([*names, "1001_XXX_SAD_XX"], start=1)],
    )
    for n in names:
        touch(tmp_path / "AudioWAV" / f"{n}.wav")
    samples, rejects = run("cremad", tmp_path)
    assert len(samples) == len(names)
    assert [r.reason for r in rejects] == ["unreadable row (file name '1001_XXX_SAD_XX')"]
    one = next(s for s in samples if s["metadata"]["source_ids"]["file"] == "1001_DFA_HAP_XX")
    assert one["class_label"] == "happy" and one["problem"].split("\n")[1] == "Don't forget a jacket."
    actors_per_split: dict[str, set] = {}
    for s in samples:
        actors_per_split.setdefault(s["split"], set()).add(s["metadata"]["source_ids"]["actor"])
    assert not (actors_per_split["train"] & actors_per_split.get("val", set()))
    assert not (actors_per_split["train"] & actors_per_split.get("test", set()))


def test_tess(tmp_path):
    for rel in (
        "OAF_Fear/OAF_back_fear.wav",
        "OAF_Pleasant_surprise/OAF_bath_ps.wav",
        "YAF_happy/YAF_bean_happy.wav",
        "YAF_pleasant_surprised/YAF_back_ps.wav",
        "OAF_angry/OAF_base_angry.wav",
        "OAF_odd/OAF_x_bored.wav",
    ):
        touch(tmp_path / rel)
    samples, rejects = run("tess", tmp_path)
    labels = {s["metadata"]["source_ids"]["file"]: s["class_label"] for s in samples}
    assert labels == {
        "OAF_Fear/OAF_back_fear.wav": "fear",
        "OAF_Pleasant_surprise/OAF_bath_ps.wav": "surprise",
        "YAF_happy/YAF_bean_happy.wav": "happy",
        "YAF_pleasant_surprised/YAF_back_ps.wav": "surprise",
        "OAF_angry/OAF_base_angry.wav": "anger",
    }
    assert [r.where for r in rejects] == ["OAF_odd/OAF_x_bored.wav"]
    back = next(s for s in samples if s["metadata"]["source_ids"]["file"] == "OAF_Fear/OAF_back_fear.wav")
    assert back["problem"].split("\n")[1] == "Say the word back."


def test_mustard(tmp_path):
    data = {
        str(i): {
            "utterance": f"line {i}",
            "speaker": "SHELDON",
            "context": ["c"],
            "context_speakers": ["LEONARD"],
            "show": "BBT",
            "sarcasm": i % 2 == 0,
        }
        for i in range(20)
    }
    data["bad"] = {"utterance": "x", "sarcasm": "maybe"}
    (tmp_path / "sarcasm_data.json").write_text(json.dumps(data))
    for i in range(20):
        touch(tmp_path / "utterances_final" / f"{i}.mp4")
    samples, rejects = run("mustard", tmp_path)
    assert len(samples) == 20 and len(rejects) == 1 and rejects[0].where.endswith(":bad")
    assert {s["class_label"] for s in samples} == {"sarcasm", "not sarcasm"}
    assert [sum(s["split"] == k for s in samples) for k in registry.SPLITS] == [14, 3, 3]
    assert samples[0]["metadata"]["context"] == ["c"]


def test_daicwoz(tmp_path):
    header = ["Participant_ID", "PHQ8_Binary", "PHQ8_Score", "Gender"]
    write_csv(tmp_path / "train_split_Depression_AVEC2017.csv", header, [[302, 0, 4, 1], [303, 1, 12, 0]])
    write_csv(tmp_path / "dev_split_Depression_AVEC2017.csv", header, [[304, 0, 2, 1]])
    write_csv(
        tmp_path / "full_test_split.csv",
        ["Participant_ID", "PHQ_Binary", "PHQ_Score", "Gender"],
        [[300, 1, 15, 1], [301, "x", 3, 1]],
    )
    for pid in (300, 302, 303, 304):
        touch(tmp_path / f"{pid}_P" / f"{pid}_AUDIO.wav")
    write_csv(
        tmp_path / "303_P" / "303_TRANSCRIPT.csv",
        ["start_time", "stop_time", "speaker", "value"],
        [[0, 1, "Ellie", "how are you"], [1, 2, "Participant", "not great"], [2, 3, "Participant", "tired"]],
        delimiter="\t",
    )
    samples, rejects = run("daicwoz", tmp_path)
    got = {s["metadata"]["source_ids"]["participant_id"]: (s["split"], s["class_label"]) for s in samples}
    assert got == {
        302: ("train", "no depression"),
        303: ("train", "depression"),
        304: ("val", "no depression"),
        300: ("test", "depression"),
    }
    assert len(rejects) == 1 and rejects[0].where.endswith("full_test_split.csv:3")
    s303 = next(s for s in samples if s["metadata"]["source_ids"]["participant_id"] == 303)
    assert s303["problem"].split("\n")[1] == "not great tired"
    assert s303["metadata"]["original_label"] == {"phq8_binary": 1, "phq8_score": "12"}


def test_mosei_folds_transcripts_and_rejects(tmp_path):
    write_csv(
        tmp_path / "CMU_MOSEI_Labels.csv",
        MOSEI_HEADER,
        [
            [0, "vidA", 0, 0.0, 1.0, 1, 1, 0, 3, 0],
            [1, "vidA", 1, 1.0, 2.0, 0, -1, 2, -2, 0],
            [2, "vidB", 0, 0.0, 1.0, 1, 0, 4, 0, 2],
            [3, "vidC", 0, 0.0, 1.0, 1, 0, 1, 0, 3],
            [4, "vidB", 1, 0.0, 1.0, 1, 0, 9, 0, 2],
        ],
    )
    (tmp_path / "cmu_mosei_std_folds.py").write_text(
        "standard_train_fold=['vidA']\nstandard_valid_fold=[]\nstandard_test_fold=['vidB']\n"
    )
    transcript = tmp_path / "Transcript" / "Segmented" / "Combined" / "vidA.txt"
    transcript.parent.mkdir(parents=True)
    transcript.write_text("vidA___0___0.0___1.0___I loved it\nvidA___1___1.0___2.0___then it broke\n")
    samples, rejects = run("mosei", tmp_path, check_media=False)
    senti = {
        (s["metadata"]["source_ids"]["video_id"], s["metadata"]["source_ids"]["segment"]): s
        for s in samples
        if s["dataset"] == "mosei_senti"
    }
    assert senti[("vidA", "0")]["class_label"] == "highly positive"
    assert senti[("vidA", "1")]["class_label"] == "negative"
    assert senti[("vidA", "0")]["problem"].split("\n")[2] == "I loved it"
    assert senti[("vidB", "0")]["split"] == "test"
    emo = {
        s["metadata"]["source_ids"]["segment"] + s["metadata"]["source_ids"]["video_id"]: s["class_label"]
        for s in samples
        if s["dataset"] == "mosei_emotion"
    }
    assert emo == {"0vidA": "happy", "1vidA": "anger", "0vidB": "disgust"}
    assert sorted(r.reason.split(" (")[0] for r in rejects) == [
        "not in the standard folds: video in no official split",
        "unreadable row",
    ]


def test_mosei_raw_scores_and_dominant_emotion(tmp_path):
    header = ["file", "index", "sentiment", "happy", "sad", "anger", "surprise", "disgust", "fear", "split"]
    write_csv(
        tmp_path / "CMU_MOSEI_Labels.csv",
        header,
        [
            ["v", 0, 2.5, 0, 0.3, 1.0, 0, 0, 0, 0],
            ["v", 1, -0.4, 0, 0, 0, 0, 0, 0, 0],
            ["v", 2, 0.6, 1, 1, 0, 0, 0, 0, 1],
        ],
    )
    samples, rejects = run("mosei", tmp_path, check_media=False)
    assert not rejects
    assert [s["class_label"] for s in samples if s["dataset"] == "mosei_senti"] == [
        "highly positive",
        "neutral",
        "weakly positive",
    ]
    assert [s["class_label"] for s in samples if s["dataset"] == "mosei_emotion"] == ["anger"]  # none, tie: no sample


def test_mosei_sentiment_rounding_is_half_away_from_zero():
    assert [mosei_class(v) for v in (-3.0, -2.5, -1.49, -0.5, 0.0, 0.49, 1.5, 2.5, 9.0)] == [
        "highly negative",
        "highly negative",
        "weakly negative",
        "weakly negative",
        "neutral",
        "neutral",
        "positive",
        "highly positive",
        "highly positive",
    ]


def test_chsimsv2(tmp_path):
    header = ["video_id", "clip_id", "text", "label", "label_T", "label_A", "label_V", "annotation", "mode"]
    write_csv(
        tmp_path / "meta.csv",
        header,
        [
            ["aqgy3_0001", "1", "我很开心", 0.8, 1, 1, 0.6, "Positive", "train"],
            ["aqgy3_0001", "2", "还行", 0.0, 0, 0, 0, "Neutral", "valid"],
            ["v2", "3", "太糟了", -0.6, -1, -1, -1, "Negative", "test"],
            ["v2", "4", "x", "n/a", 0, 0, 0, "Neutral", "test"],
        ],
    )
    samples, rejects = run("chsimsv2", tmp_path, check_media=False)
    assert [(s["split"], s["class_label"]) for s in samples] == [
        ("train", "highly positive"),
        ("val", "neutral"),
        ("test", "weakly negative"),
    ]
    assert samples[0]["videos"] == ["chsimsv2/Raw/aqgy3_0001/0001.mp4"]
    assert samples[0]["problem"].split("\n")[2] == "我很开心"
    assert len(rejects) == 1
    assert [sims_class(v) for v in (-0.7, -0.69, -0.1, -0.09, 0.09, 0.1, 0.69, 0.7)] == [
        "highly negative",
        "weakly negative",
        "weakly negative",
        "neutral",
        "neutral",
        "weakly positive",
        "weakly positive",
        "highly positive",
    ]


def test_siq2(tmp_path):
    def qa(qid, vid, idx):
        return {
            "qid": qid,
            "q": "Why does he laugh?",
            "vid_name": vid,
            "ts": "0-60",
            "a0": "A",
            "a1": "B",
            "a2": "C",
            "a3": "D",
            "answer_idx": idx,
            "ans_corr": "ABCD"[idx],
        }

    (tmp_path / "qa").mkdir()
    (tmp_path / "qa" / "qa_train.json").write_text("\n".join(json.dumps(qa(f"q{i}", "v1", i % 4)) for i in range(3)))
    (tmp_path / "qa" / "qa_val.json").write_text(json.dumps(qa("q9", "v2", 2)) + "\n{not json\n")
    (tmp_path / "qa" / "qa_test.json").write_text(json.dumps({"qid": "t", "q": "?", "vid_name": "v3"}))
    for rel in ("video/v1.mp4", "audio/wav/v1.wav", "video/v2.mp4"):
        touch(tmp_path / rel)  # v2's audio is gone
    (tmp_path / "transcript").mkdir()
    (tmp_path / "transcript" / "v1.vtt").write_text(
        "WEBVTT\nKind: captions\n\n00:00:00.000 --> 00:00:01.000\nhello <c>there</c>\n\n"
        "00:00:01.000 --> 00:00:02.000\nhello there\nfriend\n"
    )
    samples, rejects = run("siq2", tmp_path)
    assert [s["split"] for s in samples] == ["train"] * 3
    assert samples[1]["answer"] == "B" and samples[1]["class_label"] is None
    assert samples[0]["problem"].split("\n")[2] == "hello there friend"
    assert "(A) A (B) B (C) C (D) D" in samples[0]["problem"]
    assert sorted(r.reason.split(" (")[0] for r in rejects) == ["media missing: audio/wav/v2.wav", "unreadable row"]
    samples, _ = run("siq2", tmp_path, check_media=False)
    assert [s["split"] for s in samples][-1] == "test"  # the validation set is the test split


def test_intentqa(tmp_path):
    header = INTENTQA_HEADER
    row = [
        "111",
        10,
        640,
        360,
        "why did the man wave",
        2,
        1,
        "CW",
        "run",
        "sit",
        "greet a friend",
        "eat",
        "cry",
        "wave",
        "wave",
        1,
    ]
    write_csv(tmp_path / "val.csv", header, [row, ["222", 1, 1, 1, "what", 7, 2, "CH", *"abcde", "x", "x", 1]])
    write_csv(tmp_path / "test.csv", header, [[*row[:6], 3, *row[7:]]])
    touch(tmp_path / "videos" / "111.mp4")
    samples, rejects = run("intentqa", tmp_path)
    assert [(s["split"], s["answer"]) for s in samples] == [("val", "greet a friend"), ("test", "greet a friend")]
    assert samples[0]["metadata"]["question"] == "why did the man wave?"
    assert samples[0]["problem"].startswith("<video>\n<audio>\nThe above")
    assert [r.reason.split(" (")[0] for r in rejects] == ["annotation file not found: train.csv", "unreadable row"]


def test_mmpsy(tmp_path):
    users = [
        {
            "user_id": f"user_{i}",
            "phq-label": {"score": 6 + i, "level": "x"},
            "gad-label": {"score": 12 - i, "level": "y"},
            "audios": {"wav_1.wav": "嗯，还好。", "wav_2.wav": "学习。"},
        }
        for i in range(6)
    ]
    users.append({"user_id": "user_bad", "phq-label": {"score": "?"}, "gad-label": {"score": 3}, "audios": {}})
    (tmp_path / "wav_select.json").write_text(json.dumps(users, ensure_ascii=False))
    samples, rejects = run("mmpsy", tmp_path)

    def labels(name):
        return {s["metadata"]["source_ids"]["user_id"]: s["class_label"] for s in samples if s["dataset"] == name}

    dep, anx = labels("mmpsy_depression"), labels("mmpsy_anxiety")
    assert dep["user_3"] == "no depression" and dep["user_4"] == "depression"  # PHQ-9 9 vs 10
    assert anx["user_2"] == "anxiety" and anx["user_3"] == "no anxiety"  # GAD-7 10 vs 9
    assert samples[0]["problem"].split("\n")[0] == "嗯，还好。 学习。" and samples[0]["modality_signature"] == "text"
    split_of = {}
    for s in samples:
        assert split_of.setdefault(s["metadata"]["source_ids"]["user_id"], s["split"]) == s["split"]
    assert len(rejects) == 1 and "phq-label" in rejects[0].reason


def test_urfunny_pickles(tmp_path):
    folds = {"train": [1, 2, np.int64(3)], "dev": [4], "test": [5, 6]}
    for name, obj in (
        ("data_folds.pkl", folds),
        ("humor_label_sdk.pkl", {1: 1.0, 2: 0.0, 3: 1.0, 4: 0.0, 5: 1.0}),
        ("language_sdk.pkl", {1: {"punchline_sentence": "and that is why", "context_sentences": ["a"]}}),
    ):
        with open(tmp_path / name, "wb") as fh:
            pickle.dump(obj, fh, protocol=2)
    samples, rejects = run("urfunny", tmp_path, check_media=False)
    assert [(s["split"], s["class_label"]) for s in samples] == [
        ("train", "humour"),
        ("train", "not humour"),
        ("train", "humour"),
        ("val", "not humour"),
        ("test", "humour"),
    ]
    assert samples[0]["problem"].split("\n")[2] == "and that is why"
    assert len(rejects) == 1 and "unknown label" in rejects[0].reason


def test_urfunny_refuses_code_in_pickles(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    with open(tmp_path / "data_folds.pkl", "wb") as fh:
        pickle.dump(Evil(), fh)
    (tmp_path / "humor_label_sdk.pkl").write_bytes(pickle.dumps({}))
    with pytest.raises(InputError, match="refusing to load"):
        list(build_source("urfunny", tmp_path, check_media=False))


def test_mimeqa(tmp_path):
    rows = [[f"videos/m{i // 3}.mp4", "What is the mime doing?", f"Pulling a rope {i}", "grounding"] for i in range(30)]
    rows.append(["videos/m0.mp4", "", "x", "y"])
    write_csv(tmp_path / "metadata.csv", ["file_name", "question", "reference_answer", "question_type"], rows)
    samples, rejects = run("mimeqa", tmp_path, check_media=False)
    assert len(samples) == 30 and len(rejects) == 1
    assert {s["split"] for s in samples} <= {"train", "test"}
    video_split = {}
    for s in samples:
        assert video_split.setdefault(s["videos"][0], s["split"]) == s["split"]
    assert samples[0]["answer"] == "Pulling a rope 0" and samples[0]["class_label"] is None


def test_ptsd_folders(tmp_path):
    for i in range(10):
        touch(tmp_path / "PTSD" / f"p{i}.mp4")
        touch(tmp_path / "NO PTSD" / f"n{i}.mp4")
    touch(tmp_path / "No_PTSD" / "extra.mp4")
    touch(tmp_path / "misc" / "unknown.mp4")
    samples, rejects = run("ptsd", tmp_path)
    labels = {s["metadata"]["source_ids"]["file"]: s["class_label"] for s in samples}
    assert labels["PTSD/p0.mp4"] == "ptsd" and labels["NO PTSD/n0.mp4"] == "no ptsd"
    assert labels["No_PTSD/extra.mp4"] == "no ptsd"
    assert [r.where for r in rejects] == ["misc/unknown.mp4"]
    assert [sum(s["split"] == k for s in samples) for k in registry.SPLITS] == [17, 2, 2]


def test_every_registry_source_has_an_adapter():
    from hba_core.convert import adapter

    for name in registry.get().sources:
        assert callable(adapter(name).build)


def test_empty_folders_are_reported_not_silent(tmp_path):
    assert [r.reason.split(":")[0] for r in run("tess", tmp_path)[1]] == ["annotation file not found"]
    assert [r.reason.split(":")[0] for r in run("ptsd", tmp_path)[1]] == ["media missing"]


def test_same_content_different_records_get_different_ids_and_repeats_are_rejected(tmp_path):
    same = {"phq-label": {"score": 3}, "gad-label": {"score": 3}, "audios": {"wav_1.wav": "还好。"}}
    users = [{"user_id": "a", **same}, {"user_id": "b", **same}, {"user_id": "a", **same}]
    (tmp_path / "wav_select.json").write_text(json.dumps(users, ensure_ascii=False))
    samples, rejects = run("mmpsy", tmp_path)
    ids = [s["id"] for s in samples]
    assert len(samples) == 4 and len(set(ids)) == 4  # users a and b answered alike: still two records each
    repeated = "duplicate record: same source identifiers and content as an earlier row"
    assert [r.reason for r in rejects] == [repeated] * 2

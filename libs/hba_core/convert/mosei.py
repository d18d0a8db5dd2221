"""CMU-MOSEI (Zadeh et al., 2018): YouTube opinion segments -> mosei_senti (SEN) and mosei_emotion (EMO).

Release layout read here: ``CMU_MOSEI_Labels.csv`` (columns file, index, start, end, label2a,
label2b, label6, label7, split - the labels table s3prl derives from CMU_MOSEI_Labels.csd; optional
raw columns ``sentiment`` and the six intensities ``happy, sad, anger, surprise, disgust, fear`` are
used when present), ``cmu_mosei_std_folds.py`` (the SDK's standard folds, read as literals, never
imported), segment clips ``Videos/Segmented/Combined/<file>_<index>.mp4`` and transcripts
``Transcript/Segmented/Combined/<file>.txt`` (lines ``file___index___start___end___text``).

Rules (the MOSEI paper): sentiment -3..3 -> 7 classes by rounding to the nearest integer, clipped
(``label7``): -3 highly negative ... 0 neutral ... 3 highly positive. Emotion: the dominant emotion,
the single highest of the six intensities when it is above 0 (segments with no emotion or a tie are
not in mosei_emotion); from the s3prl table without intensities, ``label6`` (its argmax index over
happy, sad, anger, surprise, disgust, fear) is taken as is - that table cannot tell "no emotion" from
"happy", so mosei_emotion is larger than the paper's 8,598-segment subset. Splits: the standard folds
by video (the table's ``split`` column when the folds file is absent); segments of videos in no fold
are rejected. Counts: 16327/1871/4662 vs the paper's 16326/1871/4659.
"""

from __future__ import annotations

import ast
import csv
from collections.abc import Iterator
from pathlib import Path

from hba_core import registry
from hba_core.convert.base import Reject, label_instruction, make_sample, require

EMOTIONS = ("happy", "sad", "anger", "surprise", "disgust", "fear")  # s3prl label6 order
FOLD_NAMES = {"standard_train_fold": "train", "standard_valid_fold": "val", "standard_test_fold": "test"}
SPLIT_CODES = {"0": "train", "1": "val", "2": "test"}
CONTEXT = "The above is a video and audio recording of a person giving an opinion[[, along with the transcript]]."
QUESTIONS = {
    "mosei_senti": "What is the sentiment intensity of the speaker in this recording?",
    "mosei_emotion": "What emotion is the speaker expressing most strongly in this recording?",
}


def read_folds(path: Path) -> dict[str, str]:
    """Video id -> split from the SDK's ``cmu_mosei_std_folds.py`` (list literals, parsed with ast)."""
    folds: dict[str, str] = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) and node.targets[0].id in FOLD_NAMES:
            for vid in ast.literal_eval(node.value):
                folds[str(vid)] = FOLD_NAMES[node.targets[0].id]
    return folds


def sentiment_class(score: float) -> str:
    """MOSEI's 7-class sentiment: round to the nearest integer in [-3, 3].

    >>> sentiment_class(-2.6), sentiment_class(0.4), sentiment_class(2.5)
    ('highly negative', 'neutral', 'highly positive')
    """
    labels = registry.domain("sentiment_intensity").labels
    clipped = max(-3.0, min(3.0, score))
    nearest = int(abs(clipped) + 0.5) * (1 if clipped >= 0 else -1)  # half away from zero, not banker's rounding
    return labels[nearest + 3]


def dominant_emotion(intensities: dict[str, float]) -> str | None:
    """The single highest emotion intensity above 0, or None (no emotion, or a tie)."""
    top = max(intensities.values())
    winners = [e for e, v in intensities.items() if v == top]
    return winners[0] if top > 0 and len(winners) == 1 else None


def _transcripts(raw_dir: Path, vid: str, cache: dict[str, dict[str, str]]) -> dict[str, str]:
    if vid not in cache:  # each transcript file is read once, whatever the row order
        path = raw_dir / "Transcript" / "Segmented" / "Combined" / f"{vid}.txt"
        segments: dict[str, str] = {}
        if path.is_file():
            for text_line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                parts = text_line.split("___", 4)
                if len(parts) == 5:
                    segments[parts[1]] = parts[4].strip()
        cache[vid] = segments
    return cache[vid]


def build(raw_dir: Path, *, check_media: bool = True) -> Iterator[dict | Reject]:
    path = require(raw_dir / "CMU_MOSEI_Labels.csv")
    folds_path = raw_dir / "cmu_mosei_std_folds.py"
    folds = read_folds(folds_path) if folds_path.is_file() else None
    cache: dict[str, dict[str, str]] = {}
    with open(path, encoding="utf-8", newline="") as fh:
        for line, row in enumerate(csv.DictReader(fh), start=2):
            where = f"{path}:{line}"
            vid, index = row.get("file", ""), row.get("index", "")
            split = folds.get(vid) if folds is not None else SPLIT_CODES.get(row.get("split", ""))
            ids = {"video_id": vid, "segment": index, "start": row.get("start"), "end": row.get("end")}
            if split is None:
                yield Reject("mosei", where, "not in the standard folds: video in no official split", ids)
                continue
            try:
                score = float(row["sentiment"]) if row.get("sentiment") else float(row["label7"])
                if all(row.get(e) for e in EMOTIONS):
                    emotion = dominant_emotion({e: float(row[e]) for e in EMOTIONS})
                    emotion_original: object = {e: float(row[e]) for e in EMOTIONS}
                else:
                    emotion = EMOTIONS[int(row["label6"])]
                    emotion_original = int(row["label6"])
            except (KeyError, TypeError, ValueError, IndexError) as exc:
                yield Reject("mosei", where, f"unreadable row ({exc})", ids)
                continue
            clip = f"Videos/Segmented/Combined/{vid}_{index}.mp4"
            ids["file"] = clip
            transcript = _transcripts(raw_dir, vid, cache).get(index)
            labels = [("mosei_senti", sentiment_class(score), score)]  # one segment: a sentiment sample, and
            if emotion is not None:  # an emotion sample when the row has the six emotion intensities
                labels.append(("mosei_emotion", emotion, emotion_original))
            for dataset, label, original in labels:
                yield make_sample(
                    dataset,
                    split=split,
                    question=QUESTIONS[dataset],
                    instruction=label_instruction(dataset, CONTEXT, QUESTIONS[dataset]),
                    answer=label,
                    class_label=label,
                    video=clip,
                    audio=clip,
                    transcript=transcript,
                    source_ids=ids,
                    original_label=original,
                )

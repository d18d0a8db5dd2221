"""DAIC-WOZ (Gratch et al., 2014; AVEC 2017): 189 clinical interviews -> daicwoz (DEP).

Release layout: ``train_split_Depression_AVEC2017.csv``, ``dev_split_Depression_AVEC2017.csv``
(Participant_ID, PHQ8_Binary, PHQ8_Score, ...), ``full_test_split.csv`` (Participant_ID, PHQ_Binary,
PHQ_Score, Gender) and one folder per session: ``<id>_P/<id>_AUDIO.wav``, ``<id>_P/<id>_TRANSCRIPT.csv``
(tab-separated start_time, stop_time, speaker, value).

Rules: the label is the release's PHQ-8 binary (PHQ-8 >= 10 -> depression). Official AVEC 2017 splits
(dev -> val): 107/35/47, the paper's counts. The transcript is the participant's turns joined in order,
when the session's transcript file is present.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from hba_core.convert.base import Reject, label_instruction, make_sample, require

SPLITS = (
    ("train", "train_split_Depression_AVEC2017.csv", "PHQ8_Binary", "PHQ8_Score"),
    ("val", "dev_split_Depression_AVEC2017.csv", "PHQ8_Binary", "PHQ8_Score"),
    ("test", "full_test_split.csv", "PHQ_Binary", "PHQ_Score"),
)
CONTEXT = "The above is an audio recording of a clinical interview[[, along with the participant's transcript]]."
QUESTION = "Does the participant show signs of depression?"


def participant_transcript(path: Path) -> str | None:
    """The participant's turns of a DAIC-WOZ ``_TRANSCRIPT.csv`` joined by spaces; None if the file is absent."""
    if not path.is_file():
        return None
    with open(path, encoding="utf-8", newline="") as fh:
        turns = [
            row.get("value", "")
            for row in csv.DictReader(fh, delimiter="\t")
            if (row.get("speaker") or "").strip().lower() == "participant"
        ]
    return " ".join(t.strip() for t in turns if t and t.strip()) or None


def build(raw_dir: Path, *, check_media: bool = True) -> Iterator[dict | Reject]:
    for split, name, binary_col, score_col in SPLITS:
        path = require(raw_dir / name)
        with open(path, encoding="utf-8-sig", newline="") as fh:
            for line, row in enumerate(csv.DictReader(fh), start=2):
                try:
                    pid, binary = int(row["Participant_ID"]), int(row[binary_col])
                except (KeyError, TypeError, ValueError) as exc:
                    yield Reject("daicwoz", f"{path}:{line}", f"unreadable row ({exc})", dict(row))
                    continue
                if binary not in (0, 1):
                    yield Reject("daicwoz", f"{path}:{line}", f"unknown label: {binary!r}", dict(row))
                    continue
                label = "depression" if binary else "no depression"
                audio = f"{pid}_P/{pid}_AUDIO.wav"
                transcript = participant_transcript(raw_dir / f"{pid}_P" / f"{pid}_TRANSCRIPT.csv")
                yield make_sample(
                    "daicwoz",
                    split=split,
                    instruction=label_instruction("daicwoz", CONTEXT, QUESTION),
                    question=QUESTION,
                    answer=label,
                    class_label=label,
                    audio=audio,
                    transcript=transcript,
                    source_ids={"participant_id": pid, "file": audio},
                    original_label={"phq8_binary": binary, "phq8_score": row.get(score_col)},
                )

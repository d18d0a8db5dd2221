"""CH-SIMS v2 (Liu et al., 2022): Chinese multimodal sentiment clips -> chsimsv2 (SEN).

Release layout (thuiar/ch-sims-v2, supervised part; the MMSA toolkit's layout): ``meta.csv`` (or
``label.csv``) with columns video_id, clip_id, text, label (-1..1), label_T, label_A, label_V,
annotation, mode (train/valid/test), and the clips ``Raw/<video_id>/<clip_id>.mp4`` (clip ids padded
to 4 digits when numeric). The label file is only on Google Drive/Baidu: this adapter follows the
documented columns, and tests build files in that format.

Rules (the CH-SIMS papers' five classes, with the MMSA toolkit's boundaries): label <= -0.7 highly
negative; -0.7 < label <= -0.1 weakly negative; -0.1 < label < 0.1 neutral; 0.1 <= label < 0.7 weakly
positive; label >= 0.7 highly positive. Official splits (valid -> val): 2722/647/1034 in the paper.
The Chinese transcript (``text``) is the transcript.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from hba_core.convert.base import Reject, label_instruction, make_sample
from hba_core.errors import InputError

MODES = {"train": "train", "valid": "val", "val": "val", "test": "test"}
CONTEXT = "The above is a video and audio recording of a speaker[[, along with the transcript]]."
QUESTION = "What is the sentiment of the speaker in this recording?"


def sentiment_class(score: float) -> str:
    """CH-SIMS five-class sentiment of a -1..1 score.

    >>> [sentiment_class(s) for s in (-1.0, -0.4, 0.0, 0.2, 0.8)]
    ['highly negative', 'weakly negative', 'neutral', 'weakly positive', 'highly positive']
    """
    if score <= -0.7:
        return "highly negative"
    if score <= -0.1:
        return "weakly negative"
    if score < 0.1:
        return "neutral"
    if score < 0.7:
        return "weakly positive"
    return "highly positive"


def build(raw_dir: Path, *, check_media: bool = True) -> Iterator[dict | Reject]:
    path = next((raw_dir / n for n in ("meta.csv", "label.csv") if (raw_dir / n).is_file()), None)
    if path is None:
        raise InputError(
            str(raw_dir / "meta.csv"),
            "annotation file not found (meta.csv or label.csv); point --raw at the CH-SIMS v2 release folder",
        )
    with open(path, encoding="utf-8-sig", newline="") as fh:
        for line, row in enumerate(csv.DictReader(fh), start=2):
            where = f"{path}:{line}"
            try:
                vid, clip, score = row["video_id"].strip(), row["clip_id"].strip(), float(row["label"])
                split = MODES[row["mode"].strip().lower()]
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                yield Reject("chsimsv2", where, f"unreadable row ({exc!r})", dict(row))
                continue
            clip_name = clip.zfill(4) if clip.isdigit() else clip
            video = f"Raw/{vid}/{clip_name}.mp4"
            label = sentiment_class(score)
            yield make_sample(
                "chsimsv2",
                split=split,
                instruction=label_instruction("chsimsv2", CONTEXT, QUESTION),
                question=QUESTION,
                answer=label,
                class_label=label,
                video=video,
                audio=video,
                transcript=row.get("text"),
                source_ids={"video_id": vid, "clip_id": clip, "file": video},
                original_label={"label": score, "annotation": row.get("annotation")},
            )

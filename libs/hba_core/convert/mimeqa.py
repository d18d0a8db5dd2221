"""MimeQA (Li et al., 2025): questions about mime videos -> mimeqa (NVC, free text).

Release layout (Hugging Face ``hzli1202/MimeQA``, a video folder): ``metadata.csv`` with one row per
question - ``file_name`` (the video, relative to the folder), ``question``, ``reference_answer``,
optional ``question_type`` and ``split`` - and the videos. The annotations are not on GitHub; this
adapter follows that documented layout (see docs/convert.md), and tests build files in it.

Rules: the target is the reference answer, kept free text. No validation split: the release's
``split`` column when present (validation rows are rejected - there is no val split), else a seeded
80/20 train/test split grouped by video, so no video is in both (the paper: 633/0/173). Mimes are
silent: no transcript.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from hba_core.convert.base import Reject, make_sample, qa_instruction, require
from hba_core.convert.splits import assign_splits

FRACTIONS = (0.80, 0.0, 0.20)
SPLIT_NAMES = {"train": "train", "test": "test"}
CONTEXT = "The above is a video and audio recording of a mime performance."


def build(raw_dir: Path, *, check_media: bool = True) -> Iterator[dict | Reject]:
    path = require(raw_dir / "metadata.csv")
    rows = []
    with open(path, encoding="utf-8-sig", newline="") as fh:
        for line, row in enumerate(csv.DictReader(fh), start=2):
            video, question, answer = (row.get(k, "") or "" for k in ("file_name", "question", "reference_answer"))
            if not (video.strip() and question.strip() and answer.strip()):
                yield Reject(
                    "mimeqa",
                    f"{path}:{line}",
                    "unreadable row (file_name, question or reference_answer empty)",
                    dict(row),
                )
                continue
            rows.append((line, row, video.strip()))
    seeded = assign_splits([video for _, _, video in rows], FRACTIONS)
    for line, row, video in rows:
        given = (row.get("split") or "").strip().lower()
        split = SPLIT_NAMES.get(given) if given else seeded[video]
        ids = {"file": video, "line": line, "question_type": row.get("question_type")}
        if split is None:
            yield Reject("mimeqa", f"{path}:{line}", f"unknown split: {given!r} (MimeQA has train and test only)", ids)
            continue
        question = row["question"].strip()
        yield make_sample(
            "mimeqa",
            split=split,
            instruction=qa_instruction(CONTEXT, question),
            question=question,
            answer=row["reference_answer"].strip(),
            class_label=None,
            video=video,
            audio=video,
            transcript=None,
            transcript_slot=False,
            source_ids=ids,
            original_label=None,
        )

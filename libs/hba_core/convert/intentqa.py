"""IntentQA (Li et al., 2023): intent questions about NExT-QA videos -> intentqa (INT, free text).

Release layout (JoseponLee/IntentQA, ``datasets/IntentQA``): ``train.csv``, ``val.csv``, ``test.csv``
(video_id, frame_count, width, height, question, answer, qid, type, a0..a4, action, lemma, lemma_id;
``answer`` is the index of the correct option) and the videos ``videos/<video_id>.mp4``.

Rules: the target is the correct option's text, kept free text; the prompt lists the five options.
Official splits: val 2044 and test 2134 rows, the paper's counts; train.csv (12,119 in the paper) is
read the same way when present. The videos have no transcript.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from hba_core.convert.base import Reject, make_sample, qa_instruction

SPLITS = (("train", "train.csv"), ("val", "val.csv"), ("test", "test.csv"))
CONTEXT = "The above is a video and audio recording."


def build(raw_dir: Path, *, check_media: bool = True) -> Iterator[dict | Reject]:
    for split, name in SPLITS:
        path = raw_dir / name
        if not path.is_file():  # train.csv is distributed separately (Google Drive): say so, build the rest
            yield Reject("intentqa", str(path), f"annotation file not found: {name} (the {split} split is empty)")
            continue
        with open(path, encoding="utf-8", newline="") as fh:
            for line, row in enumerate(csv.DictReader(fh), start=2):
                try:
                    options = [row[f"a{i}"] for i in range(5)]
                    answer = options[int(row["answer"])]
                    question = row["question"].strip()
                    vid = row["video_id"].strip()
                except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
                    yield Reject("intentqa", f"{path}:{line}", f"unreadable row ({exc})", dict(row))
                    continue
                if question and not question.endswith("?"):
                    question += "?"
                ids = {"video_id": vid, "qid": row.get("qid"), "type": row.get("type")}
                yield make_sample(
                    "intentqa",
                    split=split,
                    instruction=qa_instruction(CONTEXT, question, options),
                    question=question,
                    answer=answer,
                    class_label=None,
                    video=f"videos/{vid}.mp4",
                    audio=f"videos/{vid}.mp4",
                    transcript=None,
                    transcript_slot=False,
                    source_ids=ids,
                    original_label=int(row["answer"]),
                    extra={"options": options},
                )

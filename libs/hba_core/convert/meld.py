"""MELD (Poria et al., 2019): utterances of Friends dialogues -> meld_senti (SEN) and meld_emotion (EMO).

Release layout (declare-lab/MELD, MELD.Raw): ``train_sent_emo.csv``, ``dev_sent_emo.csv``,
``test_sent_emo.csv`` (columns Sr No., Utterance, Speaker, Emotion, Sentiment, Dialogue_ID,
Utterance_ID, Season, Episode, StartTime, EndTime) and the clips ``train_splits/diaD_uttU.mp4``,
``dev_splits_complete/diaD_uttU.mp4``, ``output_repeated_splits_test/diaD_uttU.mp4``.

Rules: official splits (dev -> val). Labels keep their categorical form; emotion ``joy`` -> ``happy``
(registry synonym). The clip's own audio track is the audio input (the mp4 is listed under both
``videos`` and ``audios``; ``hba_core.media.decode_audio`` reads it). The utterance is the transcript.
Counts: 9989/1109/2610 rows; the paper's 9988/1108/2610 lacks the two clips missing from MELD.Raw
(train dia125_utt3, dev dia110_utt7), which a media-checked build rejects.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from hba_core.convert.base import Reject, label_instruction, make_sample, require, standard_label

SPLITS = (
    ("train", "train_sent_emo.csv", "train_splits"),
    ("val", "dev_sent_emo.csv", "dev_splits_complete"),
    ("test", "test_sent_emo.csv", "output_repeated_splits_test"),
)
CONTEXT = "The above is a video and audio recording from a conversation[[, along with the transcript]]."
QUESTIONS = {
    "meld_senti": ("Sentiment", "What is the sentiment of the speaker in this recording?"),
    "meld_emotion": ("Emotion", "What emotion is the speaker expressing in this recording?"),
}


def build(raw_dir: Path, *, check_media: bool = True) -> Iterator[dict | Reject]:
    for split, csv_name, clip_dir in SPLITS:
        path = require(raw_dir / csv_name)
        with open(path, encoding="utf-8", newline="") as fh:
            for line, row in enumerate(csv.DictReader(fh), start=2):
                where = f"{path}:{line}"
                try:
                    dia, utt, text = int(row["Dialogue_ID"]), int(row["Utterance_ID"]), row["Utterance"]
                except (KeyError, TypeError, ValueError) as exc:
                    yield Reject("meld", where, f"unreadable row ({exc})", dict(row))
                    continue
                clip = f"{clip_dir}/dia{dia}_utt{utt}.mp4"
                ids = {"dialogue_id": dia, "utterance_id": utt, "speaker": row["Speaker"], "file": clip}
                for name, (column, question) in QUESTIONS.items():
                    original = row[column]
                    label = standard_label(name, original)
                    if label is None:
                        yield Reject("meld", where, f"unknown label: {original!r} ({name})", ids)
                        continue
                    yield make_sample(
                        name,
                        split=split,
                        instruction=label_instruction(name, CONTEXT, question),
                        question=question,
                        answer=label,
                        class_label=label,
                        video=clip,
                        audio=clip,
                        transcript=text,
                        source_ids=ids,
                        original_label=original,
                    )

"""CREMA-D (Cao et al., 2014): 7,442 acted sentences by 91 actors -> cremad (EMO).

Release layout (CheyneyComputerScience/CREMA-D): ``SentenceFilenames.csv`` (Stimulus_Number,
Filename) lists every clip; the audio is ``AudioWAV/<Filename>.wav``. A file name is
``<actor>_<sentence>_<emotion>_<level>`` (e.g. ``1077_DFA_SAD_XX``).

Rules: the label is the acted emotion in the file name (ANG, DIS, FEA, HAP, NEU, SAD -> anger,
disgust, fear, happy, neutral, sad), as the release's example line does; the crowd votes in
processedResults are not used. The transcript is the sentence the code names (the 12 fixed sentences of
the CREMA-D paper). No official split: a seeded 70/15/15 split grouped by actor, so no speaker is in two
splits (counts are close to, not exactly, the paper's 5209/1116/1117).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from hba_core.convert.base import Reject, label_instruction, make_sample, require, standard_label
from hba_core.convert.splits import SEVENTY_FIFTEEN_FIFTEEN, assign_splits

SENTENCES = {
    "IEO": "It's eleven o'clock.",
    "TIE": "That is exactly what happened.",
    "IOM": "I'm on my way to the meeting.",
    "IWW": "I wonder what this is about.",
    "TAI": "The airplane is almost full.",
    "MTI": "Maybe tomorrow it will be cold.",
    "IWL": "I would like a new alarm clock.",
    "ITH": "I think I have a doctor's appointment.",
    "DFA": "Don't forget a jacket.",
    "ITS": "I think I've seen this before.",
    "TSI": "The surface is slick.",
    "WSI": "We'll stop in a couple of minutes.",
}
EMOTIONS = {"ANG": "anger", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
CONTEXT = "The above is a speech recording[[ along with the transcript]] from a clinical context."
QUESTION = "What emotion is the speaker expressing?"


def build(raw_dir: Path, *, check_media: bool = True) -> Iterator[dict | Reject]:
    path = require(raw_dir / "SentenceFilenames.csv")
    rows = []
    with open(path, encoding="utf-8-sig", newline="") as fh:
        for line, row in enumerate(csv.DictReader(fh), start=2):
            name = (row.get("Filename") or "").strip()
            parts = name.split("_")
            if len(parts) != 4 or parts[1] not in SENTENCES or parts[2] not in EMOTIONS:
                yield Reject("cremad", f"{path}:{line}", f"unreadable row (file name {name!r})", dict(row))
                continue
            rows.append((line, name, parts))
    splits = assign_splits([parts[0] for _, _, parts in rows], SEVENTY_FIFTEEN_FIFTEEN)
    for _line, name, (actor, sentence, emotion, level) in rows:
        label = standard_label("cremad", EMOTIONS[emotion])
        ids = {"file": name, "actor": actor, "sentence": sentence, "level": level}
        yield make_sample(
            "cremad",
            split=splits[actor],
            instruction=label_instruction("cremad", CONTEXT, QUESTION),
            question=QUESTION,
            answer=label,
            class_label=label,
            audio=f"AudioWAV/{name}.wav",
            transcript=SENTENCES[sentence],
            source_ids=ids,
            original_label=emotion,
        )

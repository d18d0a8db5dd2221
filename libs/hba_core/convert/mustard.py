"""MUStARD (Castro et al., 2019): 690 sitcom utterances -> mmsd (SAR).

Release layout (soujanyaporia/MUStARD): ``sarcasm_data.json`` ({id: {utterance, speaker, context,
context_speakers, show, sarcasm}}) and the clips ``utterances_final/<id>.mp4``.

Rules: ``sarcasm`` true/false -> ``sarcasm`` / ``not sarcasm``. The transcript is the speaker's
utterance; the preceding dialogue context is kept in metadata. The release's 5 folds are for
cross-validation, not a train/val/test split: a seeded 70/15/15 split by utterance (483/104/103,
the paper's counts). Utterances are grouped by clip, not speaker: a few characters speak most lines.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson

from hba_core.convert.base import Reject, label_instruction, make_sample, require
from hba_core.convert.splits import SEVENTY_FIFTEEN_FIFTEEN, assign_splits

CONTEXT = "The above is a video and audio recording from a TV show[[, along with the transcript]]."
QUESTION = "Is the speaker being sarcastic?"


def build(raw_dir: Path, *, check_media: bool = True) -> Iterator[dict | Reject]:
    path = require(raw_dir / "sarcasm_data.json")
    data = orjson.loads(path.read_bytes())
    splits = assign_splits(list(data), SEVENTY_FIFTEEN_FIFTEEN)
    for key, row in data.items():
        value = row.get("sarcasm") if isinstance(row, dict) else None
        if not isinstance(value, bool) or not isinstance(row.get("utterance"), str):
            yield Reject("mustard", f"{path}:{key}", "unreadable row (no utterance or boolean sarcasm)", {"id": key})
            continue
        label = "sarcasm" if value else "not sarcasm"
        clip = f"utterances_final/{key}.mp4"
        ids = {"id": key, "speaker": row.get("speaker"), "show": row.get("show"), "file": clip}
        yield make_sample(
            "mmsd",
            split=splits[key],
            instruction=label_instruction("mmsd", CONTEXT, QUESTION),
            question=QUESTION,
            answer=label,
            class_label=label,
            video=clip,
            audio=clip,
            transcript=row["utterance"],
            source_ids=ids,
            original_label=value,
            extra={"context": row.get("context", []), "context_speakers": row.get("context_speakers", [])},
        )

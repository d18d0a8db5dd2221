"""MMPsy (Chinese adolescent interviews): PHQ-9 and GAD-7 per participant -> mmpsy_depression, mmpsy_anxiety.

Release layout (shuyeit/mmpsy-data): ``wav_select.json``, a list of {user_id, phq-label {score, level},
gad-label {score, level}, audios {wav name: transcript}}. The samples are text only (the paper uses the
transcripts; the audio is not public).

Rules (the scales' guidelines, as the MMPsy paper): PHQ-9 >= 10 (moderate or worse) -> depression,
GAD-7 >= 10 -> anxiety; the original score and level are kept. The transcript is the participant's
answers in order. No official split: a seeded 70/15/15 split by participant, the same for both
datasets: 893/191/191 (the paper's counts, which count each participant once).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson

from hba_core.convert.base import Reject, label_instruction, make_sample, require
from hba_core.convert.splits import SEVENTY_FIFTEEN_FIFTEEN, assign_splits

CUTOFF = 10  # PHQ-9 and GAD-7: scores of 10 and more are moderate or severe
CONTEXT = "The above is the transcript of a participant's answers in a mental health interview."
TARGETS = (
    ("mmpsy_depression", "phq-label", "depression", "no depression", "Does the participant show signs of depression?"),
    ("mmpsy_anxiety", "gad-label", "anxiety", "no anxiety", "Does the participant show signs of anxiety?"),
)


def build(raw_dir: Path, *, check_media: bool = True) -> Iterator[dict | Reject]:
    path = require(raw_dir / "wav_select.json")
    rows = orjson.loads(path.read_bytes())
    users = [str(r.get("user_id", f"#{i}")) if isinstance(r, dict) else f"#{i}" for i, r in enumerate(rows)]
    splits = assign_splits(users, SEVENTY_FIFTEEN_FIFTEEN)
    for index, (user, row) in enumerate(zip(users, rows)):
        where = f"{path}:[{index}]"
        if not isinstance(row, dict) or not isinstance(row.get("audios"), dict):
            yield Reject("mmpsy", where, "unreadable row (no audios object)", {"user_id": user})
            continue
        transcript = " ".join(str(t).strip() for t in row["audios"].values() if str(t).strip())
        for name, key, positive, negative, question in TARGETS:
            scale = row.get(key)
            try:
                score = int(scale["score"])
            except (KeyError, TypeError, ValueError) as exc:
                yield Reject("mmpsy", where, f"unreadable row ({key}: {exc})", {"user_id": user, "dataset": name})
                continue
            label = positive if score >= CUTOFF else negative
            yield make_sample(
                name,
                split=splits[user],
                instruction=label_instruction(name, CONTEXT, question),
                question=question,
                answer=label,
                class_label=label,
                transcript=transcript,
                source_ids={"user_id": user, "files": list(row["audios"])},
                original_label=scale,
            )

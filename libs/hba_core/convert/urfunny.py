"""UR-FUNNY v2 (Hasan et al., 2019): TED punchlines -> urfunny (HUM).

Release layout (ROC-HCI/UR-FUNNY, the V2 Dropbox folder): ``data_folds.pkl`` ({train, dev, test:
[segment ids]}), ``humor_label_sdk.pkl`` ({id: 0/1}), ``language_sdk.pkl`` ({id: {punchline_sentence,
context_sentences, ...}}, optional) and the clips ``urfunny2_videos/<id>.mp4``. The pickles are read
with a restricted unpickler (data only). V1 (``ted_humor_sdk_v1``) has the same folds and labels
files, so the adapter reads it too, without transcripts.

Rules: label 1 -> humour, 0 -> not humour. Official folds (dev -> val). The transcript is the
punchline sentence (context sentences kept in metadata). Counts depend on the version and on the
videos present; the paper's 1709/192/224 is a media-available subset of V2 (see docs/convert.md).
Ids in a fold without a label are rejected.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from hba_core.convert import safe_pickle
from hba_core.convert.base import Reject, label_instruction, make_sample, require

FOLDS = (("train", "train"), ("dev", "val"), ("test", "test"))
CONTEXT = "The above is a video and audio recording of a TED talk[[, along with the transcript of the punchline]]."
QUESTION = "Is the speaker being humorous?"


def build(raw_dir: Path, *, check_media: bool = True) -> Iterator[dict | Reject]:
    folds = safe_pickle.load(require(raw_dir / "data_folds.pkl"))
    labels = safe_pickle.load(require(raw_dir / "humor_label_sdk.pkl"))
    language_path = raw_dir / "language_sdk.pkl"
    language = safe_pickle.load(language_path) if language_path.is_file() else {}
    for fold, split in FOLDS:
        for key in folds.get(fold, []):
            ids = {"id": int(key) if str(key).isdigit() else str(key), "file": f"urfunny2_videos/{key}.mp4"}
            value = labels.get(key)
            if value not in (0, 1):
                yield Reject(
                    "urfunny",
                    f"{raw_dir / 'data_folds.pkl'}:{fold}:{key}",
                    f"unknown label: {value!r} (id not in humor_label_sdk.pkl)",
                    ids,
                )
                continue
            label = "humour" if int(value) == 1 else "not humour"
            text = language.get(key) or {}
            yield make_sample(
                "urfunny",
                split=split,
                instruction=label_instruction("urfunny", CONTEXT, QUESTION),
                question=QUESTION,
                answer=label,
                class_label=label,
                video=ids["file"],
                audio=ids["file"],
                transcript=text.get("punchline_sentence") or None,
                source_ids=ids,
                original_label=float(value),
                extra={"context": list(text.get("context_sentences") or [])},
            )

"""Social-IQ 2.0 (Wilf et al., 2023): multiple-choice questions about social videos -> siq2 (SOC, free text).

Release layout (abwilf/Social-IQ-2.0-Challenge, ``siq2/``): ``qa/qa_train.json``, ``qa/qa_val.json``
(JSON Lines: qid, q, vid_name, ts, a0..a3, answer_idx, ans_corr), ``qa/qa_test.json`` (no answers),
videos ``video/<vid_name>.mp4``, audio ``audio/wav/<vid_name>.wav``, subtitles ``transcript/<vid_name>.vtt``.

Rules: the target is the correct option's text (``ans_corr``, else ``a<answer_idx>``), kept free text;
the prompt lists the four options. The public test set has no answers, so the validation set is the
test split (train -> train, val -> test, no val). The subtitles are the transcript when present.
Counts: 6159/0/943 questions from the annotation files; the paper's 5562/0/875 keeps only the videos
still online when it was built, which a media-checked build reproduces by rejecting missing videos.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import orjson

from hba_core.convert.base import Reject, make_sample, qa_instruction, require

SPLITS = (("train", "qa/qa_train.json"), ("test", "qa/qa_val.json"))
CONTEXT = "The above is a video and audio recording of a social interaction[[, along with the transcript]]."
_VTT_TIMING = re.compile(r"^\d{2}:\d{2}[:.]\d{2}.*-->")


def vtt_text(path: Path) -> str | None:
    """The spoken text of a WebVTT subtitle file (cues joined, timings and repeats dropped); None if absent."""
    if not path.is_file():
        return None
    seen: list[str] = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = re.sub(r"<[^>]+>", "", line).strip()
        if not line or line == "WEBVTT" or _VTT_TIMING.match(line) or line.startswith(("Kind:", "Language:", "NOTE")):
            continue
        if not seen or seen[-1] != line:
            seen.append(line)
    return " ".join(seen) or None


def build(raw_dir: Path, *, check_media: bool = True) -> Iterator[dict | Reject]:
    transcripts: dict[str, str | None] = {}
    for split, name in SPLITS:
        path = require(raw_dir / name)
        for line, raw in enumerate(path.read_bytes().splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                row = orjson.loads(raw)
                options = [row[f"a{i}"] for i in range(4)]
                answer = row.get("ans_corr") or options[int(row["answer_idx"])]
                vid, question = row["vid_name"], row["q"]
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, IndexError) as exc:
                yield Reject("siq2", f"{path}:{line}", f"unreadable row ({exc})", {"line": line})
                continue
            if vid not in transcripts:
                transcripts[vid] = vtt_text(raw_dir / "transcript" / f"{vid}.vtt")
            ids = {"qid": row.get("qid"), "video_id": vid, "ts": row.get("ts")}
            yield make_sample(
                "siq2",
                split=split,
                instruction=qa_instruction(CONTEXT, question, options),
                question=question,
                answer=answer,
                class_label=None,
                video=f"video/{vid}.mp4",
                audio=f"audio/wav/{vid}.wav",
                transcript=transcripts[vid],
                source_ids=ids,
                original_label=row.get("answer_idx"),
                extra={"options": options},
            )

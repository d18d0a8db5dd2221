"""PTSD-in-the-Wild (Sawadogo et al., 2024): in-the-wild videos -> ptsd_in_the_wild (PTSD).

Release layout (lissi.fr): no label file; the videos sit in one folder per class, e.g.
``PTSD/<name>.mp4`` and ``NO PTSD/<name>.mp4`` (folder names are matched to the label set through the
registry's synonyms after ``_``/``-`` become spaces: ``No_PTSD``, ``non-ptsd``, ``PTSD`` ...).
Videos in a folder that names no class are rejected.

Rules: the label is the folder's class. No official split and no speaker ids: a seeded 80/10/10 split
by video (the paper: 506/64/64). No transcript is distributed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from hba_core.convert.base import Reject, label_instruction, make_sample, standard_label
from hba_core.convert.splits import EIGHTY_TEN_TEN, assign_splits

VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".webm"}
CONTEXT = "The above is a video and audio recording of a person."
QUESTION = "Does the person show signs of post-traumatic stress disorder (PTSD)?"


def build(raw_dir: Path, *, check_media: bool = True) -> Iterator[dict | Reject]:
    videos = sorted(p.relative_to(raw_dir) for p in raw_dir.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
    if not videos:
        yield Reject("ptsd", str(raw_dir), "media missing: no video files in class folders")
    rows = []
    for rel in videos:
        folder = rel.parts[0] if len(rel.parts) > 1 else ""
        label = standard_label("ptsd_in_the_wild", folder.replace("_", " ").replace("-", " ")) or standard_label(
            "ptsd_in_the_wild", folder
        )
        if label is None:
            yield Reject("ptsd", str(rel), f"unknown label: folder {folder!r} names no class", {"file": rel.as_posix()})
            continue
        rows.append((rel.as_posix(), folder, label))
    splits = assign_splits([rel for rel, _, _ in rows], EIGHTY_TEN_TEN)
    for rel, folder, label in rows:
        yield make_sample(
            "ptsd_in_the_wild",
            split=splits[rel],
            question=QUESTION,
            instruction=label_instruction("ptsd_in_the_wild", CONTEXT, QUESTION),
            answer=label,
            class_label=label,
            video=rel,
            audio=rel,
            transcript=None,
            transcript_slot=False,
            source_ids={"file": rel},
            original_label=folder,
        )

"""TESS (Toronto emotional speech set): 2,800 "Say the word _" recordings by two actresses -> tess (EMO).

Release layout: one folder per speaker and emotion (``OAF_Fear/OAF_back_fear.wav``,
``YAF_pleasant_surprised/YAF_bath_ps.wav``, ...); the label and the word are in the file name
``<speaker>_<word>_<emotion>.wav``. The adapter lists the ``.wav`` files under the raw folder (or,
when there are none, the paths in a ``*.txt`` listing there, for ``--no-media`` counts).

Rules: emotion from the file name's last part, or the folder's when the file name uses an abbreviation
(``ps``); "pleasant surprise(d)" -> ``surprise`` (registry synonym: the release's label set has no
pleasant surprise). The transcript is "Say the word <word>." No official split and only two speakers,
so a seeded 70/15/15 split by recording: 1960/420/420, the paper's counts.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from hba_core.convert.base import Reject, label_instruction, make_sample, standard_label
from hba_core.convert.splits import SEVENTY_FIFTEEN_FIFTEEN, assign_splits

ABBREVIATIONS = {"ps": "pleasant surprise"}
CONTEXT = "The above is a speech recording[[ along with the transcript]]."
QUESTION = "What emotion is the speaker expressing?"


def _emotion(path: Path) -> str:
    last = path.stem.split("_")[-1].lower()
    if last in ABBREVIATIONS:
        return ABBREVIATIONS[last]
    folder = path.parent.name.lower().split("_", 1)[-1].replace("_", " ")
    return last if standard_label("tess", last) else folder


def list_wavs(raw_dir: Path) -> list[Path]:
    """The release's ``.wav`` files, relative to ``raw_dir``; without any, the paths listed in its ``*.txt`` files.

    A listing (one relative path per line, as ``git ls-tree`` or ``find`` print it) lets ``--no-media``
    count TESS without the audio.
    """
    files = [p.relative_to(raw_dir) for p in raw_dir.rglob("*") if p.suffix.lower() == ".wav"]
    if not files:
        for listing in sorted(raw_dir.glob("*.txt")):
            lines = listing.read_text(encoding="utf-8").splitlines()
            files += [Path(line.strip()) for line in lines if line.strip().lower().endswith(".wav")]
    return sorted(set(files))


def build(raw_dir: Path, *, check_media: bool = True) -> Iterator[dict | Reject]:
    files = list_wavs(raw_dir)
    if not files:
        yield Reject("tess", str(raw_dir), "annotation file not found: no .wav files and no *.txt listing of them")
    rows = []
    for rel in files:
        parts = rel.stem.split("_")
        original = _emotion(rel)
        label = standard_label("tess", original)
        if len(parts) < 3 or label is None:
            yield Reject("tess", str(rel), f"unknown label: {original!r} in file name", {"file": str(rel)})
            continue
        rows.append((rel, parts[0], parts[1], original, label))
    splits = assign_splits([str(rel) for rel, *_ in rows], SEVENTY_FIFTEEN_FIFTEEN)
    for rel, speaker, word, original, label in rows:
        yield make_sample(
            "tess",
            split=splits[str(rel)],
            instruction=label_instruction("tess", CONTEXT, QUESTION),
            question=QUESTION,
            answer=label,
            class_label=label,
            audio=rel.as_posix(),
            transcript=f"Say the word {word}.",
            source_ids={"file": rel.as_posix(), "speaker": speaker, "word": word},
            original_label=original,
        )

"""Validate sample files: schema, registry (known dataset, label in its label set) and media under a root.

Every problem is reported with its file and line; nothing stops at the first one.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from hba_core.errors import MediaError
from hba_core.jsonl import LineError, PathLike, display_name, iter_jsonl
from hba_core.media import resolve_media
from hba_core.samples import sample_problems

MEDIA_KEYS = ("images", "videos", "audios", "texts", "ext_video_feats", "ext_audio_feats")


def media_problems(row: dict, root: Path) -> list[str]:
    """Missing or escaping media paths of one sample, relative to ``root``."""
    problems = []
    for key in MEDIA_KEYS:
        paths = row.get(key)
        if not isinstance(paths, list):
            continue
        for index, rel in enumerate(paths):
            if not isinstance(rel, str):
                continue
            try:
                path = resolve_media(root, rel)
            except MediaError as exc:
                problems.append(f"$.{key}[{index}]: {exc.message}")
                continue
            if not path.is_file():
                problems.append(f"$.{key}[{index}]: media file not found under {root}: {rel}")
    return problems


def validate_file(path: PathLike, root: Path | None = None) -> Iterator[LineError | int]:
    """Yield every problem of one sample file as a :class:`LineError`, then the number of records read."""
    name = display_name(path)
    errors: list[LineError] = []
    count = 0
    for line, row in iter_jsonl(path, errors):
        yield from errors
        errors.clear()
        count += 1
        found = sample_problems(row)
        if root is not None:
            found += media_problems(row, root)
        for message in found:
            yield LineError(name, line, message)
    yield from errors
    yield count

"""The official release: import its ``final_v8_*`` JSONL splits (or Parquet form) and export our samples back.

Import keeps every field of an official line as it is, in its order, and appends ``id`` (derived from
content, :func:`hba_core.samples.sample_id`), ``split`` (from the file name) and ``metadata`` (where the
line came from). Export removes exactly those three fields, so an official line round-trips unchanged.

The Parquet form holds media as raw bytes: each media cell (``{"bytes", "path"}`` struct, or plain
bytes) is written to a file under the output's media folder and replaced by its relative path.

>>> strip_ours({"problem": "p", "answer": "a", "id": "x", "split": "test", "metadata": {}})
{'problem': 'p', 'answer': 'a'}
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hba_core.errors import InputError
from hba_core.jsonl import LineError, atomic_output, dumps_line, iter_jsonl
from hba_core.media import resolve_media
from hba_core.samples import MEDIA_FIELDS, sample_id

RELEASE_FILES = {
    "train": "final_v8_train_cleaned_2.jsonl",
    "val": "final_v8_val_cleaned.jsonl",
    "test": "final_v8_test_cleaned.jsonl",
}
OUR_FIELDS = ("id", "split", "metadata")
_SPLIT_IN_NAME = re.compile(r"(?:^|[_\-./])(train|val|valid|validation|dev|test)(?:[_\-./]|$)")
_SPLIT_ALIASES = {"valid": "val", "validation": "val", "dev": "val"}
_EXTENSIONS = {b"RIFF": ".wav", b"fLaC": ".flac", b"ID3": ".mp3", b"OggS": ".ogg", b"\x1aE\xdf\xa3": ".mkv"}


def split_of(path: Path) -> str:
    """The split a release file holds, from its name (``final_v8_val_cleaned.jsonl`` -> ``val``)."""
    match = _SPLIT_IN_NAME.search(path.name.lower())
    if not match:
        raise InputError(str(path), "cannot tell the split from the file name; expected train, val or test in it")
    return _SPLIT_ALIASES.get(match.group(1), match.group(1))


def release_files(release_dir: Path) -> list[Path]:
    """The split files of a release folder: ``final_v8_*.jsonl``, else ``*.parquet`` (searched recursively)."""
    if not release_dir.is_dir():
        raise InputError(str(release_dir), "release folder not found")
    found = sorted(release_dir.glob("final_v8_*.jsonl")) or sorted(release_dir.rglob("*.parquet"))
    if not found:
        raise InputError(
            str(release_dir),
            "no final_v8_*.jsonl or *.parquet files here; point --from at the downloaded release's root folder",
        )
    order = {"train": 0, "val": 1, "test": 2}
    return sorted(found, key=lambda p: (order[split_of(p)], str(p)))


def strip_ours(row: dict[str, Any]) -> dict[str, Any]:
    """An official line: the row without the fields import added, in its original order."""
    return {k: v for k, v in row.items() if k not in OUR_FIELDS}


def _with_ours(row: dict[str, Any], split: str, where: str, derived: dict[str, int]) -> dict[str, Any]:
    base = sample_id(row)
    derived[base] = derived.get(base, 0) + 1
    row["id"] = base if derived[base] == 1 else f"{base}#{derived[base]}"
    row["split"] = split
    row["metadata"] = {"release_line": where}
    return row


def iter_release_jsonl(path: Path, errors: list[LineError]) -> Iterator[dict[str, Any]]:
    split = split_of(path)
    derived: dict[str, int] = {}
    for line, row in iter_jsonl(path, errors):
        yield _with_ours(row, split, f"{path.name}:{line}", derived)


def _media_name(cell: Any) -> tuple[str | None, bytes | None]:
    if isinstance(cell, dict):
        return cell.get("path"), cell.get("bytes")
    if isinstance(cell, bytes | bytearray):
        return None, bytes(cell)
    return str(cell), None


def _extension(data: bytes) -> str:
    for magic, ext in _EXTENSIONS.items():
        if data.startswith(magic):
            return ext
    return ".mp4" if data[4:8] == b"ftyp" else ".bin"


def iter_release_parquet(path: Path, media_root: Path, errors: list[LineError]) -> Iterator[dict[str, Any]]:
    """Rows of one Parquet split file, media bytes written under ``media_root`` (paths relative to it)."""
    import pyarrow.parquet as pq  # optional dependency: hba[convert]

    split = split_of(path)
    derived: dict[str, int] = {}
    number = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=256):
        for row in batch.to_pylist():
            number += 1
            where = f"{path.name}:row {number}"
            try:
                for key in MEDIA_FIELDS:
                    row[key] = [_store(media_root, row.get("dataset", "unknown"), cell) for cell in row.get(key) or []]
            except InputError as exc:
                errors.append(LineError(str(path), number, exc.message))
                continue
            yield _with_ours(row, split, where, derived)


def _store(media_root: Path, dataset: str, cell: Any) -> str:
    name, data = _media_name(cell)
    if data is None:
        if not name:
            raise InputError(dataset, "media cell with neither bytes nor path")
        return name
    if not name:
        name = f"{dataset}/{hashlib.sha256(data).hexdigest()[:20]}{_extension(data)}"
    target = resolve_media(media_root, name)  # refuses absolute paths and .. escaping the root
    if not target.exists() or target.stat().st_size != len(data):
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(target) as out:
            out.write(data)
    return name


def import_release(
    release_dir: Path, media_root: Path | None = None, errors: list[LineError] | None = None
) -> Iterator[dict[str, Any]]:
    """Every sample of an official release folder, with ``id``, ``split`` and ``metadata`` added.

    Bad lines go to ``errors`` (file:line and the reason); Parquet media are written under ``media_root``.
    """
    errors = errors if errors is not None else []
    for path in release_files(release_dir):
        if path.suffix == ".parquet":
            if media_root is None:
                raise InputError(str(path), "Parquet releases hold media bytes: give --media-root to write them to")
            yield from iter_release_parquet(path, media_root, errors)
        else:
            yield from iter_release_jsonl(path, errors)


def export_release(rows: Iterator[dict[str, Any]], out_dir: Path) -> dict[str, int]:
    """Write samples as the official layout: one ``final_v8_*`` file per split, official fields only."""
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = dict.fromkeys(RELEASE_FILES, 0)
    with contextlib.ExitStack() as stack:  # all three files appear together, or none on error
        streams = {split: stack.enter_context(atomic_output(out_dir / name)) for split, name in RELEASE_FILES.items()}
        for row in rows:
            split = row.get("split")
            if split not in streams:
                raise InputError(
                    str(row.get("id", "?")),
                    f"sample has no split (got {split!r}); export needs train, val or test on every sample",
                )
            streams[split].write(dumps_line(strip_ours(row)))
            counts[split] += 1
    return counts

"""The official release: import its ``final_v8_*`` JSONL splits (or Parquet form) and export our samples back.

Import keeps every field of an official line as it is, in its order, and appends ``id`` (derived from
content, :func:`hba_core.samples.sample_id`), ``split`` (from the file name) and ``metadata`` (where the
line came from). Export removes exactly those three fields, so an official line round-trips unchanged.

The Parquet form (Atlas v2: ``list<binary>`` cells; older ``{"bytes", "path"}`` structs too) holds media
and ``.pt`` features as bytes: each cell is checked (PyAV opens it / ``torch.load`` gives a tensor or a
dict of tensors) and written under ``--media-root`` named by its content, ``<dataset>/<column>/<sha256><ext>``,
so cells that share a name but not their bytes never overwrite each other. Ids and splits are the ones
:func:`hba_core.samples.iter_samples` gives the shard read directly, so scores agree either way.

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

from hba_core.errors import InputError, MediaError
from hba_core.jsonl import LineError, atomic_output, dumps_line
from hba_core.media import open_media, resolve_media
from hba_core.samples import iter_samples
from hba_core.sources import BINARY_COLUMNS, cell_contents, expand_source, release_members, split_from_name

RELEASE_FILES = {
    "train": "final_v8_train_cleaned_2.jsonl",
    "val": "final_v8_val_cleaned.jsonl",
    "test": "final_v8_test_cleaned.jsonl",
}
OUR_FIELDS = ("id", "split", "metadata")
_EXTENSIONS = {b"RIFF": ".wav", b"fLaC": ".flac", b"ID3": ".mp3", b"OggS": ".ogg", b"\x1aE\xdf\xa3": ".mkv"}


def split_of(path: Path) -> str:
    """The split a release file holds, from its name (``final_v8_val_cleaned.jsonl`` -> ``val``)."""
    split = split_from_name(path.name)
    if split is None:
        raise InputError(str(path), "cannot tell the split from the file name; expected train, val or test in it")
    return split


def release_files(release_dir: Path) -> list[Path]:
    """The split files of a release folder: ``final_v8_*.jsonl``, else ``*.parquet`` (searched recursively)."""
    if not release_dir.is_dir():
        raise InputError(str(release_dir), "release folder not found")
    if not (sorted(release_dir.glob("final_v8_*.jsonl")) or sorted(release_dir.rglob("*.parquet"))):
        raise InputError(
            str(release_dir),
            "no final_v8_*.jsonl or *.parquet files here; point --from at the downloaded release's root folder",
        )
    found = release_members(release_dir)
    for path in found:
        split_of(path)  # every file must name its split
    return found


def strip_ours(row: dict[str, Any]) -> dict[str, Any]:
    """An official line: the row without the fields import added, in its original order."""
    return {k: v for k, v in row.items() if k not in OUR_FIELDS}


def _provenance(row: dict[str, Any], where: str) -> dict[str, Any]:
    """Add ``release_line`` to the row's ``metadata``, keeping whatever the row already had there."""
    metadata = row.get("metadata")
    row["metadata"] = {**(metadata if isinstance(metadata, dict) else {}), "release_line": where}
    return row


def _extension(name: str | None, data: bytes, column: str) -> str:
    if column.startswith("ext_"):
        return ".pt"
    suffix = Path(name).suffix.lower() if name else ""
    if re.fullmatch(r"\.[a-z0-9]{1,5}", suffix):
        return suffix
    for magic, ext in _EXTENSIONS.items():
        if data.startswith(magic):
            return ext
    return ".mp4" if data[4:8] == b"ftyp" else ".bin"


def check_cell(column: str, data: bytes, where: str) -> None:
    """Refuse a cell a reader could not use: media that PyAV cannot open, a ``.pt`` that is no tensor/dict."""
    if column.startswith("ext_"):
        import io

        import torch

        try:
            value = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises pickle/zip/runtime errors for bytes that are not a .pt
            raise InputError(where, f"{column}: not a readable .pt file ({type(exc).__name__}: {exc})") from None
        ok = isinstance(value, torch.Tensor) or (
            isinstance(value, dict) and value and all(isinstance(v, torch.Tensor) for v in value.values())
        )
        if not ok:
            raise InputError(
                where, f"{column}: a .pt holding {type(value).__name__}, expected a tensor or a dict of tensors"
            )
        return
    try:
        with open_media(data) as container:
            if not (container.streams.video or container.streams.audio):
                raise InputError(where, f"{column}: media with no audio or video stream")
    except MediaError as exc:
        raise InputError(where, f"{column}: {exc.message}") from None


def store_cell(media_root: Path, dataset: str, column: str, name: str | None, data: bytes) -> str:
    """Write one cell's bytes under ``media_root`` named by content; return the path relative to the root.

    ``<dataset>/<column>/<sha256 of the bytes><ext>``: two cells with one name but different bytes keep
    their own files, equal bytes share one. The write is atomic, so a killed import leaves whole files
    only and a re-run finds them in place.
    """
    digest = hashlib.sha256(data).hexdigest()
    relative = f"{_safe(dataset)}/{column}/{digest}{_extension(name, data, column)}"
    target = resolve_media(media_root, relative)
    if not target.is_file() or target.stat().st_size != len(data):
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(target) as out:
            out.write(data)
        for stale in target.parent.glob(f".{target.name}.*.tmp"):  # left by an import killed mid-write
            stale.unlink(missing_ok=True)
    return relative


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text) or "unknown"


def _import_shard_row(row: dict[str, Any], media_root: Path, where: str) -> dict[str, Any]:
    dataset = str(row.get("dataset") or "unknown")
    for column in BINARY_COLUMNS:
        cells = row.get(column)
        if cells is None:
            continue
        stored = []
        for ref in cells:
            name, data = cell_contents(ref)
            if name is not None:
                try:  # an escaping name is refused, bytes or not
                    resolve_media(media_root, name)
                except MediaError as exc:
                    raise InputError(where, f"{column}: {exc.message} ({name})") from None
            if data is None:
                if not name:
                    raise InputError(where, f"{column}: a media cell with neither bytes nor path")
                stored.append(name)  # a path-only cell: the file is expected under the media root
                continue
            check_cell(column, data, where)
            stored.append(store_cell(media_root, dataset, column, name, data))
        row[column] = stored
    return row


def iter_release_parquet(path: Path, media_root: Path, errors: list[LineError]) -> Iterator[dict[str, Any]]:
    """Rows of one Parquet split file, media bytes written under ``media_root`` (paths relative to it).

    Ids and ``split`` are those :func:`hba_core.samples.iter_samples` gives the shard read directly.
    A row with a bad cell (escaping name, undecodable media, a ``.pt`` that is no tensor or dict) is
    reported in ``errors`` by shard and row and left out; every other row is written.
    """
    split_of(path)
    for number, row in iter_samples(path, media=True):
        where = f"{path}:{number}"
        try:
            row = _import_shard_row(row, media_root, where)
        except InputError as exc:  # MediaError included
            message = exc.message if exc.where == where else f"{exc.where}: {exc.message}"
            errors.append(LineError(str(path), number, message))
            continue
        yield _provenance(row, f"{path.name}:row {number}")


def iter_release_jsonl(path: Path, errors: list[LineError]) -> Iterator[dict[str, Any]]:
    split_of(path)
    for line, row in iter_samples(path, errors):
        yield _provenance(row, f"{path.name}:{line}")


def import_release(
    release_dir: Path, media_root: Path | None = None, errors: list[LineError] | None = None
) -> Iterator[dict[str, Any]]:
    """Every sample of an official release folder (or shard, or glob of shards), ``id``, ``split``, ``metadata`` added.

    Bad lines and rows go to ``errors`` (file:line or shard:row and the reason); Parquet media and
    ``.pt`` bytes are written under ``media_root`` (:func:`store_cell`).
    """
    errors = errors if errors is not None else []
    paths = release_files(release_dir) if Path(release_dir).is_dir() else [Path(p) for p in expand_source(release_dir)]
    for path in paths:
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

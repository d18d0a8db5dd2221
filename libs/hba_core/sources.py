"""Where samples come from: JSONL files, Parquet shards of the published Atlas v2, globs and release folders.

:func:`iter_source` is what :func:`hba_core.samples.iter_samples` reads through. A source is

- a JSONL file (``.jsonl``, ``.gz``) or ``-`` (stdin);
- one Parquet shard (``test-00000-of-00001.parquet``) or a glob of shards (``'data/train-*.parquet'``,
  quoted so the shell leaves it to us);
- a release folder: the v1 ``final_v8_*.jsonl`` files, else the v2 ``*.parquet`` shards below it.

Parquet is read with column projection: the string columns always, the binary media columns
(``images, videos, audios, ext_video_feats, ext_audio_feats``: ``list<binary>``) only when the caller
asks for media. Even then no bytes are kept: each media cell becomes a *cell reference*, a plain string

    parquet:///abs/path/test-00000-of-00001.parquet#<row>/<column>/<index>

(``row`` 0-based in the shard, ``index`` 0-based in the cell list) that :func:`read_cell` turns into the
cell's bytes on demand, reading the one row group's column (cached) - so predictions and outputs stay
JSON and media are decoded straight from the shard (:mod:`hba_core.media` takes bytes).

Rows of a shard are numbered from 1 in messages (``shard.parquet:3`` is its third row, like a file line).

>>> is_cell_ref("parquet:///data/test-00000-of-00001.parquet#12/videos/0")
True
>>> parse_cell_ref("parquet:///data/test-00000-of-00001.parquet#12/videos/0")
('/data/test-00000-of-00001.parquet', 12, 'videos', 0)
"""

from __future__ import annotations

import glob
import os
import re
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hba_core.errors import InputError, MediaError
from hba_core.jsonl import LineError, PathLike, iter_jsonl

CELL_PREFIX = "parquet://"
BINARY_COLUMNS: tuple[str, ...] = ("images", "videos", "audios", "ext_video_feats", "ext_audio_feats")
V1_GLOB = "final_v8_*.jsonl"
_GLOB_CHARS = re.compile(r"[*?\[]")
_SPLIT_IN_NAME = re.compile(r"(?:^|[_\-./])(train|val|valid|validation|dev|test)(?:[_\-./]|$)")
_SPLIT_ALIASES = {"valid": "val", "validation": "val", "dev": "val"}
_SHARD_OF = re.compile(r"-(\d+)-of-(\d+)\.parquet$")
_SPLIT_ORDER = {"train": 0, "val": 1, "test": 2}


# ---------------------------------------------------------------- names and expansion


def split_from_name(name: str) -> str | None:
    """The split a release file holds, from its name: ``validation-00000-of-00001.parquet`` -> ``val``.

    >>> split_from_name("final_v8_train_cleaned_2.jsonl"), split_from_name("atlas.jsonl")
    ('train', None)
    """
    match = _SPLIT_IN_NAME.search(name.lower())
    return None if match is None else _SPLIT_ALIASES.get(match.group(1), match.group(1))


def shard_index(name: str) -> int:
    """The shard's position in its split from the HF name ``train-00003-of-00005.parquet`` (0 otherwise)."""
    match = _SHARD_OF.search(name)
    return int(match.group(1)) if match else 0


def is_parquet(path: PathLike) -> bool:
    return str(path).endswith(".parquet")


def release_members(folder: Path) -> list[Path]:
    """A release folder's split files: ``final_v8_*.jsonl``, else ``*.parquet`` below it, in split order."""
    found = sorted(folder.glob(V1_GLOB)) or sorted(folder.rglob("*.parquet"))
    if not found:
        raise InputError(
            str(folder),
            f"a folder with no {V1_GLOB} or *.parquet files; give a sample file, a shard, "
            "a quoted glob of shards, or the downloaded release's root folder",
        )
    return sorted(found, key=lambda p: (_SPLIT_ORDER.get(split_from_name(p.name) or "", 3), str(p)))


def expand_source(path: PathLike) -> list[str]:
    """The files one source names: ``-``, a file, the shards a glob matches, or a release folder's files."""
    text = str(path)
    if text == "-":
        return ["-"]
    p = Path(text)
    if p.is_dir():
        return [str(f) for f in release_members(p)]
    if not p.exists() and _GLOB_CHARS.search(text):
        matched = sorted(glob.glob(text, recursive=True))
        if not matched:
            raise InputError(text, "no file matches this pattern")
        return [m for m in matched if not Path(m).is_dir()]
    return [text]


def is_release_file(path: str) -> bool:
    """Files whose name carries the split by the release's conventions (v1 ``final_v8_*``, any shard)."""
    name = Path(path).name
    return is_parquet(path) or (name.startswith("final_v8_") and name.endswith(".jsonl"))


# ---------------------------------------------------------------- reading


def iter_source(
    path: PathLike, errors: list[LineError] | None = None, *, media: bool = False
) -> Iterator[tuple[str, int, dict[str, Any]]]:
    """Yield ``(file, line, row)`` over every file of one source (rows as stored: no ids added here).

    ``media=False`` never reads the binary columns of a shard (their fields are left out of the row);
    ``media=True`` fills them with cell references (:func:`cell_ref`). Release files get ``split`` from
    their name when the row has none.
    """
    for file in expand_source(path):
        split = split_from_name(Path(file).name) if is_release_file(file) else None
        rows = iter_shard(file, media=media) if is_parquet(file) else iter_jsonl(file, errors)
        for line, row in rows:
            if split is not None and not row.get("split"):
                row["split"] = split
            yield file, line, row


def _parquet_file(path: str):  # -> pyarrow.parquet.ParquetFile
    import pyarrow.parquet as pq

    if not Path(path).is_file():
        raise InputError(path, "no such file" if not Path(path).exists() else "not a file")
    try:
        return pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid / OSError subclasses for non-Parquet input
        raise InputError(path, f"not a readable Parquet file ({exc})") from None


def shard_columns(pf: Any) -> tuple[list[str], list[str]]:
    """``(light, heavy)`` column names: heavy ones hold bytes (``binary`` leaves), the rest are read always."""
    import pyarrow as pa

    def has_binary(t: Any) -> bool:
        if pa.types.is_binary(t) or pa.types.is_large_binary(t):
            return True
        if pa.types.is_list(t) or pa.types.is_large_list(t):
            return has_binary(t.value_type)
        if pa.types.is_struct(t):
            return any(has_binary(t.field(i).type) for i in range(t.num_fields))
        return False

    schema = pf.schema_arrow
    heavy = [f.name for f in schema if has_binary(f.type)]
    light = [f.name for f in schema if f.name not in heavy]
    return light, heavy


def iter_shard(path: str, *, media: bool = False, batch_rows: int = 1024) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(row_number, row)`` of one shard, row numbers from 1; binary columns as cell references.

    >>> import tempfile, pyarrow as pa, pyarrow.parquet as pq
    >>> shard = tempfile.mkdtemp() + "/test-00000-of-00001.parquet"
    >>> pq.write_table(pa.table({"problem": ["p"], "audios": pa.array([[b"RIFF"]], pa.list_(pa.binary()))}), shard)
    >>> [row["audios"][0].endswith("#0/audios/0") for _, row in iter_shard(shard, media=True)]
    [True]
    """
    import pyarrow.compute as pc

    pf = _parquet_file(path)
    light, heavy = shard_columns(pf)
    shard = str(Path(path).resolve())
    if media:
        _TRUSTED.add(shard)
    number = 0
    if not media:  # the string columns of the whole shard in one read: no row groups to follow
        for batch in pf.read(columns=light).to_batches(max_chunksize=batch_rows):
            for row in batch.to_pylist():
                number += 1
                yield number, row
        return
    for group in range(pf.num_row_groups):
        table = pf.read_row_group(group, columns=light)
        first = number  # 0-based index of this group's first row in the shard
        counts = {}
        for name in heavy:  # one column of one row group at a time: the bytes are dropped right away
            column = pf.read_row_group(group, columns=[name]).column(0)
            lengths = pc.list_value_length(column) if _is_list(column.type) else None
            counts[name] = (
                [1 if v is not None else 0 for v in column.is_valid().to_pylist()]
                if lengths is None
                else [n or 0 for n in lengths.to_pylist()]
            )
        for batch in table.to_batches(max_chunksize=batch_rows):
            for row in batch.to_pylist():
                offset = number
                number += 1
                for name, per_row in counts.items():
                    row[name] = [cell_ref(shard, offset, name, i) for i in range(per_row[offset - first])]
                yield number, row


def _is_list(t: Any) -> bool:
    import pyarrow as pa

    return pa.types.is_list(t) or pa.types.is_large_list(t)


# ---------------------------------------------------------------- cell references

_TRUSTED: set[str] = set()  # shards this process read samples from: their references need no root check
_FILES: OrderedDict[tuple[int, str, int], Any] = OrderedDict()
_GROUPS: OrderedDict[tuple[int, str, int, int, str], Any] = OrderedDict()
_STARTS: dict[tuple[int, str, int], list[int]] = {}
_MAX_FILES, _MAX_GROUPS = 8, 2  # one row group's column kept: sequential reads of a shard hit it


def cell_ref(shard: str, row: int, column: str, index: int) -> str:
    """The reference of one media cell: ``parquet://<absolute shard path>#<row>/<column>/<index>``."""
    return f"{CELL_PREFIX}{shard}#{row}/{column}/{index}"


def is_cell_ref(value: object) -> bool:
    return isinstance(value, str) and value.startswith(CELL_PREFIX)


def parse_cell_ref(ref: str) -> tuple[str, int, str, int]:
    """``(shard, row, column, index)`` of a cell reference; a malformed one raises :class:`MediaError`."""
    body = ref[len(CELL_PREFIX) :] if is_cell_ref(ref) else ""
    shard, _, where = body.rpartition("#")
    parts = where.split("/")
    if not shard or len(parts) != 3 or not parts[0].isdigit() or not parts[2].isdigit():
        raise MediaError(ref, "malformed media cell reference; expected parquet://<shard>#<row>/<column>/<index>")
    return shard, int(parts[0]), parts[1], int(parts[2])


def check_cell_ref(ref: str, root: PathLike | None, *, allow_outside: bool = False) -> str:
    """Refuse a reference to a shard outside ``root`` unless this process read its samples from that shard.

    References come from other people's files too (a JSONL written from a shard): such a shard must lie
    under the data root like any media path.
    """
    from hba_core.media import resolve_media

    shard, *_ = parse_cell_ref(ref)
    if not shard.endswith(".parquet"):
        raise MediaError(ref, "a media cell reference must name a .parquet shard")
    if allow_outside or str(Path(shard).resolve()) in _TRUSTED:
        return ref
    if root is None:
        raise MediaError(ref, "media cell of a shard not read as samples here; give the shard as the samples")
    resolve_media(root, os.path.relpath(shard, root))  # raises when the shard escapes the root
    return ref


def _group_starts(shard: str, pf: Any) -> list[int]:
    key = (os.getpid(), shard, id(pf))
    if key not in _STARTS:
        starts, total = [], 0
        for g in range(pf.num_row_groups):
            starts.append(total)
            total += pf.metadata.row_group(g).num_rows
        starts.append(total)
        _STARTS[key] = starts
    return _STARTS[key]


def _cached_file(shard: str) -> Any:
    try:  # the modification time is in the key: a shard rewritten in place is opened afresh
        stamp = os.stat(shard).st_mtime_ns
    except OSError:
        raise MediaError(shard, "shard not found") from None
    key = (os.getpid(), shard, stamp)  # DataLoader workers fork: each process opens its own handle
    if key not in _FILES:
        if len(_FILES) >= _MAX_FILES:
            _, dropped = _FILES.popitem(last=False)
            _STARTS.pop((key[0], key[1], id(dropped)), None)
        _FILES[key] = _parquet_file(shard)
    _FILES.move_to_end(key)
    return _FILES[key]


def _cell_value(ref: str) -> Any:
    """The stored value of one cell (bytes, a ``{bytes, path}`` dict, a string or None)."""
    import bisect

    shard, row, column, index = parse_cell_ref(ref)
    try:
        pf = _cached_file(shard)
    except InputError as exc:
        raise MediaError(ref, exc.message) from None
    starts = _group_starts(shard, pf)
    if row >= starts[-1] or column not in pf.schema_arrow.names:
        raise MediaError(ref, f"no row {row} / column {column!r} in this shard ({starts[-1]} rows)")
    group = bisect.bisect_right(starts, row) - 1
    key = (os.getpid(), shard, id(pf), group, column)
    if key not in _GROUPS:
        if len(_GROUPS) >= _MAX_GROUPS:
            _GROUPS.popitem(last=False)
        _GROUPS[key] = pf.read_row_group(group, columns=[column]).column(0)
    _GROUPS.move_to_end(key)
    cell = _GROUPS[key][row - starts[group]].as_py()
    if isinstance(cell, list):
        return cell[index] if index < len(cell) else None
    return cell if index == 0 else None


def cell_contents(value: str) -> tuple[str | None, bytes | None]:
    """``(name, bytes)`` of a media value: a cell reference's stored bytes and, for ``{bytes, path}``
    cells, their path; a plain path string (a JSONL sample, a string column) gives ``(path, None)``."""
    if not is_cell_ref(value):
        return value, None
    cell = _cell_value(value)
    if isinstance(cell, dict):  # HF Audio/Image/Video features: {"bytes", "path"}
        data = cell.get("bytes")
        return cell.get("path") or None, bytes(data) if data else None
    if isinstance(cell, bytes | bytearray):
        return None, bytes(cell) if cell else None
    return (cell or None), None


def read_cell(ref: str) -> bytes:
    """The bytes of one media cell, read from its shard (the row group's column is cached).

    Raises :class:`MediaError` naming the reference when the shard, row, column or cell is not there.
    """
    _, data = cell_contents(ref)
    if not data:
        raise MediaError(ref, "empty media cell (no bytes in the shard)")
    return data


def cell_label(ref: str) -> str:
    """A short human name for messages: ``test-00000-of-00001.parquet:13 videos[0]`` (row from 1)."""
    shard, row, column, index = parse_cell_ref(ref)
    return f"{Path(shard).name}:{row + 1} {column}[{index}]"

"""Reading a samples JSONL into the truth a block of lines at a time, split over processes for large files.

The general path (:func:`hba_core.samples.iter_samples` -> :func:`~hba_core.scoring.join._build_truth`)
reads every source kind through three generators; for a plain JSONL file that is most of hba-score's
time. Here a block of lines at a time is decoded by msgspec into structs of only the fields scoring
reads (a block with any unusual line is read line by line, as before); each row's id is derived
exactly as :func:`hba_core.samples.sample_id` does (the same SHA-256 over the same identity fields)
and its dataset and gold label coded. The predictions reader
(:func:`hba_core.scoring.predictions.iter_predictions`) shares :mod:`.line_blocks`.
A file over :data:`PARALLEL_BYTES` is cut at line boundaries into byte ranges read by forked
processes, while the caller parses the predictions. Ids that repeat anywhere in the file (identical
rows without ids, which are numbered ``#2``, ``#3`` in file order, or a given id used twice) send
the caller to the general path, so the result is identical.

>>> import tempfile, pathlib, orjson
>>> p = pathlib.Path(tempfile.mkdtemp()) / "t.jsonl"
>>> _ = p.write_bytes(orjson.dumps({"dataset": "mmsd", "problem": "?", "answer": "yes", "class_label": "yes"}) + b"\\n")
>>> chunk = read_range(str(p), 0, p.stat().st_size, ())
>>> chunk.ids, chunk.lines
(['mmsd-e1737b4140ae1e7f'], 1)
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
from collections.abc import Iterable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from operator import attrgetter, methodcaller
from typing import Annotated, Any, Literal

import msgspec
import numpy as np
import orjson

from hba_core import registry
from hba_core.errors import InputError
from hba_core.samples import _IDENTITY_FIELDS
from hba_core.scoring.line_blocks import blocks, decode_lines, no_gc, whole_lines

PARALLEL_BYTES = 64 * 1024 * 1024  # below this, forking costs more than it saves


def default_workers() -> int:
    """Processes for a large truth: 2 with 4+ usable cores, else 1 (on 2 shared cores the split cost more
    CPU than it saved: docs/bench-score.md)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return 2 if cores >= 4 else 1


@dataclass
class Chunk:
    """What one byte range of the truth yields: ids (repeats not numbered: see join.start_truth), codes, counts."""

    ids: list[str]
    dataset: np.ndarray  # (n,) int16 index into registry.dataset_names()
    gold: np.ndarray  # (n,) int16 gold code, -1 for free text
    lines: int  # newline-terminated lines read (blank ones too), to number lines of later ranges
    embedded: dict[str, list[Any]] = field(default_factory=dict)
    error: tuple[int, str] | None = None  # (line within the range, message): raised by the parent

    def __getstate__(self) -> dict[str, Any]:
        """From a worker process: the ids as one string (a million small pickled strings cost ~4x more)."""
        state = dict(self.__dict__)
        joined = join_ids(self.ids)
        if joined is not None:
            state["ids"] = joined
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        ids = state["ids"]
        if ids.__class__ is str:
            state["ids"] = ids.split("\n") if ids else []
        self.__dict__.update(state)


def join_ids(ids: list[str]) -> str | None:
    """Non-empty ids as one newline-separated string (split it, "" for none), or None when an id holds a newline."""
    joined = "\n".join(ids)
    return joined if joined.count("\n") == max(len(ids) - 1, 0) else None


def _gold_codes() -> tuple[list[str], dict[str, int], set[str]]:
    names = registry.dataset_names()
    return names, {name: i for i, name in enumerate(names)}, {n for n in names if registry.dataset(n).is_free_text}


_LEAN_FIELDS = ("id", "dataset", "class_label", "answer")  # what a row with an id is read for
_identity = attrgetter(*_IDENTITY_FIELDS)  # the values samples.sample_id hashes, in its order
_dataset_label = attrgetter("dataset", "class_label")  # the key of a row's (dataset, gold) codes
_NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]


def _row_types(pred_fields: tuple[str, ...], names: list[str]) -> tuple[type, type, type, type, list[str]]:
    """Structs of only the fields scoring reads (msgspec skips the rest unbuilt), and attributes of --pred-field.

    (lean, full): any line, with and without an id; a field absent from a line reads as None, as
    ``row.get`` did. (with_id, without_id): the same fields typed as a clean block has them (a
    non-empty string id, or none; a known dataset; a string or null label), so msgspec checks them in C.
    """
    known = set(_LEAN_FIELDS) | set(_IDENTITY_FIELDS)
    extra = [f for f in dict.fromkeys(pred_fields) if f not in known]
    rename = {f"pred_{i}": f for i, f in enumerate(extra)}
    attrs = {f: f for f in known} | {f: a for a, f in rename.items()}
    typed = {"id": _NonEmpty, "dataset": Literal[tuple(names)], "class_label": str | None}  # type: ignore[valid-type]

    def struct(fields: Iterable[str], clean: bool, id_type: Any = Any) -> type:
        specs: list[tuple[str, Any, Any]] = [
            (f, (id_type if f == "id" else typed.get(f, Any)) if clean else Any, None) for f in dict.fromkeys(fields)
        ]
        if clean and id_type is _NonEmpty:
            specs[0] = ("id", _NonEmpty)  # required
            specs[1] = ("dataset", typed["dataset"])
            specs.sort(key=lambda spec: len(spec) == 3)  # required fields first
        specs += [(a, Any, None) for a in rename]
        return msgspec.defstruct("TruthRow", specs, rename=rename, gc=False)  # JSON values hold no cycles

    lean_fields = [*_LEAN_FIELDS, *(f for f in pred_fields if f in known)]
    full_fields = [*_LEAN_FIELDS, *_IDENTITY_FIELDS]
    return (
        struct(lean_fields, False),
        struct(full_fields, False),
        struct(lean_fields, True, _NonEmpty),
        struct(full_fields, True, None),
        [attrs[f] for f in pred_fields],
    )


class _Reader:
    """The state of one byte range being read: ids, codes and counts so far, and the line number."""

    def __init__(self, pred_fields: tuple[str, ...]):
        self.names, self.position, self.free = _gold_codes()
        self.pred_fields = pred_fields
        self.lean, self.full, self.with_id, self.without_id, self.pred_attrs = _row_types(pred_fields, self.names)
        self.decode, self.decode_full = msgspec.json.Decoder(self.lean).decode, msgspec.json.Decoder(self.full).decode
        self.block_decoders = [msgspec.json.Decoder(self.with_id), msgspec.json.Decoder(self.without_id)]
        self.order = [0, 1]  # which of block_decoders to try first
        self.ids: list[str] = []
        self.datasets: list[int] = []
        self.gold: list[int] = []
        self.embedded: dict[str, list[Any]] = {f: [] for f in pred_fields}
        self.cache: dict[tuple[Any, ...], tuple[int, int]] = {}  # (dataset, label[, answer]) -> codes
        self.number = 0

    def block(self, data: bytes | bytearray) -> bool:
        """Read whole lines of a clean block in a few C calls; False (nothing taken) when any line is not."""
        lines = whole_lines(data)
        if lines is None:
            return False
        for k in self.order:  # the kind of the previous block first: a file is almost always one kind
            rows = decode_lines(self.block_decoders[k], data, lines)
            if rows is None:
                continue  # a bad line, an id of another kind, an unknown dataset: line by line
            codes = list(map(self.cache.get, map(_dataset_label, rows)))  # C-level: no frame per row
            if None in codes and not self._fill(rows, codes):
                return False
            dataset = [c[0] for c in codes]  # type: ignore[index]
            # derived ids are not numbered here: a repeat makes the whole file's ids collide, and the
            # caller then reads it the general way, which numbers #2, #3 (see join.start_truth)
            self.ids += [r.id for r in rows] if k == 0 else derived_ids(rows, dataset)
            self.datasets += dataset
            self.gold += [c[1] for c in codes]  # type: ignore[index]
            for f, a in zip(self.pred_fields, self.pred_attrs):
                self.embedded[f] += map(attrgetter(a), rows)
            self.number += len(rows)
            if k != self.order[0]:
                self.order.reverse()
            return True
        return False

    def _fill(self, rows: list[Any], codes: list[tuple[int, int] | None]) -> bool:
        """Codes of (dataset, string label) pairs not seen yet; False when a row needs the line-by-line path."""
        from hba_core.scoring.join import _gold_code

        for j in [j for j, c in enumerate(codes) if c is None]:
            r = rows[j]
            if r.class_label is None and r.dataset not in self.free:
                return False  # the gold is in the answer: keyed by it, line by line
            key = (r.dataset, r.class_label)
            if key not in self.cache:
                try:
                    code = _gold_code({"class_label": r.class_label}, registry.dataset(r.dataset), "")
                except InputError:
                    return False  # reported with its line number by the line-by-line path
                self.cache[key] = (self.position[r.dataset], code)
            codes[j] = self.cache[key]
        return True

    def line(self, raw: bytes) -> tuple[int, str] | None:
        """Read one line (the general path: any line); an error as (line within the range, message)."""
        from hba_core.scoring.join import _gold_code

        self.number += 1
        number = self.number
        try:
            if not raw.isascii():
                raw.decode()  # msgspec skips unread fields without checking their UTF-8; orjson did
            r = self.decode(raw)
        except Exception:  # not JSON, not an object, or what only msgspec rejects: orjson decides, as before
            try:
                row = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                return None if not raw.strip() else (number, f"not valid JSON ({exc})")
            if row.__class__ is not dict:
                return number, f"expected a JSON object, got {type(row).__name__}"
            r = msgspec.convert(row, self.full)
        sid = r.id
        if sid is not None and sid.__class__ is not str:
            return number, f"'id' must be a string, got {sid!r}; quote it, or drop it to derive one"
        if not sid and r.__class__ is self.lean:
            r = self.decode_full(raw)
        name, label = r.dataset, r.class_label
        key = (name, label) if label.__class__ is str or name in self.free else (name, None, r.answer)
        known = self.cache.get(key)
        if known is None:
            if name not in self.position:
                return number, f"unknown dataset {name!r}; valid: {', '.join(self.names)}"
            try:
                code = _gold_code({"class_label": label, "answer": r.answer}, registry.dataset(name), "")
            except InputError as exc:
                return number, exc.message
            known = self.cache[key] = (self.position[name], code)
        if not sid:
            # as hba_core.samples.sample_id: compact JSON array of the identity fields, SHA-256, 16 hex
            sid = f"{name}-{hashlib.sha256(orjson.dumps(_identity(r))).hexdigest()[:16]}"
        self.ids.append(sid)
        self.datasets.append(known[0])
        self.gold.append(known[1])
        for f, a in zip(self.pred_fields, self.pred_attrs):
            self.embedded[f].append(getattr(r, a))
        return None

    def chunk(self, error: tuple[int, str] | None = None) -> Chunk:
        if error is not None:
            return Chunk(self.ids, np.array([]), np.array([]), self.number, error=error)
        dataset, gold = np.array(self.datasets, dtype=np.int16), np.array(self.gold, dtype=np.int16)
        return Chunk(self.ids, dataset, gold, self.number, self.embedded, None)


_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_digest = methodcaller("digest")


def derived_ids(rows: list[Any], dataset: list[int]) -> list[str]:
    """:func:`hba_core.samples.sample_id` of rows without ids (structs with the identity fields; ``dataset``:
    their codes in ``registry.dataset_names()``), hashed in one C-level pass and spelled out vectorised.

    >>> from types import SimpleNamespace as Row
    >>> from hba_core.samples import sample_id
    >>> row = {"dataset": "mmsd", "problem": "?", "answer": "yes", "images": [], "videos": ["v.mp4"]}
    >>> struct = Row(**(dict.fromkeys(_IDENTITY_FIELDS) | row))
    >>> derived_ids([struct], [registry.dataset_names().index("mmsd")]) == [sample_id(row)]
    True
    """
    n = len(rows)
    if not n:
        return []
    digests = b"".join(map(_digest, map(hashlib.sha256, map(orjson.dumps, map(_identity, rows)))))
    head = np.frombuffer(digests, dtype=np.uint8).reshape(n, 32)[:, :8]  # 16 hex digits
    prefixes = _prefixes()
    width = prefixes.shape[1]
    out = np.zeros((n, width + 17), dtype=np.uint8)  # "<dataset>-" NUL-padded, 16 hex digits, "\n"
    out[:, :width] = prefixes[np.asarray(dataset, dtype=np.intp)]
    out[:, width : width + 16 : 2] = _HEX[head >> 4]
    out[:, width + 1 : width + 16 : 2] = _HEX[head & 15]
    out[:, -1] = 10
    return out.tobytes().replace(b"\0", b"").decode().split("\n")[:-1]


@functools.cache
def _prefixes() -> np.ndarray:
    """``"<dataset>-"`` of every registry dataset as NUL-padded bytes, a row per dataset code."""
    names = [f"{name}-".encode() for name in registry.dataset_names()]
    table = np.zeros((len(names), max(map(len, names))), dtype=np.uint8)
    for i, name in enumerate(names):
        table[i, : len(name)] = np.frombuffer(name, dtype=np.uint8)
    return table


def read_range(path: str, start: int, end: int, pred_fields: tuple[str, ...]) -> Chunk:
    """Read the lines that start in ``[start, end)`` of ``path`` (``start`` on a line boundary).

    A block of clean lines is decoded by msgspec in one call into structs of just the fields scoring
    needs (several times cheaper than building each row); a block with anything else (a blank or bad
    line, a repeat, mixed ids) is read line by line, where a line msgspec rejects goes through orjson
    as before, so bad lines fail with the same messages. Errors are returned, not raised, so that a
    worker process can hand them back with a line number the parent makes absolute.
    """
    reader = _Reader(pred_fields)
    with open(path, "rb") as fh, no_gc():
        for data in blocks(fh, start, end):
            if reader.block(data):
                continue
            for raw in io.BytesIO(data):
                error = reader.line(raw)
                if error is not None:
                    return reader.chunk(error)
    return reader.chunk()


def _ranges(path: str, parts: int) -> list[tuple[int, int]]:
    """``parts`` byte ranges of the file, each starting right after a newline."""
    size = os.path.getsize(path)
    cuts = [0]
    with open(path, "rb") as fh:
        for k in range(1, parts):
            fh.seek(max(cuts[-1], size * k // parts))
            fh.readline()  # to the end of the line the cut fell in
            cuts.append(min(fh.tell(), size))
    cuts.append(size)
    return [(a, b) for a, b in zip(cuts, cuts[1:]) if b > a] or [(0, 0)]


def parts_for(path: str, workers: int | None = None) -> int:
    """How many byte ranges (processes) read this plain JSONL truth: 1 below :data:`PARALLEL_BYTES`."""
    return (workers or default_workers()) if os.path.getsize(path) >= PARALLEL_BYTES else 1


class TruthJob:
    """The truth of a plain JSONL file being read (in worker processes when large): :meth:`result` joins it."""

    def __init__(self, path: str, pred_fields: tuple[str, ...], workers: int | None = None):
        self.path, self.pred_fields = path, pred_fields
        parts = parts_for(path, workers)
        self.pool: ProcessPoolExecutor | None = None
        ranges = _ranges(path, max(1, parts))
        if len(ranges) > 1:
            # fork: the workers inherit the loaded registry; hba-score never loads torch or threads of its own
            self.pool = ProcessPoolExecutor(len(ranges), mp_context=get_context("fork"))
            self.futures: list[Future[Chunk]] = [
                self.pool.submit(read_range, path, a, b, pred_fields) for a, b in ranges
            ]
        else:
            self.chunks = [read_range(path, *ranges[0], pred_fields)]

    def result(self) -> tuple[list[str], np.ndarray, np.ndarray, dict[str, list[Any]]]:
        """(ids, dataset codes, gold codes, embedded fields) of the whole file; bad input raises InputError.

        The ids may repeat: identical rows without ids are numbered ``#2``, ``#3`` over the whole file
        only by the general path, which the caller takes when they do (rare: duplicated lines).
        """
        if self.pool is not None:
            try:
                self.chunks = [f.result() for f in self.futures]
            finally:
                self.pool.shutdown()
        ids: list[str] = []
        offset = 0
        for chunk in self.chunks:
            if chunk.error is not None:
                raise InputError(f"{self.path}:{offset + chunk.error[0]}", chunk.error[1])
            ids += chunk.ids
            offset += chunk.lines
        if not self.chunks or not ids:
            return [], np.zeros(0, np.int16), np.zeros(0, np.int16), {f: [] for f in self.pred_fields}
        dataset = np.concatenate([c.dataset for c in self.chunks])
        gold = np.concatenate([c.gold for c in self.chunks])
        embedded = {f: [v for c in self.chunks for v in c.embedded[f]] for f in self.pred_fields}
        return ids, dataset, gold, embedded

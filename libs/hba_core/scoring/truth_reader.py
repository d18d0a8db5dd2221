"""Reading a samples JSONL into the truth in one lean pass, split over processes for large files.

The general path (:func:`hba_core.samples.iter_samples` -> :func:`~hba_core.scoring.join._build_truth`)
reads every source kind through three generators; for a plain JSONL file that is most of hba-score's
time. Here one loop parses a line, derives its id exactly as :func:`hba_core.samples.sample_id` does
(the same SHA-256 over the same identity fields; repeats numbered ``#2``, ``#3`` in file order) and
codes its dataset and gold label. A file over :data:`PARALLEL_BYTES` is cut at line boundaries into
byte ranges read by forked processes, while the caller parses the predictions; the parent numbers
repeats that span ranges and checks ids are unique over the whole file, so the result is identical.

>>> import tempfile, pathlib, orjson
>>> p = pathlib.Path(tempfile.mkdtemp()) / "t.jsonl"
>>> _ = p.write_bytes(orjson.dumps({"dataset": "mmsd", "problem": "?", "answer": "yes", "class_label": "yes"}) + b"\\n")
>>> chunk = read_range(str(p), 0, p.stat().st_size, ())
>>> chunk.ids, chunk.lines
(['mmsd-e1737b4140ae1e7f'], 1)
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from typing import Any

import numpy as np
import orjson

from hba_core import registry
from hba_core.errors import InputError
from hba_core.samples import _IDENTITY_FIELDS

PARALLEL_BYTES = 64 * 1024 * 1024  # below this, forking costs more than it saves


def default_workers() -> int:
    """Processes for a large truth: 2 with 4+ usable cores, else 1 (on 2 shared cores the split cost more
    CPU than it saved: docs/bench-score.md)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return 2 if cores >= 4 else 1


@dataclass
class Chunk:
    """What one byte range of the truth yields: ids (derived ones un-numbered across ranges), codes, counts."""

    ids: list[str]
    dataset: np.ndarray  # (n,) int16 index into registry.dataset_names()
    gold: np.ndarray  # (n,) int16 gold code, -1 for free text
    lines: int  # newline-terminated lines read (blank ones too), to number lines of later ranges
    derived: dict[str, int] = field(default_factory=dict)  # derived base id -> times seen in this range
    embedded: dict[str, list[Any]] = field(default_factory=dict)
    error: tuple[int, str] | None = None  # (line within the range, message): raised by the parent


def _gold_codes() -> tuple[list[str], dict[str, int], set[str]]:
    names = registry.dataset_names()
    return names, {name: i for i, name in enumerate(names)}, {n for n in names if registry.dataset(n).is_free_text}


def read_range(path: str, start: int, end: int, pred_fields: tuple[str, ...]) -> Chunk:
    """Read the lines that start in ``[start, end)`` of ``path`` (``start`` on a line boundary).

    Errors are returned, not raised, so that a worker process can hand them back with a line number
    the parent makes absolute.
    """
    from hba_core.scoring.join import _gold_code

    names, position, free = _gold_codes()
    loads, dumps, sha256 = orjson.loads, orjson.dumps, hashlib.sha256
    fields = _IDENTITY_FIELDS
    ids: list[str] = []
    datasets: list[int] = []
    gold: list[int] = []
    embedded: dict[str, list[Any]] = {f: [] for f in pred_fields}
    derived: dict[str, int] = {}
    cache: dict[tuple[Any, ...], tuple[int, int]] = {}
    add_id, add_dataset, add_gold = ids.append, datasets.append, gold.append
    number = 0
    with open(path, "rb") as fh:
        fh.seek(start)
        remaining = end - start
        for raw in fh:  # the hot loop of a 1 M-line truth: one parse, one hash, a few dict lookups
            if remaining <= 0:
                break
            remaining -= len(raw)
            number += 1
            try:
                row = loads(raw)
            except orjson.JSONDecodeError as exc:
                if not raw.strip():
                    continue
                return Chunk(ids, np.array([]), np.array([]), number, error=(number, f"not valid JSON ({exc})"))
            if row.__class__ is not dict:
                message = f"expected a JSON object, got {type(row).__name__}"
                return Chunk(ids, np.array([]), np.array([]), number, error=(number, message))
            get = row.get
            sid = get("id")
            if sid is not None and sid.__class__ is not str:
                message = f"'id' must be a string, got {sid!r}; quote it, or drop it to derive one"
                return Chunk(ids, np.array([]), np.array([]), number, error=(number, message))
            name, label = get("dataset"), get("class_label")
            key = (name, label) if label.__class__ is str or name in free else (name, None, get("answer"))
            known = cache.get(key)
            if known is None:
                if name not in position:
                    message = f"unknown dataset {name!r}; valid: {', '.join(names)}"
                    return Chunk(ids, np.array([]), np.array([]), number, error=(number, message))
                try:
                    code = _gold_code(row, registry.dataset(name), "")
                except InputError as exc:
                    return Chunk(ids, np.array([]), np.array([]), number, error=(number, exc.message))
                known = cache[key] = (position[name], code)
            if not sid:
                # as hba_core.samples.sample_id: compact JSON array of the identity fields, SHA-256, 16 hex
                sid = f"{get('dataset', 'unknown')}-{sha256(dumps([get(f) for f in fields])).hexdigest()[:16]}"
                seen = derived.get(sid)
                derived[sid] = 1 if seen is None else seen + 1
                if seen is not None:
                    sid = f"{sid}#{seen + 1}"
            add_id(sid)
            add_dataset(known[0])
            add_gold(known[1])
            for f in pred_fields:
                embedded[f].append(get(f))
    return Chunk(
        ids, np.array(datasets, dtype=np.int16), np.array(gold, dtype=np.int16), number, derived, embedded, None
    )


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

    def result(self) -> tuple[list[str], np.ndarray, np.ndarray, dict[str, list[Any]]] | None:
        """(ids, dataset codes, gold codes, embedded fields) of the whole file; bad input raises InputError.

        None when identical rows without ids fall in different ranges: their ``#n`` numbering runs
        over the whole file, and the caller then reads it the general way (rare: duplicated lines).
        """
        if self.pool is not None:
            try:
                self.chunks = [f.result() for f in self.futures]
            finally:
                self.pool.shutdown()
        ids: list[str] = []
        offset = 0
        earlier: set[str] = set()
        for chunk in self.chunks:
            if chunk.error is not None:
                raise InputError(f"{self.path}:{offset + chunk.error[0]}", chunk.error[1])
            if not earlier.isdisjoint(chunk.derived):
                return None
            earlier.update(chunk.derived)
            ids += chunk.ids
            offset += chunk.lines
        if not self.chunks or not ids:
            return [], np.zeros(0, np.int16), np.zeros(0, np.int16), {f: [] for f in self.pred_fields}
        dataset = np.concatenate([c.dataset for c in self.chunks])
        gold = np.concatenate([c.gold for c in self.chunks])
        embedded = {f: [v for c in self.chunks for v in c.embedded[f]] for f in self.pred_fields}
        return ids, dataset, gold, embedded

"""Joining truth and predictions by sample id, counting every problem on the way in (judgments: :mod:`.judgments`).

No input disappears: every truth sample is in its dataset's denominator (a missing prediction or
judgment counts as wrong), and every prediction line is either matched or counted as a duplicate,
an unknown id or an invalid line. ``strict=True`` turns each of those into an :class:`InputError`.

>>> from hba_core.fixtures.atlas import fixture_sample
>>> truth_from_rows([fixture_sample("mmsd", i, "test", video=None, audio=None) for i in range(2)]).gold.tolist()
[0, 1]
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from hba_core import registry
from hba_core.errors import InputError
from hba_core.jsonl import PathLike, display_name
from hba_core.samples import iter_samples, sample_id
from hba_core.scoring.truth_cache import TruthEntry
from hba_core.scoring.truth_reader import TruthJob

MAX_PROBLEMS = 20
JUDGE_STATUSES = ("ok", "unparseable", "error", "skipped")
_J_NONE, _J_TRUE, _J_FALSE = 0, 1, 2  # then 3.. = the non-ok statuses in JUDGE_STATUSES order


class Truth:
    """Ground truth, one entry per sample in file order: ids (unique), dataset index, gold label code (-1: free text).

    ``index`` (id -> position) is built on first use: predictions in the truth's order are matched
    without it, and a million-entry dict costs half a second.
    """

    def __init__(
        self,
        path: str,
        ids: list[str],
        index: dict[str, int] | None,
        dataset: np.ndarray,
        gold: np.ndarray,
        names: list[str] | None = None,
        embedded: dict[str, list[Any]] | None = None,
        cached: bool = False,
    ):
        self.path, self.ids, self._index = path, ids, index
        self.cached = cached  # ids and labels came from the truth cache (hba_core.scoring.truth_cache)
        self.dataset, self.gold = dataset, gold  # (N,) index into ``names``; (N,) label code, -1 free text
        self.names = registry.dataset_names() if names is None else names
        self.embedded = {} if embedded is None else embedded  # --pred-field name -> value per sample

    @property
    def index(self) -> dict[str, int]:
        if self._index is None:
            self._index = dict(zip(self.ids, range(len(self.ids))))
        return self._index


@dataclass
class Predictions:
    """One model's predictions aligned to the truth (None where missing) and how each line was counted."""

    name: str
    source: str
    texts: list[Any]
    present: np.ndarray  # (N,) bool
    counts: dict[str, int]
    problems: list[str]
    judgments: np.ndarray | None = None  # (N,) judgment code, or None when no judgments were given
    judgment_counts: dict[str, int] | None = None
    models_named: frozenset[str] = frozenset()  # distinct "model" fields of the rows (hba-predict writes one)
    without_field: int = 0  # rows with an id but no "prediction" key at all (counted as invalid)
    fields_seen: frozenset[str] = frozenset()  # the keys of those rows, to name the field the file uses instead


def _problem(where: str, message: str, problems: list[str], counts: dict[str, int], key: str, strict: bool) -> None:
    counts[key] += 1
    if strict:
        raise InputError(where, f"{message} (--strict)")
    if len(problems) < MAX_PROBLEMS:
        problems.append(f"{where}: {message}")


def _gold_code(row: dict[str, Any], ds: registry.Dataset, where: str) -> int:
    if ds.is_free_text:
        return -1
    label = row.get("class_label") if isinstance(row.get("class_label"), str) else row.get("answer")
    canonical = registry.canonical_label(label, ds.name) if isinstance(label, str) else None
    if canonical is None:
        raise InputError(where, f"gold label {label!r} is not a {ds.name} label; valid: {', '.join(ds.labels)}")
    return ds.labels.index(canonical)


def _numbered(rows: Iterable[tuple[int, dict[str, Any]] | dict[str, Any]]) -> Iterable[tuple[int, dict[str, Any]]]:
    for number, item in enumerate(rows, start=1):
        yield item if isinstance(item, tuple) else (number, item)


def truth_from_rows(
    rows: Iterable[tuple[int, dict[str, Any]] | dict[str, Any]], path: str = "<rows>", pred_fields: tuple[str, ...] = ()
) -> Truth:
    """Build the truth from sample rows (or ``(line, row)`` pairs); ids as :func:`hba_core.samples.sample_id`.

    Rows straight from :func:`hba_core.samples.iter_samples` already carry their (derived) ids.
    """
    return _build_truth(_numbered(rows), path, pred_fields)


def _build_truth(rows: Iterable[tuple[int, dict[str, Any]]], path: str, pred_fields: tuple[str, ...]) -> Truth:
    names = registry.dataset_names()
    position = {name: i for i, name in enumerate(names)}
    free = {name for name in names if registry.dataset(name).is_free_text}
    index: dict[str, int] = {}
    datasets: list[int] = []
    gold: list[int] = []
    embedded: dict[str, list[Any]] = {f: [] for f in pred_fields}
    cache: dict[tuple[Any, ...], tuple[int, int]] = {}  # (dataset, label[, answer]) -> (dataset index, gold code)
    add_dataset, add_gold = datasets.append, gold.append
    n = 0
    for line, row in rows:  # the hot loop of a 1 M-line truth: keep it lean
        get = row.get
        name, label = get("dataset"), get("class_label")
        key = (name, label) if label.__class__ is str or name in free else (name, None, get("answer"))
        known = cache.get(key)
        if known is None:
            if name not in position:
                raise InputError(f"{path}:{line}", f"unknown dataset {name!r}; valid: {', '.join(names)}")
            known = cache[key] = (position[name], _gold_code(row, registry.dataset(name), f"{path}:{line}"))
        sid = get("id")
        if not (sid.__class__ is str and sid):
            sid = sample_id(row)
        if sid in index:
            raise InputError(
                f"{path}:{line}", f"sample id {sid!r} repeats sample {index[sid] + 1} of the truth; ids must be unique"
            )
        index[sid] = n
        n += 1
        add_dataset(known[0])
        add_gold(known[1])
        for f in pred_fields:
            embedded[f].append(get(f))
    return Truth(
        path, list(index), index, np.array(datasets, dtype=np.int16), np.array(gold, dtype=np.int16), names, embedded
    )


def _plain_jsonl(path: PathLike) -> bool:
    """A regular uncompressed JSONL file: what :mod:`.truth_reader` reads in one pass (and in byte ranges)."""
    name = str(path)
    return name != "-" and not name.endswith((".gz", ".parquet")) and os.path.isfile(name)


def _unique(ids: list[str]) -> bool:
    """Whether no id repeats: their hashes sorted (3x cheaper than a set of a million new strings, and the
    hashes stay cached on the strings for the index), a set only when two hashes are equal."""
    hashes = np.fromiter(map(hash, ids), np.int64, len(ids))
    hashes.sort()
    return not (hashes[1:] == hashes[:-1]).any() or len(set(ids)) == len(ids)


def start_truth(
    path: PathLike, pred_fields: tuple[str, ...] = (), workers: int | None = None, cache: bool = True
) -> Callable[[], Truth]:
    """Begin reading the truth (in worker processes when the file is large); call the result to get it.

    Meanwhile the caller can parse predictions: hba-score reads truth and predictions in parallel.
    ``cache``: read and keep a large plain-JSONL truth's arrays in :mod:`.truth_cache`.
    """
    shown = display_name(path)
    if not _plain_jsonl(path):
        return lambda: _build_truth(iter_samples(path), shown, pred_fields)
    entry = TruthEntry.of(str(path)) if cache and not pred_fields else None
    stored = entry.load() if entry is not None else None
    if stored is not None:
        ids, dataset, gold = stored
        return lambda: Truth(shown, ids, None, dataset, gold, cached=True)  # unique: checked before it was stored
    job = TruthJob(str(path), pred_fields, workers)

    def finish() -> Truth:
        ids, dataset, gold, embedded = job.result()
        if _unique(ids):
            truth = Truth(shown, ids, None, dataset, gold, registry.dataset_names(), embedded)
        else:
            # repeated ids: the general path numbers repeated content #2, #3 in file order, or names the
            # line whose given id repeats another
            truth = _build_truth(iter_samples(path), shown, pred_fields)
        if entry is not None:
            entry.store(truth.ids, truth.dataset, truth.gold)
        return truth

    return finish


def load_truth(path: PathLike, pred_fields: tuple[str, ...] = ()) -> Truth:
    """Read an HBA samples source (official release files unchanged); bad lines are errors naming file:line."""
    return start_truth(path, pred_fields)()

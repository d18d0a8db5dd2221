"""Joining truth and predictions by sample id, counting every problem on the way in (judgments: :mod:`.judgments`).

No input disappears: every truth sample is in its dataset's denominator (a missing prediction or
judgment counts as wrong), and every prediction line is either matched or counted as a duplicate,
an unknown id or an invalid line. ``strict=True`` turns each of those into an :class:`InputError`.

>>> from hba_core.fixtures.atlas import fixture_sample
>>> truth = truth_from_rows([fixture_sample("mmsd", i, "test", video=None, audio=None) for i in range(2)])
>>> predictions_from_rows("m", [{"id": truth.ids[0], "prediction": "yes"}], truth).counts["missing"]
1
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hba_core import registry
from hba_core.errors import HbaError, InputError
from hba_core.jsonl import LineError, PathLike, display_name, iter_jsonl
from hba_core.samples import iter_samples, sample_id
from hba_core.scoring.truth_reader import TruthJob, parts_for

MAX_PROBLEMS = 20
JUDGE_STATUSES = ("ok", "unparseable", "error", "skipped")
_J_NONE, _J_TRUE, _J_FALSE = 0, 1, 2  # then 3.. = the non-ok statuses in JUDGE_STATUSES order


@dataclass
class Truth:
    """Ground truth, one entry per sample in file order: ids, dataset index, gold label code (-1: free text)."""

    path: str
    ids: list[str]
    index: dict[str, int]
    dataset: np.ndarray  # (N,) index into ``names``
    gold: np.ndarray  # (N,) index into the dataset's labels; -1 for free-text datasets
    names: list[str] = field(default_factory=lambda: registry.dataset_names())
    embedded: dict[str, list[Any]] = field(default_factory=dict)  # --pred-field name -> value per sample


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


def start_truth(path: PathLike, pred_fields: tuple[str, ...] = (), workers: int | None = None) -> Callable[[], Truth]:
    """Begin reading the truth (in worker processes when the file is large); call the result to get it.

    Meanwhile the caller can parse predictions: hba-score reads truth and predictions in parallel.
    """
    shown = display_name(path)
    if not _plain_jsonl(path):
        return lambda: _build_truth(iter_samples(path), shown, pred_fields)
    job = TruthJob(str(path), pred_fields, workers)

    def finish() -> Truth:
        got = job.result()
        if got is not None:
            ids, dataset, gold, embedded = got
            index = dict(zip(ids, range(len(ids))))
            if len(index) == len(ids):
                return Truth(shown, ids, index, dataset, gold, registry.dataset_names(), embedded)
        return _build_truth(iter_samples(path), shown, pred_fields)  # repeats: the general path names the lines

    return finish


def load_truth(path: PathLike, pred_fields: tuple[str, ...] = ()) -> Truth:
    """Read an HBA samples source (official release files unchanged); bad lines are errors naming file:line."""
    return start_truth(path, pred_fields)()


def _new_counts() -> dict[str, int]:
    return dict.fromkeys(("lines", "matched", "missing", "duplicate", "unknown_id", "invalid"), 0)


def predictions_from_rows(
    name: str,
    rows: Iterable[tuple[int, dict[str, Any]] | dict[str, Any]],
    truth: Truth,
    *,
    source: str = "<rows>",
    strict: bool = False,
    bad_lines: list[LineError] | None = None,
) -> Predictions:
    """Align ``{"id", "prediction"}`` rows (or ``(line, row)`` pairs) to the truth, counting every problem.

    A duplicate id keeps its first prediction; ids not in the truth, rows without an id and
    non-string predictions are counted (and listed, up to 20); ``bad_lines`` (filled while ``rows``
    is consumed, e.g. by :func:`iter_jsonl`) count as invalid.
    """
    return _align(name, _numbered(rows), truth, source, strict, bad_lines)


def _align(
    name: str,
    rows: Iterable[tuple[int, dict[str, Any]]],
    truth: Truth,
    source: str,
    strict: bool,
    bad_lines: list[LineError] | None,
    subset: bool = False,
) -> Predictions:
    counts, problems = _new_counts(), []
    texts: list[Any] = [None] * len(truth.ids)
    present = bytearray(len(truth.ids))  # a bytearray: item access is far cheaper than on a numpy array
    index = truth.index
    lines = without_field = 0
    named: set[Any] = set()
    seen_keys: set[str] = set()
    for line, row in rows:  # the hot loop of 1 M predictions: keep it lean
        lines += 1
        model = row.get("model")
        if model is not None:
            named.add(model)
        sid = row.get("id")
        if not (sid.__class__ is str and sid) and isinstance(row.get("dataset"), str):
            sid = sample_id(row)  # a samples-shaped row without id: derive it as everywhere else
        text = row.get("prediction")
        if text is None and "prediction" not in row and sid.__class__ is str and sid:
            without_field += 1
            if len(seen_keys) < 20:
                seen_keys.update(k for k in row if k != "id")
            _problem(
                f"{source}:{line}",
                'no "prediction" field (null means "nothing produced"; a missing field is not an answer)',
                problems,
                counts,
                "invalid",
                strict,
            )
            continue
        if not (sid.__class__ is str and sid):
            _problem(
                f"{source}:{line}",
                'no "id" (a non-empty string): add the sample id',
                problems,
                counts,
                "invalid",
                strict,
            )
            continue
        if text is not None and text.__class__ is not str:
            _problem(
                f"{source}:{line}",
                f'"prediction" must be a string or null, got {type(text).__name__}',
                problems,
                counts,
                "invalid",
                strict,
            )
            continue
        i = index.get(sid)
        if i is None and subset:
            counts["unknown_id"] += 1  # the truth is a cut on purpose: counted and summarised, not listed
        elif i is None:
            _problem(
                f"{source}:{line}",
                f"id {sid!r} is not in the truth {truth.path}",
                problems,
                counts,
                "unknown_id",
                strict,
            )
        elif present[i]:
            _problem(
                f"{source}:{line}",
                f"duplicate prediction for {sid!r}" + ("" if strict else " (the first one is kept)"),
                problems,
                counts,
                "duplicate",
                strict,
            )
        else:
            present[i] = 1
            texts[i] = text
    for err in bad_lines or []:
        _problem(f"{err.path}:{err.line}", err.message, problems, counts, "invalid", strict)
    mask = np.frombuffer(bytes(present), dtype=np.uint8).astype(bool)
    counts["lines"] = lines
    counts["matched"] = int(mask.sum())
    counts["missing"] = len(truth.ids) - counts["matched"]
    if strict and counts["missing"]:
        first = truth.ids[int(np.flatnonzero(~mask)[0])]
        raise InputError(source, f"{counts['missing']} truth samples have no prediction (first: {first!r}) (--strict)")
    return Predictions(
        name,
        source,
        texts,
        mask,
        counts,
        problems,
        models_named=frozenset(m for m in named if isinstance(m, str)),
        without_field=without_field,
        fields_seen=frozenset(seen_keys),
    )


def load_predictions(path: PathLike, name: str, truth: Truth, strict: bool = False) -> Predictions:
    """Stream a predictions JSONL (``-`` is stdin) and align it to the truth.

    A file that cannot be meant for this truth is an error, not a table of zeros: an empty file, a
    file in which no row has the ``prediction`` field, a file whose ids match no truth sample.
    """
    bad: list[LineError] = []
    rows = iter_jsonl(path, None if strict else bad)
    preds = _align(name, rows, truth, display_name(path), strict, bad)
    check_usable(preds, truth)
    return preds


def load_all(
    truth_path: PathLike,
    files: list[tuple[PathLike, str]],
    strict: bool = False,
    pred_fields: tuple[str, ...] = (),
    subset: bool = False,
    workers: int | None = None,
) -> tuple[Truth, list[Predictions]]:
    """The truth and each ``(path, name)`` predictions file, parsed in parallel when the truth is large.

    Predictions are parsed while worker processes read the truth, then aligned as :func:`load_predictions`.
    ``workers``: processes for a large plain-JSONL truth (default by usable cores, see
    :func:`~hba_core.scoring.truth_reader.default_workers`). ``subset=True``: the truth is a subset of
    what was predicted on purpose (a cut test set), so predictions for other ids are only counted
    (``unknown_id``), not listed nor, with ``strict``, errors.
    """
    pending = start_truth(truth_path, pred_fields, workers)
    parallel = _plain_jsonl(truth_path) and parts_for(str(truth_path), workers) > 1
    parsed: list[tuple[PathLike, str, Iterable[tuple[int, dict[str, Any]]], list[LineError]]] = []
    for path, name in files:
        bad: list[LineError] = []
        rows = iter_jsonl(path, None if strict else bad)
        if parallel:  # parse now, while the workers read the truth; else stream (a list of 1 M dicts costs GC time)
            gc.disable()  # rows kept alive only grow the heap: no cycles to find
            try:
                rows = list(rows)  # type: ignore[assignment]
            finally:
                gc.enable()
        parsed.append((path, name, rows, bad))
    truth = pending()
    models = []
    for path, name, rows, bad in parsed:
        preds = _align(name, rows, truth, display_name(path), strict, bad, subset)
        check_usable(preds, truth)
        models.append(preds)
    return truth, models


def check_usable(preds: Predictions, truth: Truth) -> None:
    """Raise :class:`InputError` when a predictions file cannot be for this truth (see :func:`load_predictions`)."""
    c = preds.counts
    if c["lines"] == 0 and not c["invalid"]:
        raise InputError(preds.source, "no predictions: the file is empty")
    if preds.without_field and preds.without_field == c["lines"]:
        others = ", ".join(sorted(preds.fields_seen)) or "none"
        raise InputError(
            preds.source,
            f'no row has a "prediction" field (the rows have: {others}); rename the answer field to "prediction"',
        )
    if truth.ids and c["matched"] == 0:
        raise InputError(
            preds.source,
            f"no prediction matches a sample of {truth.path} ({c['lines']} lines: {c['unknown_id']} unknown ids, "
            f"{c['invalid']} invalid); are these predictions for this truth file?",
        )


def embedded_predictions(truth: Truth, field_name: str) -> Predictions:
    """Predictions stored in the samples file itself under ``field_name`` (``--pred-field``)."""
    values = truth.embedded[field_name]
    present = np.array([v is not None for v in values], dtype=bool)
    counts = _new_counts()
    counts.update(lines=len(values), matched=int(present.sum()), missing=int((~present).sum()))
    problems = []
    for i, v in enumerate(values):
        if v is not None and not isinstance(v, str):
            counts["invalid"] += 1
            present[i] = False
            values[i] = None
            if len(problems) < MAX_PROBLEMS:
                problems.append(f"{truth.ids[i]}: {field_name!r} must be a string, got {type(v).__name__}")
    counts["matched"] = int(present.sum())
    counts["missing"] = len(values) - counts["matched"]
    if values and not counts["matched"] and not counts["invalid"]:
        raise InputError(f"--pred-field {field_name}", f"no sample of {truth.path} has a value under {field_name!r}")
    return Predictions(field_name, f"{truth.path}#{field_name}", list(values), present, counts, problems)


def name_by_model_field(models: list[Predictions]) -> None:
    """Without --name, a file whose rows all carry one ``model`` field (hba-predict writes it) is named by it."""
    named = [next(iter(m.models_named)) if len(m.models_named) == 1 else m.name for m in models]
    if len(set(named)) == len(named):
        for m, name in zip(models, named):
            m.name = name
    elif len({m.name for m in models}) != len(models):
        raise HbaError(f"model names repeat ({', '.join(m.name for m in models)}): set them with --name")

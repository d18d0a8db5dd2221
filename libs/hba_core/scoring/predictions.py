"""Reading one model's predictions and aligning them to the truth by sample id, every line counted: matched,
a duplicate, an unknown id or an invalid line (``strict=True`` makes each an :class:`InputError`); the checks that
a file could be scored at all; predictions embedded in the truth file (``--pred-field``).

>>> from hba_core.fixtures.atlas import fixture_sample
>>> from hba_core.scoring.join import truth_from_rows
>>> truth = truth_from_rows([fixture_sample("mmsd", i, "test", video=None, audio=None) for i in range(2)])
>>> predictions_from_rows("m", [{"id": truth.ids[0], "prediction": "yes"}], truth).counts["missing"]
1
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
import numpy as np

from hba_core.errors import HbaError, InputError
from hba_core.jsonl import LineError, PathLike, display_name, open_binary_input, parse_line
from hba_core.samples import sample_id
from hba_core.scoring.join import (
    MAX_PROBLEMS,
    Predictions,
    Truth,
    _numbered,
    _plain_jsonl,
    _problem,
    start_truth,
)
from hba_core.scoring.line_blocks import blocks, decode_lines, no_gc
from hba_core.scoring.truth_reader import parts_for


class _Prediction(msgspec.Struct, gc=False):
    """A clean predictions line as msgspec decodes it: only these fields are built, the rest is skipped."""

    id: Annotated[str, msgspec.Meta(min_length=1)]
    prediction: str | None
    model: Any = None


_DECODER = msgspec.json.Decoder(_Prediction)


@dataclass
class _Block:
    """Consecutive clean lines of a predictions file, decoded in one call; ``data`` for the line-by-line path."""

    rows: list[_Prediction]
    data: bytearray


def iter_predictions(
    path: PathLike, errors: list[LineError] | None = None
) -> Iterator[tuple[int, dict[str, Any] | _Block]]:
    """:func:`hba_core.jsonl.iter_jsonl` of a predictions file, with runs of clean lines as one :class:`_Block`.

    A block is a few MB of lines that each hold a non-empty string ``id`` and a string or null
    ``prediction``, with nothing blank or malformed (any other block is read line by line, exactly as
    iter_jsonl reads it); it comes with the number of its first line.
    """
    name = display_name(path)
    number = 0
    with open_binary_input(path) as fh:
        for data in blocks(fh):
            rows = decode_lines(_DECODER, data)
            if rows is not None:
                yield number + 1, _Block(rows, data)
                number += len(rows)
                continue
            for raw in io.BytesIO(data):
                number += 1
                obj = parse_line(name, number, raw, errors)
                if obj is not None:
                    yield number, obj


def _take_block(
    rows: list[_Prediction], truth: Truth, start: int, present: np.ndarray, slot: np.ndarray, texts: list[Any]
) -> int | None:
    """Align a clean block in a few C calls: the truth position after its last row, or None (nothing taken)
    when a line is a problem to count and list.

    Predictions in the truth's order (as hba-predict writes them) are matched by comparing the block's
    ids with the truth's from ``start``, others through the index. ``slot`` (one int32 per truth
    sample) is scratch space: each row writes its position there, and a row whose position did not
    survive shares its sample with a later row of the block.
    """
    ids = [r.id for r in rows]
    stop = start + len(ids)
    if truth.ids[start:stop] == ids:
        if present[start:stop].any():
            return None  # a duplicate of an earlier line
        present[start:stop] = 1
        texts[start:stop] = [r.prediction for r in rows]
        return stop
    where = list(map(truth.index.get, ids))
    if None in where:
        return None  # an unknown id
    at = np.array(where, dtype=np.int64)
    order = np.arange(at.size, dtype=np.int32)
    slot[at] = order
    if present[at].any() or not (slot[at] == order).all():
        return None  # a duplicate, of an earlier line or within the block
    present[at] = 1
    for i, r in zip(where, rows):
        texts[i] = r.prediction
    return where[-1] + 1


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
    index: dict[str, int] | None = None  # truth.index, built when a line needs it (blocks in order do not)
    lines = without_field = 0
    named: set[Any] = set()
    seen_keys: set[str] = set()
    view = np.frombuffer(present, dtype=np.uint8)  # the same bytes, for whole blocks at once
    slot = np.empty(len(truth.ids), dtype=np.int32)

    def expanded() -> Iterator[tuple[int, dict[str, Any]]]:
        """The rows, with the blocks of iter_predictions taken whole where clean, else as their lines."""
        nonlocal lines
        cursor: int | None = 0
        for line, row in rows:
            if row.__class__ is not _Block:
                yield line, row
            elif (cursor := _take_block(row.rows, truth, cursor or 0, view, slot, texts)) is not None:  # type: ignore[attr-defined]
                lines += len(row.rows)  # type: ignore[attr-defined]
                models = {r.model for r in row.rows}  # type: ignore[attr-defined]
                models.discard(None)
                named.update(models)
            else:
                for k, raw in enumerate(io.BytesIO(row.data)):  # type: ignore[attr-defined]
                    obj = parse_line(source, line + k, raw, None if strict else bad_lines)
                    if obj is not None:
                        yield line + k, obj

    for line, row in expanded():  # the hot loop of 1 M predictions: keep it lean
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
        if index is None:
            index = truth.index
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
    rows = iter_predictions(path, None if strict else bad)
    with no_gc():
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
    cache: bool = True,
) -> tuple[Truth, list[Predictions]]:
    """The truth and each ``(path, name)`` predictions file, parsed in parallel when the truth is large.

    Predictions are parsed while worker processes read the truth, then aligned as :func:`load_predictions`.
    ``workers``: processes for a large plain-JSONL truth (default by usable cores, see
    :func:`~hba_core.scoring.truth_reader.default_workers`). ``subset=True``: the truth is a subset of
    what was predicted on purpose (a cut test set), so predictions for other ids are only counted
    (``unknown_id``), not listed nor, with ``strict``, errors. ``cache``: keep a large truth's arrays for
    the next run (:mod:`~hba_core.scoring.truth_cache`).
    """
    pending = start_truth(truth_path, pred_fields, workers, cache)
    parallel = _plain_jsonl(truth_path) and parts_for(str(truth_path), workers) > 1
    parsed: list[tuple[PathLike, str, Iterable[tuple[int, dict[str, Any]]], list[LineError]]] = []
    for path, name in files:
        bad: list[LineError] = []
        rows = iter_predictions(path, None if strict else bad)
        if parallel:  # parse now, while the workers read the truth; else stream (a list of 1 M dicts costs GC time)
            with no_gc():  # rows kept alive only grow the heap: no cycles to find
                rows = list(rows)  # type: ignore[assignment]
        parsed.append((path, name, rows, bad))
    truth = pending()
    models = []
    for path, name, rows, bad in parsed:
        with no_gc():
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

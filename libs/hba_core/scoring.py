"""Scoring model outputs against the Atlas: join truth, predictions and judgments by sample id, count every
problem, and compute the unified metrics per dataset and per task (with bootstrap intervals and paired tests).

No input disappears: every truth sample is in its dataset's denominator (a missing prediction or
judgment counts as wrong), and every prediction line is either matched or counted as a duplicate,
an unknown id or an invalid line. ``strict=True`` turns each of those into an :class:`InputError`.

>>> from hba_core.fixtures.atlas import fixture_sample
>>> truth = truth_from_rows([fixture_sample("mmsd", i, "test", video=None, audio=None) for i in range(4)])
>>> preds = predictions_from_rows("m", [{"id": i, "prediction": "Sarcastic!"} for i in truth.ids], truth)
>>> report = score(truth, [preds])
>>> report["models"][0]["datasets"]["mmsd"]["value"]
0.3333333333333333
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hba_core import registry
from hba_core.answers import extract_labels
from hba_core.errors import InputError
from hba_core.jsonl import LineError, PathLike, display_name, iter_jsonl
from hba_core.metrics import (
    METRICS,
    bootstrap_confusions,
    collapse,
    confusion,
    evaluate,
    paired_bootstrap_confusions,
    paired_p_value,
    per_class_table,
    percentile_ci,
)
from hba_core.samples import iter_samples, sample_id

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


def load_truth(path: PathLike, pred_fields: tuple[str, ...] = ()) -> Truth:
    """Read an HBA samples JSONL (official release files unchanged); bad lines are errors naming file:line."""
    return _build_truth(iter_samples(path), display_name(path), pred_fields)


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
) -> Predictions:
    counts, problems = _new_counts(), []
    texts: list[Any] = [None] * len(truth.ids)
    present = bytearray(len(truth.ids))  # a bytearray: item access is far cheaper than on a numpy array
    index = truth.index
    lines = 0
    named: set[Any] = set()
    for line, row in rows:  # the hot loop of 1 M predictions: keep it lean
        lines += 1
        model = row.get("model")
        if model is not None:
            named.add(model)
        sid = row.get("id")
        if not (sid.__class__ is str and sid) and isinstance(row.get("dataset"), str):
            sid = sample_id(row)  # a samples-shaped row without id: derive it as everywhere else
        text = row.get("prediction")
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
        if i is None:
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
                f"duplicate prediction for {sid!r} (the first one is kept)",
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
        name, source, texts, mask, counts, problems, models_named=frozenset(m for m in named if isinstance(m, str))
    )


def load_predictions(path: PathLike, name: str, truth: Truth, strict: bool = False) -> Predictions:
    """Stream a predictions JSONL (``-`` is stdin) and align it to the truth."""
    bad: list[LineError] = []
    rows = iter_jsonl(path, None if strict else bad)
    return _align(name, rows, truth, display_name(path), strict, bad)


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
    return Predictions(field_name, f"{truth.path}#{field_name}", list(values), present, counts, problems)


def attach_judgments(
    preds: Predictions,
    rows: Iterable[tuple[int, dict[str, Any]]],
    truth: Truth,
    source: str,
    strict: bool = False,
    model: str | None = None,
) -> None:
    """Read hba-judge rows into ``preds.judgments``; with ``model``, only rows whose ``model`` field names it."""
    codes = np.zeros(len(truth.ids), dtype=np.int8)
    counts = dict.fromkeys(
        ("lines", "matched", "duplicate", "unknown_id", "invalid", "not_free_text", "other_model", "unjudged"), 0
    )
    free = np.array([registry.dataset(n).is_free_text for n in truth.names])[truth.dataset]
    for line, row in rows:
        where = f"{source}:{line}"
        if model is not None:
            if not isinstance(row.get("model"), str):
                raise InputError(
                    where,
                    'judgment has no "model" field, so it cannot be told which of several '
                    "models it judges; give one --judgments NAME=FILE per model",
                )
            if row["model"] != model:
                counts["other_model"] += 1
                continue
        counts["lines"] += 1
        sid, status, correct = row.get("id"), row.get("status"), row.get("correct")
        if not isinstance(sid, str) or status not in JUDGE_STATUSES or (status == "ok") != isinstance(correct, bool):
            _problem(
                where,
                "not a judgment: needs id, status (ok|unparseable|error|skipped) and correct "
                "(true/false when ok, else null)",
                preds.problems,
                counts,
                "invalid",
                strict,
            )
            continue
        i = truth.index.get(sid)
        if i is None:
            _problem(where, f"judged id {sid!r} is not in the truth", preds.problems, counts, "unknown_id", strict)
        elif not free[i]:
            counts["not_free_text"] += 1
        elif codes[i] != _J_NONE:
            _problem(
                where,
                f"duplicate judgment for {sid!r} (the first one is kept)",
                preds.problems,
                counts,
                "duplicate",
                strict,
            )
        else:
            codes[i] = (_J_TRUE if correct else _J_FALSE) if status == "ok" else 2 + JUDGE_STATUSES.index(status)
    counts["matched"] = int((codes != _J_NONE).sum())
    counts["unjudged"] = int((free & (codes == _J_NONE)).sum())
    if strict and counts["unjudged"]:
        raise InputError(source, f"{counts['unjudged']} free-text samples have no judgment (--strict)")
    preds.judgments, preds.judgment_counts = codes, counts


def load_judgments(
    path: PathLike, preds: Predictions, truth: Truth, strict: bool = False, model: str | None = None
) -> None:
    bad: list[LineError] = []
    rows = iter_jsonl(path, None if strict else bad)
    attach_judgments(preds, rows, truth, display_name(path), strict, model)
    for err in bad:
        preds.judgment_counts["invalid"] += 1  # type: ignore[index]
        if len(preds.problems) < MAX_PROBLEMS:
            preds.problems.append(str(err))


# ---------------------------------------------------------------- per dataset
@dataclass
class DatasetScore:
    """One model on one dataset: the metric-level codes (what bootstrap and paired tests resample) and the report."""

    metric: str
    k: int  # classes of the metric-level matrix
    gold: np.ndarray  # metric-level gold codes (neutral golds of SEN dropped)
    pred: np.ndarray  # metric-level predicted codes, -1 = no label / not TRUE
    report: dict[str, Any]


def _polarity_groups(ds: registry.Dataset) -> tuple[list[int], list[int | None]]:
    """Intensity score per dataset label (domain order, neutral in the middle) and its {negative, positive} group."""
    domain = ds.task.domain
    assert domain is not None
    middle = len(domain.labels) // 2  # the sentiment domain is symmetric around neutral
    scores = [domain.labels.index(label) - middle for label in ds.labels]
    return scores, [None if s == 0 else int(s > 0) for s in scores]


def _intensity(full: np.ndarray, scores: list[int]) -> dict[str, float | None]:
    """ACC and weighted F1 at every granularity the labels allow: exact, 5 (MOSEI clip), 3 (sign), 2 (non-neutral)."""
    k = len(scores)
    views: dict[int, list[int | None]] = {k: list(range(k))}
    if k == 7:
        views[5] = [min(2, max(-2, s)) + 2 for s in scores]
    if k > 3:
        views[3] = [int(np.sign(s)) + 1 for s in scores]
    views[2] = [None if s == 0 else int(s > 0) for s in scores]
    out: dict[str, float | None] = {}
    for granularity, groups in sorted(views.items(), reverse=True):
        cm = collapse(full, groups)
        for key, fn in ((f"acc{granularity}", "accuracy"), (f"f1w{granularity}", "weighted_f1")):
            out[key] = evaluate(cm, fn).value
    return out


def score_dataset(truth: Truth, preds: Predictions, d: int, examples: int = 3) -> DatasetScore:
    """The unified metric of one dataset for one model, with counts, notes, per-class table and confusion matrix."""
    ds = registry.dataset(truth.names[d])
    metric = ds.task.metric.name
    idx = np.flatnonzero(truth.dataset == d)
    present = preds.present[idx]
    report: dict[str, Any] = {
        "task": ds.task.code,
        "metric": metric,
        "samples": int(idx.size),
        "missing": int((~present).sum()),
    }
    if ds.is_free_text:
        report["value"] = None
        if preds.judgments is None:
            gold = np.zeros(idx.size, dtype=np.int64)
            report.update(
                n=int(idx.size), notes=["no judgments were given for this model: run hba-judge and pass --judgments"]
            )
            return DatasetScore(metric, 1, gold, np.full(idx.size, -1), report)
        codes = preds.judgments[idx]
        judged = {
            "true": int((codes == _J_TRUE).sum()),
            "false": int((codes == _J_FALSE).sum()),
            "unjudged": int((codes == _J_NONE).sum()),
        }
        judged.update({s: int((codes == 2 + i).sum()) for i, s in enumerate(JUDGE_STATUSES) if s != "ok"})
        gold, pred = np.zeros(idx.size, dtype=np.int64), np.where(codes == _J_TRUE, 0, -1)
        result = evaluate(confusion(gold, pred, 1), metric)
        notes = list(result.notes)
        not_true = idx.size - judged["true"] - judged["false"]
        if not_true:
            notes.append(f"{not_true} samples without a TRUE/FALSE judgment count as not TRUE")
        report.update(value=result.value, n=result.n, notes=notes, judgments=judged)
        return DatasetScore(metric, 1, gold, pred, report)

    lookup = {label: c for c, label in enumerate(ds.labels)}
    texts = [preds.texts[i] for i in idx]
    parsed = extract_labels(texts, ds.name)
    pred = np.fromiter((-1 if p is None else lookup[p] for p in parsed), dtype=np.int64, count=idx.size)
    gold = truth.gold[idx].astype(np.int64)
    unparseable = present & (pred < 0)
    bad = np.flatnonzero(unparseable)[:examples]
    report["unparseable"] = int(unparseable.sum())
    report["unparseable_examples"] = [{"id": truth.ids[idx[j]], "prediction": (texts[j] or "")[:200]} for j in bad]
    full = confusion(gold, pred, len(ds.labels))
    report["per_class"] = per_class_table(full, list(ds.labels))
    report["confusion"] = {"labels": list(ds.labels), "columns": [*ds.labels, "(no label)"], "matrix": full.tolist()}
    notes = []
    if report["unparseable"] or report["missing"]:
        notes.append(f"{report['unparseable']} unparseable and {report['missing']} missing predictions count as wrong")
    k = len(ds.labels)
    if ds.task.code == "SEN":
        scores, groups = _polarity_groups(ds)
        report["intensity"] = _intensity(full, scores)
        mapped = np.array([-1 if g is None else g for g in groups], dtype=np.int64)
        keep = mapped[gold] >= 0
        report["dropped_neutral"] = int((~keep).sum())
        if report["dropped_neutral"]:
            notes.append(f"{report['dropped_neutral']} neutral gold samples dropped (binary F1 over negative/positive)")
        gold = mapped[gold[keep]]
        pred = np.where(pred[keep] >= 0, mapped[np.maximum(pred[keep], 0)], -1)
        k = 2
    result = evaluate(confusion(gold, pred, k), metric)
    report.update(value=result.value, n=result.n, notes=[*result.notes, *notes])
    return DatasetScore(metric, k, gold, pred, report)


# ---------------------------------------------------------------- the report
def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([seed, *keys])


def _task_means(per_dataset: dict[str, DatasetScore], reps: dict[str, np.ndarray] | None) -> dict[str, Any]:
    tasks: dict[str, Any] = {}
    for code, t in registry.get().tasks.items():
        names = [d.name for d in registry.datasets_of_task(code) if d.name in per_dataset]
        defined = [n for n in names if per_dataset[n].report["value"] is not None]
        entry: dict[str, Any] = {"metric": t.metric.name, "datasets": defined, "notes": []}
        entry["value"] = float(np.mean([per_dataset[n].report["value"] for n in defined])) if defined else None
        if not defined:
            entry["notes"].append("no dataset of this task has a defined score")
        elif len(defined) < len(registry.datasets_of_task(code)):
            left = [d.name for d in registry.datasets_of_task(code) if d.name not in defined]
            entry["notes"].append(f"mean over {len(defined)} datasets; not scored: {', '.join(left)}")
        if reps is not None:
            stack = [reps[n] for n in defined]
            entry["ci"] = percentile_ci(np.nanmean(np.stack(stack), axis=0)) if stack else None
        tasks[code] = entry
    return tasks


def score_model(
    truth: Truth, preds: Predictions, *, bootstrap: int = 0, seed: int = 0, model_index: int = 0, examples: int = 3
) -> tuple[dict[str, Any], dict[str, DatasetScore]]:
    """One model's report section (counts, per dataset, per task) and its per-dataset scores."""
    present = sorted(set(np.unique(truth.dataset).tolist()))
    per_dataset = {truth.names[d]: score_dataset(truth, preds, d, examples) for d in present}
    reps: dict[str, np.ndarray] | None = None
    if bootstrap:
        reps = {}
        for d, (name, s) in zip(present, per_dataset.items()):
            cm = confusion(s.gold, s.pred, s.k)
            reps[name] = METRICS[s.metric](bootstrap_confusions(cm, bootstrap, _rng(seed, model_index, d)))
            s.report["ci"] = percentile_ci(reps[name]) if s.report["value"] is not None else None
    counts = dict(preds.counts)
    counts["unparseable"] = sum(s.report.get("unparseable", 0) for s in per_dataset.values())
    section = {
        "name": preds.name,
        "source": preds.source,
        "counts": counts,
        "judgments": preds.judgment_counts,
        "problems": preds.problems,
        "datasets": {n: s.report for n, s in per_dataset.items()},
        "tasks": _task_means(per_dataset, reps),
    }
    return section, per_dataset


def compare_models(
    a: dict[str, DatasetScore], b: dict[str, DatasetScore], replicates: int, seed: int, level: float = 0.95
) -> dict[str, Any]:
    """Paired bootstrap of A - B on the same resampled samples, per dataset and per task (mean over datasets)."""
    datasets: dict[str, Any] = {}
    deltas: dict[str, np.ndarray] = {}
    for d, name in enumerate(a):
        sa, sb = a[name], b[name]
        if sa.report["value"] is None or sb.report["value"] is None:
            datasets[name] = {"delta": None, "ci": None, "p_value": None, "notes": ["undefined for one model"]}
            continue
        assert np.array_equal(sa.gold, sb.gold), "both models are scored on the same truth"
        cm_a, cm_b = paired_bootstrap_confusions(sa.gold, sa.pred, sb.pred, sa.k, replicates, _rng(seed, 99, d))
        fn = METRICS[sa.metric]
        deltas[name] = fn(cm_a) - fn(cm_b)
        datasets[name] = {
            "delta": sa.report["value"] - sb.report["value"],
            "ci": percentile_ci(deltas[name], level),
            "p_value": paired_p_value(deltas[name]),
        }
    tasks: dict[str, Any] = {}
    for code in registry.get().tasks:
        names = [d.name for d in registry.datasets_of_task(code) if d.name in deltas]
        if not names:
            continue
        stack = np.nanmean(np.stack([deltas[n] for n in names]), axis=0)
        tasks[code] = {
            "delta": float(np.mean([datasets[n]["delta"] for n in names])),
            "datasets": names,
            "ci": percentile_ci(stack, level),
            "p_value": paired_p_value(stack),
        }
    return {"datasets": datasets, "tasks": tasks}


def score(
    truth: Truth,
    models: list[Predictions],
    *,
    bootstrap: int = 0,
    seed: int = 0,
    compare: tuple[str, str] | None = None,
    examples: int = 3,
) -> dict[str, Any]:
    """The full report (see schemas/score-report.schema.json): every model, optional intervals and a paired test."""
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise InputError("--name", f"model names must be unique, got {', '.join(names)}")
    sections, scores = [], {}
    for i, preds in enumerate(models):
        section, per_dataset = score_model(
            truth, preds, bootstrap=bootstrap, seed=seed, model_index=i, examples=examples
        )
        sections.append(section)
        scores[preds.name] = per_dataset
    counts = {n: int((truth.dataset == d).sum()) for d, n in enumerate(truth.names) if (truth.dataset == d).any()}
    report: dict[str, Any] = {
        "version": 1,
        "truth": {"path": truth.path, "samples": len(truth.ids), "datasets": counts},
        "bootstrap": {"replicates": bootstrap, "seed": seed, "confidence": 0.95} if bootstrap else None,
        "models": sections,
        "comparisons": [],
    }
    if compare is not None:
        for side in compare:
            if side not in scores:
                raise InputError("--compare", f"no model named {side!r}; models: {', '.join(names)}")
        replicates = bootstrap or 1000
        result = compare_models(scores[compare[0]], scores[compare[1]], replicates, seed)
        report["comparisons"].append({"a": compare[0], "b": compare[1], "replicates": replicates, **result})
    return report

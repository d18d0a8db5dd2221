"""One model on one dataset: answers read into labels, the unified metric, sentiment intensity, and the counts.

Two protocols (``hba-score --protocol``):

- ``paper`` (default): the paper's definitions (App. A.5) with the strict reader of
  :mod:`hba_core.answers`. A label of the task's domain that the dataset does not have (plain
  "positive" on CH-SIMS v2) is counted and shown apart as ``outside_labels``; for the SEN metric it
  still counts by its polarity, which is what the metric measures.
- ``reference``: what the reference code (``training/sft/evaluate/``) computes: the reference
  parser (:func:`hba_core.answers.reference_span`, case-sensitive exact match against the domain's
  labels), ACC/F1w at 7, 5, 3 and 2 classes for every sentiment dataset with the 5-class grouping
  ``{hn} {n, wn} {neu} {wp, p} {hp}``, 0.0 where the reference divides by zero, and the emotion
  metric's ``0.5 TP/P`` for a class without negatives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hba_core import registry
from hba_core.answers import read_answers, reference_span
from hba_core.metrics import collapse, confusion, evaluate, per_class_table
from hba_core.scoring.join import _J_FALSE, _J_NONE, _J_TRUE, JUDGE_STATUSES, Predictions, Truth

PROTOCOLS = ("paper", "reference")

# The reference's collapses of the 7 sentiment positions (helper_senti._collapse_positions).
_REFERENCE_VIEWS: dict[int, list[int | None]] = {
    7: [0, 1, 2, 3, 4, 5, 6],
    5: [0, 1, 1, 2, 3, 3, 4],
    3: [0, 0, 0, 1, 2, 2, 2],
    2: [0, 0, 0, None, 1, 1, 1],  # neutral gold dropped, a neutral prediction is wrong
}


@dataclass
class DatasetScore:
    """One model on one dataset: the metric-level codes (what bootstrap and paired tests resample) and the report."""

    metric: str  # key of hba_core.metrics.METRICS that computes the value from (gold, pred)
    k: int  # classes of the metric-level matrix
    gold: np.ndarray  # metric-level gold codes (neutral golds of SEN dropped)
    pred: np.ndarray  # metric-level predicted codes, -1 = no label / not TRUE
    report: dict[str, Any]


def _polarity(domain: registry.Domain) -> list[int | None]:
    """{negative: 0, positive: 1, neutral: None} per label of the (symmetric) sentiment domain."""
    middle = len(domain.labels) // 2
    return [None if i == middle else int(i > middle) for i in range(len(domain.labels))]


def _paper_views(ds: registry.Dataset) -> dict[int, list[int | None]]:
    """Paper granularities over the domain positions: exact (own labels), 5 (MOSEI clipped), 3 (sign), 2."""
    domain = ds.task.domain
    assert domain is not None
    middle = len(domain.labels) // 2
    scores = [i - middle for i in range(len(domain.labels))]
    k = len(ds.labels)
    views: dict[int, list[int | None]] = {
        k: [ds.labels.index(label) if label in ds.labels else None for label in domain.labels]
    }
    if k == 7:
        views[5] = [min(2, max(-2, s)) + 2 for s in scores]
    if k > 3:
        views[3] = [int(np.sign(s)) + 1 for s in scores]
    views[2] = _polarity(domain)
    return views


def _intensity(full: np.ndarray, views: dict[int, list[int | None]], zero_if_empty: bool) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for granularity, groups in sorted(views.items(), reverse=True):
        cm = collapse(full, groups)
        for key, fn in ((f"acc{granularity}", "accuracy"), (f"f1w{granularity}", "weighted_f1")):
            value = evaluate(cm, fn).value
            out[key] = 0.0 if value is None and zero_if_empty else value
    return out


def _judged(truth: Truth, preds: Predictions, idx: np.ndarray, metric: str, report: dict[str, Any]) -> DatasetScore:
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
    report.update(
        value=result.value, n=result.n, notes=notes, judgments=judged, answered=judged["true"] + judged["false"]
    )
    return DatasetScore(metric, 1, gold, pred, report)


def _domain_codes(texts: list[Any], ds: registry.Dataset, protocol: str) -> tuple[np.ndarray, dict[Any, str | None]]:
    """Predicted domain position per text (-1: no label) and, under paper, why each distinct unlabelled reply failed."""
    domain = ds.task.domain
    assert domain is not None
    position = {label: i for i, label in enumerate(domain.labels)}
    if protocol == "reference":
        codes = [position.get(reference_span(t), -1) if isinstance(t, str) else -1 for t in texts]
        return np.array(codes, dtype=np.int64), {}
    distinct = list(dict.fromkeys(texts))  # each distinct reply is read once (1 M replies: a few thousand)
    answers = read_answers(distinct, ds.name)
    code = dict(zip(distinct, [-1 if a.label is None else position[a.label] for a in answers]))
    return np.fromiter(map(code.__getitem__, texts), np.int64, len(texts)), {
        t: a.reason for t, a in zip(distinct, answers)
    }


def score_dataset(truth: Truth, preds: Predictions, d: int, examples: int = 3, protocol: str = "paper") -> DatasetScore:
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
        return _judged(truth, preds, idx, metric, report)

    domain = ds.task.domain
    assert domain is not None
    own = np.array([ds.labels.index(label) if label in ds.labels else -1 for label in domain.labels])
    texts = list(map(preds.texts.__getitem__, idx.tolist()))
    pred_dom, reasons = _domain_codes(texts, ds, protocol)
    gold_own = truth.gold[idx].astype(np.int64)
    gold_dom = np.array([domain.labels.index(label) for label in ds.labels], dtype=np.int64)[gold_own]
    pred_own = np.where(pred_dom >= 0, own[np.maximum(pred_dom, 0)], -1)
    unparseable = present & (pred_dom < 0)
    outside = present & (pred_dom >= 0) & (pred_own < 0)
    # answered: named a label the metric counts (SEN counts any sentiment label by its polarity)
    report["answered"] = int((present & ((pred_dom if ds.task.code == "SEN" else pred_own) >= 0)).sum())
    report["unparseable"] = int(unparseable.sum())
    report["outside_labels"] = int(outside.sum())
    report["unparseable_examples"] = [
        {
            "id": truth.ids[idx[j]],
            "prediction": (texts[j] or "")[:200],
            **({"reason": reasons[texts[j]]} if reasons.get(texts[j]) else {}),
        }
        for j in np.flatnonzero(unparseable)[:examples]
    ]
    report["outside_examples"] = [
        {"id": truth.ids[idx[j]], "prediction": (texts[j] or "")[:200], "label": domain.labels[pred_dom[j]]}
        for j in np.flatnonzero(outside)[:examples]
    ]
    wrong = [f"{report['unparseable']} unparseable"]
    if report["outside_labels"]:
        wrong.append(f"{report['outside_labels']} outside the dataset's labels")
    notes = []
    if report["unparseable"] or report["missing"] or report["outside_labels"]:
        notes.append(f"{', '.join(wrong)} and {report['missing']} missing predictions count as wrong")
    if protocol == "reference":
        labels = list(domain.labels)
        full = confusion(gold_dom, pred_dom, len(labels))
    else:
        labels = list(ds.labels)
        full = confusion(gold_own, pred_own, len(labels))
    report["per_class"] = per_class_table(full, labels)
    report["confusion"] = {"labels": labels, "columns": [*labels, "(no label)"], "matrix": full.tolist()}
    if report["answered"] == 0 and idx.size:
        notes.append("no sample was answered with a label the metric counts: the value is the metric's floor")

    gold, pred, k, fn = gold_own, pred_own, len(ds.labels), metric
    if ds.task.code == "SEN":
        dom_full = confusion(gold_dom, pred_dom, len(domain.labels))
        reference = protocol == "reference"
        report["intensity"] = _intensity(dom_full, _REFERENCE_VIEWS if reference else _paper_views(ds), reference)
        mapped = np.array([-1 if g is None else g for g in _polarity(domain)], dtype=np.int64)
        keep = mapped[gold_dom] >= 0
        report["dropped_neutral"] = int((~keep).sum())
        if report["dropped_neutral"]:
            notes.append(f"{report['dropped_neutral']} neutral gold samples dropped (binary F1 over negative/positive)")
        gold = mapped[gold_dom[keep]]
        pred = np.where(pred_dom[keep] >= 0, mapped[np.maximum(pred_dom[keep], 0)], -1)
        k, fn = 2, "weighted_f1"
    elif protocol == "reference":
        gold, pred, k = gold_dom, pred_dom, len(domain.labels)
        fn = "reference_mean_weighted_accuracy" if metric == "mean_weighted_accuracy" else metric
    result = evaluate(confusion(gold, pred, k), fn)
    value = result.value
    if value is None and protocol == "reference":
        value = 0.0  # the reference's _safe_div
    report.update(value=value, n=result.n, notes=[*result.notes, *notes])
    return DatasetScore(fn, k, gold, pred, report)

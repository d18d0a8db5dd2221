"""The benchmark's unified metrics, computed exactly from (batched) confusion matrices with numpy.

Every metric takes a confusion matrix ``cm`` of shape ``(..., K, K + 1)``: rows are the gold
classes, columns the predicted classes plus one last column for *no label* (unparseable,
missing, or outside the label set, i.e. always wrong). Leading axes are batch axes, so one call
scores a point estimate or thousands of bootstrap replicates alike. Build matrices with
:func:`confusion` from integer codes (``-1`` = no label).

Edge cases are never a silent division by zero: the batched functions return ``nan`` where a
metric is undefined, and :func:`evaluate` turns a single matrix into a :class:`MetricValue`
whose ``value`` is ``None`` and whose ``notes`` say why (or say how an edge case was defined).

>>> import numpy as np
>>> cm = confusion(np.array([0, 0, 1, 1]), np.array([0, 1, 1, -1]), 2)
>>> cm.tolist()
[[1, 1, 0], [0, 1, 1]]
>>> round(float(weighted_f1(cm)), 4)
0.5833
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

NO_LABEL = -1  # code of a prediction that names no label of the dataset (unparseable, missing, outside the set)


@dataclass(frozen=True)
class MetricValue:
    """A metric on one dataset: ``value`` is None when undefined, and ``notes`` says why or how."""

    value: float | None
    n: int
    notes: list[str] = field(default_factory=list)


def confusion(gold: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    """Counts of (gold, predicted) pairs as a ``(K, K + 1)`` int64 matrix; ``pred < 0`` goes to the last column.

    >>> confusion(np.array([1, 1]), np.array([1, -1]), 2).tolist()
    [[0, 0, 0], [0, 1, 1]]
    """
    gold = np.asarray(gold, dtype=np.int64)
    pred = np.asarray(pred, dtype=np.int64)
    if gold.size and (gold.min() < 0 or gold.max() >= k):
        raise ValueError(f"gold codes must lie in [0, {k}), got {gold.min()}..{gold.max()}")
    if pred.size and pred.max() >= k:
        raise ValueError(f"predicted codes must be < {k}, got {pred.max()}")
    cells = gold * (k + 1) + np.where(pred < 0, k, pred)
    return np.bincount(cells, minlength=k * (k + 1)).reshape(k, k + 1)


def _parts(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(TP per class, gold support per class, predicted count per class, N) with batch axes kept."""
    cm = np.asarray(cm, dtype=np.float64)
    k = cm.shape[-2]
    tp = np.diagonal(cm[..., :, :k], axis1=-2, axis2=-1)
    support = cm.sum(axis=-1)
    predicted = cm[..., :, :k].sum(axis=-2)
    n = support.sum(axis=-1)
    return tp, support, predicted, n


def per_class_f1(cm: np.ndarray) -> np.ndarray:
    """F1 per class, ``2 TP / (2 TP + FP + FN)``; ``nan`` for a class neither in gold nor predicted."""
    tp, support, predicted, _ = _parts(cm)
    denom = support + predicted
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, 2.0 * tp / np.where(denom > 0, denom, 1.0), np.nan)


def weighted_f1(cm: np.ndarray) -> np.ndarray:
    """Support-weighted F1 over the gold classes present: ``sum_c (n_c / N) F1_c``; ``nan`` when N = 0.

    A class present in gold always has a defined F1 (its support is positive), so no zero division
    is hidden; classes only predicted carry weight 0, as in scikit-learn's ``average="weighted"``.
    """
    tp, support, predicted, n = _parts(cm)
    denom = support + predicted
    f1 = np.where(support > 0, 2.0 * tp / np.where(denom > 0, denom, 1.0), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (support * f1).sum(axis=-1) / np.where(n > 0, n, 1.0), np.nan)


def per_class_weighted_accuracy(cm: np.ndarray) -> np.ndarray:
    """``0.5 TP/P + 0.5 TN/N`` per class; ``nan`` for classes absent from gold; ``TP/P`` when N = 0.

    P is the class's gold support and N every other sample; a *no label* prediction is never a
    true positive and is a true negative for every class it did not name.
    """
    tp, support, predicted, n = _parts(cm)
    n_b = n[..., None]
    negatives = n_b - support
    tn = n_b - support - predicted + tp
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = tp / np.where(support > 0, support, 1.0)
        specificity = tn / np.where(negatives > 0, negatives, 1.0)
    wa = np.where(negatives > 0, 0.5 * recall + 0.5 * specificity, recall)
    return np.where(support > 0, wa, np.nan)


def _mean_of_present(per_class: np.ndarray) -> np.ndarray:
    """Mean over the last axis of the classes whose value is defined (not ``nan``); ``nan`` when none is."""
    present = ~np.isnan(per_class)
    count = present.sum(axis=-1)
    total = np.where(present, per_class, 0.0).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.where(count > 0, count, 1), np.nan)


def mean_weighted_accuracy(cm: np.ndarray) -> np.ndarray:
    """Mean over gold classes present of :func:`per_class_weighted_accuracy`; ``nan`` when N = 0."""
    return _mean_of_present(per_class_weighted_accuracy(cm))


def reference_mean_weighted_accuracy(cm: np.ndarray) -> np.ndarray:
    """The reference code's emotion metric (``helper_emo.py``): as :func:`mean_weighted_accuracy`, except that
    a class with no negatives (one gold class only) scores ``0.5 TP/P`` (its ``TN/N`` is taken as 0).

    >>> float(reference_mean_weighted_accuracy(confusion(np.array([0, 0]), np.array([0, 0]), 2)))
    0.5
    """
    tp, support, predicted, n = _parts(cm)
    negatives = n[..., None] - support
    tn = negatives - predicted + tp
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = tp / np.where(support > 0, support, 1.0)
        specificity = np.where(negatives > 0, tn / np.where(negatives > 0, negatives, 1.0), 0.0)
    return _mean_of_present(np.where(support > 0, 0.5 * recall + 0.5 * specificity, np.nan))


def accuracy(cm: np.ndarray) -> np.ndarray:
    """Share of samples on the diagonal (a *no label* prediction is wrong); ``nan`` when N = 0.

    With a single gold class "correct" and *no label* for everything else this is the LLM-judge
    accuracy: TRUE judgments / all samples.
    """
    tp, _, _, n = _parts(cm)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, tp.sum(axis=-1) / np.where(n > 0, n, 1.0), np.nan)


judge_accuracy = accuracy

# Registry metric name -> batched function of a confusion matrix.
METRICS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "binary_weighted_f1": weighted_f1,  # on the {negative, positive} matrix built by the scorer
    "weighted_f1": weighted_f1,
    "mean_weighted_accuracy": mean_weighted_accuracy,
    "judge_accuracy": judge_accuracy,
    "accuracy": accuracy,
    "reference_mean_weighted_accuracy": reference_mean_weighted_accuracy,  # hba-score --protocol reference
}


def edge_notes(cm: np.ndarray, metric: str) -> list[str]:
    """What a reader must know about one matrix: empty, one gold class, all without a label."""
    cm = np.asarray(cm)
    n = int(cm.sum())
    if n == 0:
        return ["no samples: the metric is undefined (reported as null)"]
    notes = []
    present = int((cm.sum(axis=1) > 0).sum())
    if present == 1 and cm.shape[0] > 1:
        if metric == "mean_weighted_accuracy":
            notes.append("only one gold class present: no negatives, so its weighted accuracy is its recall TP/P")
        elif metric in ("weighted_f1", "binary_weighted_f1"):
            notes.append("only one gold class present: weighted F1 is that class's F1")
    if metric != "judge_accuracy" and int(cm[:, -1].sum()) == n:
        notes.append("no prediction named a label: every sample counts as wrong")
    return notes


def evaluate(cm: np.ndarray, metric: str) -> MetricValue:
    """One metric on one ``(K, K + 1)`` matrix, with its edge-case notes.

    >>> evaluate(np.zeros((2, 3), dtype=int), "weighted_f1")
    MetricValue(value=None, n=0, notes=['no samples: the metric is undefined (reported as null)'])
    """
    value = float(METRICS[metric](cm))
    return MetricValue(None if np.isnan(value) else value, int(np.asarray(cm).sum()), edge_notes(cm, metric))


def per_class_table(cm: np.ndarray, labels: list[str]) -> list[dict[str, float | int | str | None]]:
    """Precision, recall, F1, weighted accuracy and support per class (None where undefined)."""
    tp, support, predicted, _ = _parts(cm)
    f1 = per_class_f1(cm)
    wa = per_class_weighted_accuracy(cm)
    rows = []
    for c, label in enumerate(labels):
        rows.append(
            {
                "label": label,
                "support": int(support[c]),
                "predicted": int(predicted[c]),
                "precision": float(tp[c] / predicted[c]) if predicted[c] > 0 else None,
                "recall": float(tp[c] / support[c]) if support[c] > 0 else None,
                "f1": None if np.isnan(f1[c]) else float(f1[c]),
                "weighted_accuracy": None if np.isnan(wa[c]) else float(wa[c]),
            }
        )
    return rows


def collapse(cm: np.ndarray, groups: list[int | None]) -> np.ndarray:
    """Merge gold classes and predicted classes by ``groups[c]`` (a new class index, or None to drop the
    gold row and send such predictions to *no label*): e.g. the 7 sentiment intensities into polarity.

    >>> cm = confusion(np.array([0, 1, 2]), np.array([1, 1, 2]), 3)
    >>> collapse(cm, [0, None, 1]).tolist()
    [[0, 0, 1], [0, 1, 0]]
    """
    cm = np.asarray(cm)
    k = cm.shape[-2]
    m = 1 + max((g for g in groups if g is not None), default=-1)
    rows = np.zeros((*cm.shape[:-2], m, k + 1), dtype=cm.dtype)
    for c, g in enumerate(groups):
        if g is not None:
            rows[..., g, :] += cm[..., c, :]
    out = np.zeros((*cm.shape[:-2], m, m + 1), dtype=cm.dtype)
    for c, g in enumerate(groups):
        out[..., :, m if g is None else g] += rows[..., :, c]
    out[..., :, m] += rows[..., :, k]
    return out


# ---------------------------------------------------------------- bootstrap
# Resampling N samples with replacement only changes how many samples fall in each confusion
# cell, and those counts are exactly Multinomial(N, cell counts / N). Drawing them directly gives
# the same distribution as resampling samples at O(cells) per replicate instead of O(N).


def bootstrap_confusions(cm: np.ndarray, replicates: int, rng: np.random.Generator) -> np.ndarray:
    """``replicates`` bootstrap resamples of the samples behind ``cm``, as a ``(B, K, K + 1)`` stack."""
    cm = np.asarray(cm, dtype=np.int64)
    n = int(cm.sum())
    if n == 0:
        return np.zeros((replicates, *cm.shape), dtype=np.int64)
    draws = rng.multinomial(n, cm.ravel() / n, size=replicates)
    return draws.reshape(replicates, *cm.shape)


def paired_bootstrap_confusions(
    gold: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray, k: int, replicates: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrap two models on the *same* resampled samples: ``(cm_a, cm_b)``, each ``(B, K, K + 1)``."""
    width = k + 1
    a = np.where(np.asarray(pred_a) < 0, k, pred_a)
    b = np.where(np.asarray(pred_b) < 0, k, pred_b)
    cells = (np.asarray(gold, dtype=np.int64) * width + a) * width + b
    joint = np.bincount(cells, minlength=k * width * width)
    n = int(joint.sum())
    if n == 0:
        empty = np.zeros((replicates, k, width), dtype=np.int64)
        return empty, empty.copy()
    draws = rng.multinomial(n, joint / n, size=replicates).reshape(replicates, k, width, width)
    return draws.sum(axis=3), draws.sum(axis=2)


def percentile_ci(values: np.ndarray, level: float = 0.95) -> list[float] | None:
    """Percentile interval of bootstrap values (undefined replicates ignored); None when none is defined."""
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    if values.size == 0:
        return None
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return [float(low), float(high)]


def paired_p_value(deltas: np.ndarray) -> float | None:
    """Two-sided bootstrap p-value that the mean difference is zero: ``2 min(P(d <= 0), P(d >= 0))``, capped at 1."""
    deltas = np.asarray(deltas, dtype=np.float64)
    deltas = deltas[~np.isnan(deltas)]
    if deltas.size == 0:
        return None
    return float(min(1.0, 2.0 * min((deltas <= 0).mean(), (deltas >= 0).mean())))

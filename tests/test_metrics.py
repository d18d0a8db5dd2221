"""The unified metrics: hand-computed examples, edge cases, and agreement with scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from hba_core.metrics import (
    accuracy,
    bootstrap_confusions,
    collapse,
    confusion,
    evaluate,
    judge_accuracy,
    mean_weighted_accuracy,
    paired_bootstrap_confusions,
    paired_p_value,
    per_class_table,
    per_class_weighted_accuracy,
    percentile_ci,
    weighted_f1,
)


def cm(gold, pred, k):
    return confusion(np.array(gold), np.array(pred), k)


def test_confusion_puts_no_label_last_and_rejects_bad_codes():
    assert cm([0, 1, 1], [1, -1, 1], 2).tolist() == [[0, 1, 0], [0, 1, 1]]
    with pytest.raises(ValueError):
        cm([2], [0], 2)
    with pytest.raises(ValueError):
        cm([0], [2], 2)


def test_weighted_f1_by_hand():
    # class 0: TP 2, FP 0, FN 1 -> F1 4/5; class 1: TP 1, FP 1, FN 1 (one unparseable) -> F1 1/2
    value = evaluate(cm([0, 0, 0, 1, 1], [0, 0, 1, 1, -1], 2), "weighted_f1")
    assert value.value == pytest.approx((3 * 0.8 + 2 * 0.5) / 5)
    assert value.n == 5 and value.notes == []


def test_weighted_f1_ignores_classes_only_predicted():
    # gold only class 0 (support 3); class 1 is predicted once -> weight 0, but it is an FP of nobody
    # and an FN of class 0: F1_0 = 2*2 / (2*2 + 0 + 1) = 0.8
    value = evaluate(cm([0, 0, 0], [0, 0, 1], 2), "weighted_f1")
    assert value.value == pytest.approx(0.8)
    assert value.notes == ["only one gold class present: weighted F1 is that class's F1"]


def test_mean_weighted_accuracy_by_hand():
    # class 0: P2 TP1 N2 TN2 -> .75; class 1: P1 TP1 N3 TN2 -> .5+.5*2/3; class 2: P1 TP0 N3 TN3 -> .5
    m = cm([0, 0, 1, 2], [0, 1, 1, -1], 3)
    assert per_class_weighted_accuracy(m).tolist() == pytest.approx([0.75, 0.5 + 1 / 3, 0.5])
    assert evaluate(m, "mean_weighted_accuracy").value == pytest.approx((0.75 + 0.5 + 1 / 3 + 0.5) / 3)


def test_mean_weighted_accuracy_skips_absent_gold_classes():
    # class 2 never in gold: not averaged, even though it was predicted (an FP of class 2, FN of class 0)
    m = cm([0, 1], [2, 1], 3)
    # class 0: P1 TP0 N1 TN1 -> .5 ; class 1: P1 TP1 N1 TN1 -> 1
    assert evaluate(m, "mean_weighted_accuracy").value == pytest.approx(0.75)


def test_mean_weighted_accuracy_one_gold_class_is_recall_and_says_so():
    value = evaluate(cm([1, 1, 1, 1], [1, 1, 0, -1], 3), "mean_weighted_accuracy")
    assert value.value == pytest.approx(0.5)
    assert "recall" in value.notes[0]


def test_judge_accuracy_counts_only_true():
    # 3 TRUE, 2 not TRUE (false, unjudged, error ... all sit in the no-label column)
    value = evaluate(np.array([[3, 2]]), "judge_accuracy")
    assert value.value == pytest.approx(0.6) and value.notes == []
    assert judge_accuracy(np.array([[0, 4]])) == 0.0


@pytest.mark.parametrize("metric", ["weighted_f1", "binary_weighted_f1", "mean_weighted_accuracy", "judge_accuracy"])
def test_empty_is_undefined_and_says_so(metric):
    k = 1 if metric == "judge_accuracy" else 2
    value = evaluate(np.zeros((k, k + 1), dtype=int), metric)
    assert value.value is None and value.n == 0
    assert value.notes == ["no samples: the metric is undefined (reported as null)"]


@pytest.mark.parametrize(("metric", "expected"), [("weighted_f1", 0.0), ("mean_weighted_accuracy", 0.5)])
def test_all_unparseable_is_wrong_and_says_so(metric, expected):
    # with nothing predicted, every class has TN/N = 1 and TP/P = 0: weighted accuracy .5, F1 0
    value = evaluate(cm([0, 1, 1], [-1, -1, -1], 2), metric)
    assert value.value == pytest.approx(expected)
    assert "no prediction named a label: every sample counts as wrong" in value.notes


def test_batched_matches_one_by_one():
    rng = np.random.default_rng(0)
    stack = np.stack([cm(rng.integers(0, 3, 30), rng.integers(-1, 3, 30), 3) for _ in range(5)])
    for fn in (weighted_f1, mean_weighted_accuracy, accuracy):
        assert fn(stack).tolist() == pytest.approx([float(fn(m)) for m in stack])


def test_per_class_table_by_hand():
    rows = per_class_table(cm([0, 0, 1], [0, 1, -1], 2), ["a", "b"])
    assert rows[0] == {
        "label": "a",
        "support": 2,
        "predicted": 1,
        "precision": 1.0,
        "recall": 0.5,
        "f1": pytest.approx(2 / 3),
        "weighted_accuracy": pytest.approx(0.75),
    }
    assert rows[1]["precision"] == 0.0 and rows[1]["recall"] == 0.0 and rows[1]["f1"] == 0.0


def test_collapse_merges_rows_and_columns():
    # 3 classes -> {0, 1} with class 1 dropped: its gold rows vanish, its predictions become "no label"
    m = cm([0, 0, 1, 2, 2], [1, 2, 0, 2, -1], 3)
    assert collapse(m, [0, None, 1]).tolist() == [[0, 1, 1], [0, 1, 1]]


# ---------------------------------------------------------------- bootstrap
def test_bootstrap_keeps_n_and_centres_on_the_counts():
    m = cm([0, 0, 0, 1, 1, 1, 1, 1], [0, 1, -1, 1, 1, 0, 1, 1], 2)
    reps = bootstrap_confusions(m, 4000, np.random.default_rng(0))
    assert reps.shape == (4000, 2, 3)
    assert (reps.sum(axis=(1, 2)) == 8).all()
    assert reps.mean(axis=0) == pytest.approx(m, abs=0.1)
    low, high = percentile_ci(weighted_f1(reps))
    assert low < float(weighted_f1(m)) < high


def test_bootstrap_of_nothing_is_undefined():
    reps = bootstrap_confusions(np.zeros((2, 3), dtype=int), 10, np.random.default_rng(0))
    assert percentile_ci(weighted_f1(reps)) is None


def test_paired_bootstrap_identical_models_never_differ():
    gold = np.array([0, 1, 1, 0, 1])
    pred = np.array([0, 1, 0, -1, 1])
    a, b = paired_bootstrap_confusions(gold, pred, pred, 2, 500, np.random.default_rng(1))
    deltas = weighted_f1(a) - weighted_f1(b)
    assert (deltas == 0).all() and paired_p_value(deltas) == 1.0


def test_paired_bootstrap_marginals_are_each_models_confusion():
    rng = np.random.default_rng(2)
    gold, pa, pb = rng.integers(0, 3, 200), rng.integers(-1, 3, 200), rng.integers(-1, 3, 200)
    a, b = paired_bootstrap_confusions(gold, pa, pb, 3, 3000, rng)
    assert a.mean(axis=0) == pytest.approx(confusion(gold, pa, 3), rel=0.1, abs=1.0)
    assert b.mean(axis=0) == pytest.approx(confusion(gold, pb, 3), rel=0.1, abs=1.0)
    assert (a.sum(axis=2) == b.sum(axis=2)).all()  # same resampled gold in both


def test_paired_p_value_by_hand():
    assert paired_p_value(np.array([0.1, 0.2, 0.3, -0.1])) == pytest.approx(0.5)
    assert paired_p_value(np.array([np.nan])) is None


# ---------------------------------------------------------------- scikit-learn agreement
codes = st.integers(min_value=2, max_value=6).flatmap(
    lambda k: st.tuples(st.just(k), arrays(np.int64, st.integers(1, 60), elements=st.integers(0, k - 1)), st.data())
)


@settings(max_examples=150, deadline=None)
@given(codes)
def test_weighted_f1_and_accuracy_agree_with_sklearn(case):
    from sklearn.metrics import accuracy_score, f1_score

    k, gold, data = case
    pred = data.draw(arrays(np.int64, gold.shape, elements=st.integers(-1, k - 1)))
    m = confusion(gold, pred, k)
    assert float(weighted_f1(m)) == pytest.approx(f1_score(gold, pred, average="weighted", zero_division=0))
    assert float(accuracy(m)) == pytest.approx(accuracy_score(gold, pred))


@settings(max_examples=150, deadline=None)
@given(codes)
def test_weighted_accuracy_is_one_vs_rest_balanced_accuracy(case):
    from sklearn.metrics import balanced_accuracy_score

    k, gold, data = case
    pred = data.draw(arrays(np.int64, gold.shape, elements=st.integers(-1, k - 1)))
    wa = per_class_weighted_accuracy(confusion(gold, pred, k))
    for c in np.unique(gold):
        if (gold != c).any():  # with both positives and negatives the definitions coincide
            assert wa[c] == pytest.approx(balanced_accuracy_score(gold == c, pred == c))
        else:
            assert wa[c] == pytest.approx(np.mean(pred[gold == c] == c))
    assert np.isnan(wa[[c for c in range(k) if c not in gold]]).all()

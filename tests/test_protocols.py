"""hba-score --protocol reference against an independent implementation of the reference code's rules,
and the places where the paper protocol and the reference protocol differ, on purpose-built cases.

The reference rules below were written from reading MIT-MI/human_behavior_atlas
``training/sft/evaluate/detailed_multi_task_evaluation.py``, ``helper_senti.py`` and ``helper_emo.py``:
plain Python loops over global class indices, as that code does; nothing here calls hba's metrics.
"""

from __future__ import annotations

import random
import re

import pytest
from click.testing import CliRunner

from hba_core import registry
from hba_core.scoring import PROTOCOLS, predictions_from_rows, score, truth_from_rows
from hba_tools.score import main

CLS_DATASETS = [d.name for d in registry.get().datasets.values() if not d.is_free_text]
GLOBAL = {(domain, label): i for i, (domain, label) in enumerate(registry.global_classes())}
SENTIMENT = registry.domain("sentiment_intensity").labels


# ---------------------------------------------------------------- the reference rules, independently
def _safe(num: float, den: float) -> float:
    return num / den if den > 0 else 0.0


def ref_set_metrics(preds: list[int], gts: list[int]) -> tuple[float, float]:
    """(weighted F1, micro accuracy) as compute_set_metrics: classes = the gold labels present."""
    labels = set(gts)
    m = {c: {"tp": 0, "fp": 0, "fn": 0, "count": 0} for c in labels}
    for p, t in zip(preds, gts):
        for c in labels:
            if t == c:
                m[c]["count"] += 1
            if p == c and t == c:
                m[c]["tp"] += 1
            elif p == c and t != c:
                m[c]["fp"] += 1
            elif p != c and t == c:
                m[c]["fn"] += 1
    weighted, total, tp_all = 0.0, 0, 0
    for c in m.values():
        precision = _safe(c["tp"], c["tp"] + c["fp"])
        recall = _safe(c["tp"], c["tp"] + c["fn"])
        f1 = _safe(2 * precision * recall, precision + recall)
        if c["count"] > 0:
            weighted += f1 * c["count"]
            total += c["count"]
        tp_all += c["tp"]
    return _safe(weighted, total), _safe(tp_all, total)


def ref_emotion(preds: list[int], gts: list[int]) -> float:
    accs = []
    for c in sorted(set(gts)):
        P = sum(t == c for t in gts)
        N = sum(t != c for t in gts)
        TP = sum(t == c and p == c for p, t in zip(preds, gts))
        TN = sum(t != c and p != c for p, t in zip(preds, gts))
        accs.append(0.5 * (_safe(TP, P) + _safe(TN, N)))
    return sum(accs) / len(accs) if accs else 0.0


def ref_sentiment(preds: list[int], gts: list[int]) -> dict[str, float]:
    g2p = {GLOBAL[("sentiment_intensity", label)]: i for i, label in enumerate(SENTIMENT)}
    neg, neu, pos = {0, 1, 2}, {3}, {4, 5, 6}

    def collapse(seq: list[int], mode: int) -> list[int]:
        out = []
        for v in seq:
            if mode == 7:
                out.append(v)
            elif mode == 5:
                out.append(
                    0
                    if v == min(neg)
                    else 1
                    if v in neg - {min(neg)}
                    else 2
                    if v in neu
                    else 3
                    if v in pos - {max(pos)}
                    else 4
                    if v == max(pos)
                    else -1
                )
            elif mode == 3:
                out.append(0 if v in neg else 1 if v in neu else 2 if v in pos else -1)
            else:
                out.append(1 if v in pos else 0 if v in neg else -1)
        return out

    t_pos = [g2p.get(v, -1) for v in gts]
    p_pos = [g2p.get(v, -1) for v in preds]
    out = {}
    for mode in (7, 5, 3):
        f1w, acc = ref_set_metrics(collapse(p_pos, mode), collapse(t_pos, mode))
        out[f"acc{mode}"], out[f"f1w{mode}"] = acc, f1w
    keep = [i for i, t in enumerate(t_pos) if t not in neu]
    if keep:
        f1w, acc = ref_set_metrics(collapse([p_pos[i] for i in keep], 2), collapse([t_pos[i] for i in keep], 2))
    else:
        f1w, acc = 0.0, 0.0
    out["acc2"], out["f1w2"] = acc, f1w
    return out


_REF_BOX = re.compile(r"\\boxed{([^}]*)}")
_REF_BRACKETS = re.compile(r"\[(.*?)\]")


def ref_global(text: str | None, dataset: str) -> int:
    """The reference parser for free text: first box, else first [...], else the text; stripped; exact."""
    if text is None:
        return -1
    found = _REF_BOX.search(text) or _REF_BRACKETS.search(text)
    span = (found.group(1) if found else text).strip()
    domain = registry.dataset(dataset).task.domain
    return GLOBAL.get((domain.name, span), -1)


def ref_dataset(dataset: str, texts: list[str | None], golds: list[str]) -> dict[str, float]:
    domain = registry.dataset(dataset).task.domain
    preds = [ref_global(t, dataset) for t in texts]
    gts = [GLOBAL[(domain.name, g)] for g in golds]
    out = {"weighted_f1": ref_set_metrics(preds, gts)[0]}
    if domain.name == "sentiment_intensity":
        out.update(ref_sentiment(preds, gts))
        out["value"] = out["f1w2"]
    elif domain.name == "emotion":
        out["value"] = ref_emotion(preds, gts)
    else:
        out["value"] = out["weighted_f1"]
    return out


# ---------------------------------------------------------------- hba under the reference protocol
def _rows(dataset: str, golds: list[str], prefix: str) -> list[dict]:
    return [
        {"id": f"{prefix}{i}", "dataset": dataset, "problem": "q", "answer": g, "class_label": g}
        for i, g in enumerate(golds)
    ]


def _head_predictions(rng: random.Random, dataset: str, n: int) -> list[str | None]:
    """A head over the task's whole label domain (as the reference trains it), plus a few non-answers."""
    domain = registry.dataset(dataset).task.domain.labels
    return [rng.choice([*domain, *domain, None, "?"]) if rng.random() < 0.1 else rng.choice(domain) for _ in range(n)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reference_protocol_equals_the_reference_rules_on_all_13_datasets(seed):
    assert len(CLS_DATASETS) == 13
    rng = random.Random(seed)
    rows, preds, expected = [], [], {}
    for dataset in CLS_DATASETS:
        labels = registry.dataset(dataset).labels
        n = rng.randint(5, 60)
        golds = [rng.choice(labels) for _ in range(n)]
        texts = _head_predictions(rng, dataset, n)
        part = _rows(dataset, golds, f"{dataset}-")
        rows += part
        preds += [{"id": r["id"], "prediction": t} for r, t in zip(part, texts)]
        expected[dataset] = ref_dataset(dataset, texts, golds)
    truth = truth_from_rows(rows)
    report = score(truth, [predictions_from_rows("m", preds, truth)], protocol="reference")
    assert report["protocol"] == "reference"
    got = report["models"][0]["datasets"]
    for dataset in CLS_DATASETS:
        assert got[dataset]["value"] == pytest.approx(expected[dataset]["value"], abs=1e-12, rel=0), dataset
        if "acc7" in expected[dataset]:
            for key in ("acc7", "f1w7", "acc5", "f1w5", "acc3", "f1w3", "acc2", "f1w2"):
                assert got[dataset]["intensity"][key] == pytest.approx(expected[dataset][key], abs=1e-12, rel=0), (
                    dataset,
                    key,
                )


def test_protocols_are_declared_in_the_registry():
    import tomllib
    from importlib import resources

    raw = tomllib.loads(resources.files("hba_core").joinpath("registry.toml").read_text(encoding="utf-8"))
    assert tuple(raw["score_protocols"]) == PROTOCOLS


# ---------------------------------------------------------------- where paper and reference differ
def _both(dataset: str, golds: list[str], texts: list[str | None]) -> tuple[dict, dict]:
    truth = truth_from_rows(_rows(dataset, golds, "s"))
    rows = [{"id": f"s{i}", "prediction": t} for i, t in enumerate(texts)]
    paper = score(truth, [predictions_from_rows("m", rows, truth)])["models"][0]["datasets"][dataset]
    ref = score(truth, [predictions_from_rows("m", rows, truth)], protocol="reference")["models"][0]["datasets"]
    return paper, ref[dataset]


def test_five_class_grouping_differs():
    # gold negative, predicted highly negative: the paper clips to +-2 ({hn, n} together), the reference
    # groups {hn} {n, wn} {neu} {wp, p} {hp}
    paper, ref = _both("mosei_senti", ["negative", "weakly positive"], ["highly negative", "positive"])
    assert paper["intensity"]["acc5"] == 0.5  # hn == n, but wp != p
    assert ref["intensity"]["acc5"] == 0.5  # hn != n, but wp == p
    paper, ref = _both("mosei_senti", ["negative"], ["highly negative"])
    assert (paper["intensity"]["acc5"], ref["intensity"]["acc5"]) == (1.0, 0.0)


def test_reference_reports_seven_classes_for_every_sentiment_dataset():
    paper, ref = _both("chsimsv2", ["weakly positive", "highly negative"], ["weakly positive", "weakly negative"])
    assert set(paper["intensity"]) == {"acc5", "f1w5", "acc3", "f1w3", "acc2", "f1w2"}
    assert set(ref["intensity"]) == {f"{m}{k}" for m in ("acc", "f1w") for k in (7, 5, 3, 2)}
    assert ref["intensity"]["acc7"] == 0.5


def test_emotion_with_one_gold_class():
    # no negatives: the paper's weighted accuracy is the recall TP/P, the reference's 0.5 * TP/P
    paper, ref = _both("cremad", ["anger", "anger"], ["anger", "anger"])
    assert (paper["value"], ref["value"]) == (1.0, 0.5)


def test_free_text_reading_differs():
    texts = ["Anger", r"<think>x</think>\boxed{\text{anger}}", "[anger] it is", "anger"]
    paper, ref = _both("cremad", ["anger", "sad", "anger", "sad"], texts)
    anger = paper["confusion"]["labels"].index("anger")
    # paper: every reply reads as anger (case, LaTeX and a lone label in prose are fine)
    assert (paper["answered"], paper["unparseable"], paper["confusion"]["matrix"][anger][anger]) == (4, 0, 2)
    # reference: case-sensitive exact match ("Anger" is not a label), and its box regex stops at the first "}"
    assert (ref["answered"], ref["unparseable"]) == (2, 2)
    assert ref["confusion"]["matrix"][ref["confusion"]["labels"].index("anger")][0] == 1


def test_sen_counts_any_sentiment_label_by_polarity_and_shows_outside_labels():
    # CH-SIMS v2 has no plain "negative"/"positive"; a head over the 7-class domain may answer them
    paper, ref = _both("chsimsv2", ["weakly negative", "highly positive"], ["negative", "positive"])
    assert paper["value"] == ref["value"] == 1.0
    assert paper["outside_labels"] == 2 and paper["answered"] == 2  # answered by polarity
    assert [e["label"] for e in paper["outside_examples"]] == ["negative", "positive"]


def test_undefined_is_null_in_paper_and_zero_in_reference():
    paper, ref = _both("meld_senti", ["neutral", "neutral"], ["neutral", "positive"])
    assert (paper["value"], ref["value"]) == (None, 0.0)


def test_cli_protocol_option(tmp_path):
    import orjson

    truth = tmp_path / "t.jsonl"
    truth.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in _rows("cremad", ["anger", "anger"], "s")))
    preds = tmp_path / "p.jsonl"
    preds.write_bytes(b'{"id": "s0", "prediction": "anger"}\n{"id": "s1", "prediction": "anger"}\n')
    values = {}
    for protocol in PROTOCOLS:
        result = CliRunner().invoke(main, ["--truth", str(truth), str(preds), "--protocol", protocol])
        assert result.exit_code == 0, result.output
        report = orjson.loads(result.stdout)
        values[protocol] = (report["protocol"], report["models"][0]["datasets"]["cremad"]["value"])
    assert values == {"paper": ("paper", 1.0), "reference": ("reference", 0.5)}
    bad = CliRunner().invoke(main, ["--truth", str(truth), str(preds), "--protocol", "papr"])
    assert bad.exit_code == 2 and "papr" in bad.output

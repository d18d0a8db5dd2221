"""Joining truth, predictions and judgments; per-dataset and per-task scores; counts; report formats."""

from __future__ import annotations

import csv
import io

import numpy as np
import orjson
import pytest

from hba_core import registry, schemas
from hba_core.errors import InputError
from hba_core.fixtures.atlas import fixture_sample
from hba_core.score_formats import columns, plot_heatmap, ranks, to_csv, to_latex, to_markdown
from hba_core.scoring import (
    attach_judgments,
    embedded_predictions,
    load_predictions,
    load_truth,
    predictions_from_rows,
    score,
    truth_from_rows,
)


def row(dataset: str, label: str | None, sid: str, **extra) -> dict:
    return {
        "id": sid,
        "dataset": dataset,
        "problem": "q",
        "answer": label or "a reference answer",
        "class_label": label,
        **extra,
    }


def ids_of(truth, dataset):
    return [sid for sid, d in zip(truth.ids, truth.dataset) if truth.names[d] == dataset]


@pytest.fixture
def atlas_rows():
    """Every dataset, 8 samples each (classification labels cycle through the label set)."""
    return [fixture_sample(d, i, "test", video=None, audio=None) for d in registry.dataset_names() for i in range(8)]


def judgments_for(truth, correct) -> list[tuple[int, dict]]:
    rows = []
    for sid, d in zip(truth.ids, truth.dataset):
        if registry.dataset(truth.names[d]).is_free_text:
            rows.append((len(rows) + 1, {"id": sid, "status": "ok", "correct": correct(sid)}))
    return rows


def test_gold_answers_score_one_everywhere(atlas_rows):
    truth = truth_from_rows(atlas_rows)
    preds = predictions_from_rows("gold", [{"id": r["id"], "prediction": r["answer"]} for r in atlas_rows], truth)
    attach_judgments(preds, judgments_for(truth, lambda sid: True), truth, "j")
    report = score(truth, [preds])
    model = report["models"][0]
    assert {code: t["value"] for code, t in model["tasks"].items()} == dict.fromkeys(registry.get().tasks, 1.0)
    assert model["counts"] == {
        "lines": 128,
        "matched": 128,
        "missing": 0,
        "duplicate": 0,
        "unknown_id": 0,
        "invalid": 0,
        "unparseable": 0,
        "outside_labels": 0,
    }
    assert schemas.errors(report, "score-report") == []


def test_sen_binary_weighted_f1_by_hand():
    golds = ["highly negative", "weakly negative", "neutral", "positive", "highly positive"]
    truth = truth_from_rows([row("mosei_senti", g, f"s{i}") for i, g in enumerate(golds)])
    answers = ["negative", "Weakly positive.", "positive", "neutral", "I refuse"]
    preds = predictions_from_rows("m", [{"id": f"s{i}", "prediction": a} for i, a in enumerate(answers)], truth)
    d = score(truth, [preds])["models"][0]["datasets"]["mosei_senti"]
    # neutral gold dropped; gold [neg, neg, pos, pos], predicted [neg, pos, wrong(neutral), wrong(unparseable)]
    # negative: TP1 FP0 FN1 -> F1 2/3; positive: TP0 FP1 FN2 -> 0; weighted (2 * 2/3 + 2 * 0) / 4
    assert d["value"] == pytest.approx(1 / 3)
    assert (d["n"], d["dropped_neutral"], d["unparseable"]) == (4, 1, 1)
    assert d["unparseable_examples"] == [{"id": "s4", "prediction": "I refuse", "reason": "no label"}]
    # intensity collapses: scores gold [-3,-1,0,2,3], predicted [-2,1,2,0,none]
    i = d["intensity"]
    assert i["acc7"] == 0.0
    assert i["acc5"] == pytest.approx(1 / 5)  # clip to +-2: -3 -> -2 matches -2
    assert i["acc3"] == pytest.approx(1 / 5)  # signs gold [-,-,0,+,+] predicted [-,+,+,0,none]
    assert i["acc2"] == pytest.approx(1 / 4)
    assert i["f1w2"] == pytest.approx(d["value"])


def test_sentiment_granularities_follow_the_label_set():
    truth = truth_from_rows([row("chsimsv2", "weakly positive", "c"), row("meld_senti", "neutral", "m")])
    preds = predictions_from_rows(
        "m", [{"id": "c", "prediction": "highly positive"}, {"id": "m", "prediction": "neutral"}], truth
    )
    datasets = score(truth, [preds])["models"][0]["datasets"]
    assert sorted(datasets["chsimsv2"]["intensity"]) == ["acc2", "acc3", "acc5", "f1w2", "f1w3", "f1w5"]
    assert datasets["chsimsv2"]["intensity"]["acc3"] == 1.0 and datasets["chsimsv2"]["intensity"]["acc5"] == 0.0
    assert sorted(datasets["meld_senti"]["intensity"]) == ["acc2", "acc3", "f1w2", "f1w3"]
    # only a neutral gold: binary F1 has no samples, and says so
    assert datasets["meld_senti"]["value"] is None and datasets["meld_senti"]["n"] == 0
    assert datasets["meld_senti"]["intensity"]["acc3"] == 1.0 and datasets["meld_senti"]["intensity"]["acc2"] is None
    assert any("no samples" in note for note in datasets["meld_senti"]["notes"])


def test_emo_mean_weighted_accuracy_by_hand():
    truth = truth_from_rows([row("cremad", g, f"e{i}") for i, g in enumerate(["anger", "anger", "sad", "fear"])])
    preds = predictions_from_rows(
        "m", [{"id": f"e{i}", "prediction": p} for i, p in enumerate(["angry", "Sadness", "sad", "purple"])], truth
    )
    d = score(truth, [preds])["models"][0]["datasets"]["cremad"]
    # anger P2 TP1 N2 TN2 -> .75; sad P1 TP1 N3 TN2 -> .5 + 1/3; fear P1 TP0 N3 TN3 -> .5
    assert d["value"] == pytest.approx((0.75 + 0.5 + 1 / 3 + 0.5) / 3)
    assert d["confusion"]["columns"][-1] == "(no label)"
    assert d["confusion"]["matrix"][d["confusion"]["labels"].index("fear")][-1] == 1


def test_missing_duplicate_unknown_and_invalid_are_counted_never_dropped():
    truth = truth_from_rows([row("mmsd", "sarcasm", "a"), row("mmsd", "not sarcasm", "b"), row("mmsd", "sarcasm", "c")])
    rows = [
        {"id": "a", "prediction": "sarcasm"},
        {"id": "a", "prediction": "not sarcasm"},
        {"id": "zzz", "prediction": "sarcasm"},
        {"prediction": "sarcasm"},
        {"id": "b", "prediction": 3},
    ]
    preds = predictions_from_rows("m", rows, truth, source="p.jsonl")
    model = score(truth, [preds])["models"][0]
    c = model["counts"]
    assert (c["matched"], c["missing"], c["duplicate"], c["unknown_id"], c["invalid"]) == (1, 2, 1, 1, 2)
    assert c["lines"] == c["matched"] + c["duplicate"] + c["unknown_id"] + c["invalid"]
    d = model["datasets"]["mmsd"]
    assert d["samples"] == d["n"] == 3 and d["missing"] == 2  # missing predictions stay in, as wrong
    # sarcasm: TP1 FN1 FP0 -> 2/3 ; not sarcasm: TP0 -> 0 ; weighted (2 * 2/3) / 3
    assert d["value"] == pytest.approx(4 / 9)
    assert "p.jsonl:2: duplicate prediction for 'a' (the first one is kept)" in model["problems"]
    assert any(p.startswith("p.jsonl:3: id 'zzz' is not in the truth") for p in model["problems"])


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"id": "a", "prediction": "x"}, {"id": "a", "prediction": "y"}], "p.jsonl:2: duplicate prediction"),
        ([{"id": "a", "prediction": "x"}, {"id": "q", "prediction": "y"}], "p.jsonl:2: id 'q' is not in the truth"),
        ([{"id": "a", "prediction": "x"}], "p.jsonl: 1 truth samples have no prediction (first: 'b')"),
    ],
)
def test_strict_turns_problems_into_errors(rows, message):
    truth = truth_from_rows([row("mmsd", "sarcasm", "a"), row("mmsd", "sarcasm", "b")])
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        predictions_from_rows("m", rows, truth, source="p.jsonl", strict=True)


def test_bad_lines_in_a_file_are_counted(tmp_path):
    truth = truth_from_rows([row("mmsd", "sarcasm", "a")])
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": "a", "prediction": "sarcasm"}\nnot json\n[1]\n')
    preds = load_predictions(path, "m", truth)
    assert preds.counts["invalid"] == 2 and preds.counts["matched"] == 1
    assert any(":2: not valid JSON" in p for p in preds.problems)
    with pytest.raises(InputError, match=r"p.jsonl:2: not valid JSON"):
        load_predictions(path, "m", truth, strict=True)


def test_judgments_only_true_counts_and_everything_else_is_reported():
    truth = truth_from_rows([row("siq2", None, f"q{i}") for i in range(6)] + [row("mmsd", "sarcasm", "s")])
    preds = predictions_from_rows("m", [{"id": f"q{i}", "prediction": "text"} for i in range(6)], truth)
    judged = [
        {"id": "q0", "status": "ok", "correct": True},
        {"id": "q1", "status": "ok", "correct": False},
        {"id": "q2", "status": "unparseable", "correct": None},
        {"id": "q3", "status": "error", "correct": None},
        {"id": "q0", "status": "ok", "correct": False},
        {"id": "nope", "status": "ok", "correct": True},
        {"id": "s", "status": "ok", "correct": True},
        {"id": "q4", "status": "ok", "correct": None},
    ]
    attach_judgments(preds, list(enumerate(judged, 1)), truth, "j.jsonl")
    model = score(truth, [preds])["models"][0]
    d = model["datasets"]["siq2"]
    assert d["value"] == pytest.approx(1 / 6)
    assert d["judgments"] == {"true": 1, "false": 1, "unjudged": 2, "unparseable": 1, "error": 1, "skipped": 0}
    assert "4 samples without a TRUE/FALSE judgment count as not TRUE" in d["notes"]
    j = model["judgments"]
    assert (j["duplicate"], j["unknown_id"], j["not_free_text"], j["invalid"], j["unjudged"]) == (1, 1, 1, 1, 2)
    with pytest.raises(InputError, match="j.jsonl:5: duplicate judgment"):
        attach_judgments(preds, list(enumerate(judged, 1)), truth, "j.jsonl", strict=True)


def test_free_text_without_judgments_is_undefined_not_zero():
    truth = truth_from_rows([row("mimeqa", None, "q")])
    preds = predictions_from_rows("m", [{"id": "q", "prediction": "an umbrella"}], truth)
    model = score(truth, [preds])["models"][0]
    assert model["datasets"]["mimeqa"]["value"] is None
    assert "no judgments were given" in model["datasets"]["mimeqa"]["notes"][0]
    assert model["tasks"]["NVC"]["value"] is None


def test_shared_judgment_file_is_split_by_model_field():
    truth = truth_from_rows([row("siq2", None, "q")])
    a = predictions_from_rows("a", [{"id": "q", "prediction": "x"}], truth)
    rows = [
        (1, {"id": "q", "status": "ok", "correct": True, "model": "a"}),
        (2, {"id": "q", "status": "ok", "correct": False, "model": "b"}),
    ]
    attach_judgments(a, rows, truth, "j", model="a")
    assert a.judgment_counts["other_model"] == 1 and score(truth, [a])["models"][0]["tasks"]["SOC"]["value"] == 1.0
    with pytest.raises(InputError, match='no "model" field'):
        attach_judgments(a, [(1, {"id": "q", "status": "ok", "correct": True})], truth, "j", model="a")


def test_task_is_the_mean_of_its_datasets_and_names_the_missing_ones():
    truth = truth_from_rows([row("daicwoz", "depression", "d1"), row("mmpsy_depression", "depression", "m1")])
    preds = predictions_from_rows(
        "m", [{"id": "d1", "prediction": "depressed"}, {"id": "m1", "prediction": "not depressed"}], truth
    )
    tasks = score(truth, [preds])["models"][0]["tasks"]
    assert tasks["DEP"]["value"] == pytest.approx(0.5) and tasks["DEP"]["datasets"] == ["daicwoz", "mmpsy_depression"]
    assert tasks["SEN"]["value"] is None and tasks["SEN"]["notes"] == ["no dataset of this task has a defined score"]


def test_truth_errors_name_the_line(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_bytes(orjson.dumps(row("mmsd", "sarcasm", "a")) + b"\n" + orjson.dumps(row("mmsd", "purple", "b")))
    with pytest.raises(InputError, match=r"t.jsonl:2: gold label 'purple' is not a mmsd label"):
        load_truth(path)
    path.write_bytes(orjson.dumps(row("nosuch", "x", "a")))
    with pytest.raises(InputError, match=r"t.jsonl:1: unknown dataset 'nosuch'"):
        load_truth(path)


def test_official_rows_without_ids_get_the_shared_derived_ids(tmp_path, atlas_rows):
    path = tmp_path / "official.jsonl"
    path.write_bytes(b"".join(orjson.dumps({k: v for k, v in r.items() if k != "id"}) + b"\n" for r in atlas_rows))
    truth = load_truth(path, pred_fields=("answer",))
    assert len(truth.ids) == len(atlas_rows) == len(set(truth.ids))
    preds = embedded_predictions(truth, "answer")
    model = score(truth, [preds])["models"][0]
    assert model["name"] == "answer" and model["counts"]["matched"] == len(atlas_rows)
    assert model["tasks"]["EMO"]["value"] == 1.0


def test_bootstrap_intervals_and_paired_comparison(atlas_rows):
    truth = truth_from_rows(atlas_rows)
    good = predictions_from_rows("good", [{"id": r["id"], "prediction": r["answer"]} for r in atlas_rows], truth)
    bad = predictions_from_rows("bad", [{"id": r["id"], "prediction": "?"} for r in atlas_rows], truth)
    report = score(truth, [good, bad], bootstrap=300, seed=3, compare=("good", "bad"))
    assert schemas.errors(report, "score-report") == []
    for model in report["models"]:
        for name, d in model["datasets"].items():
            if d["value"] is not None:
                assert d["ci"][0] <= d["value"] + 1e-12 and d["value"] - 1e-12 <= d["ci"][1], name
    comparison = report["comparisons"][0]
    assert comparison["tasks"]["EMO"]["delta"] > 0.4 and comparison["tasks"]["EMO"]["p_value"] < 0.05
    again = score(truth, [good, bad], bootstrap=300, seed=3, compare=("good", "bad"))
    assert again["comparisons"] == report["comparisons"]  # seeded
    with pytest.raises(InputError, match="no model named 'c'"):
        score(truth, [good, bad], compare=("good", "c"))


# ---------------------------------------------------------------- formats
@pytest.fixture
def three_models(atlas_rows):
    truth = truth_from_rows(atlas_rows)
    rng = np.random.default_rng(0)
    models = []
    for name, p in (("a", 0.9), ("b", 0.6), ("c", 0.3)):
        rows = [{"id": r["id"], "prediction": r["answer"] if rng.random() < p else "?"} for r in atlas_rows]
        m = predictions_from_rows(name, rows, truth)
        attach_judgments(m, judgments_for(truth, lambda sid, p=p: bool(rng.random() < p)), truth, "j")
        models.append(m)
    return score(truth, models)


def test_markdown_has_the_table4_layout(three_models):
    text = to_markdown(three_models)
    lines = text.splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header[:5] == ["Model", "SEN · CMU-MOSEI", "SEN · MELD", "SEN · CH-SIMS v2", "EMO · CMU-MOSEI"]
    assert lines[1].startswith("| --- | --- |")
    assert lines[2].startswith("| a |") and lines[4].startswith("| c |")
    first_col = [ln.strip("|").split("|")[1].strip() for ln in lines[2:5]]
    ranked = ranks([three_models["models"][i]["datasets"]["mosei_senti"]["value"] for i in range(3)])
    for cell, r in zip(first_col, ranked):
        assert cell.startswith("**") == (r == 0) and cell.startswith("<u>") == (r == 1)
    assert "| Model | SEN | EMO | SOC | INT | NVC | HUM | SAR | ANX | DEP | PTSD |" in lines


def test_csv_and_latex(three_models):
    rows = list(csv.DictReader(io.StringIO(to_csv(three_models))))
    assert len(rows) == 3 * (16 + 10)
    task_row = next(r for r in rows if r["model"] == "b" and r["task"] == "EMO" and r["dataset"] == "")
    assert float(task_row["value"]) == pytest.approx(three_models["models"][1]["tasks"]["EMO"]["value"])
    tex = to_latex(three_models)
    assert r"\multicolumn{4}{c}{EMO}" in tex and r"\textbf{" in tex and r"\underline{" in tex
    assert tex.count(r"\\") == 2 + 3


def test_only_scored_datasets_become_columns():
    report = {"models": [{"name": "m", "datasets": {"tess": {"value": 0.5}}, "tasks": {"EMO": {"value": 0.5}}}]}
    assert columns(report) == [("EMO", ["tess"])]


def test_heatmap_png(three_models, tmp_path):
    out = plot_heatmap(three_models, tmp_path / "fig" / "heat.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_judgment_statuses_are_declared_once():
    from importlib import resources

    from hba_core.scoring import JUDGE_STATUSES

    def schema(name):
        return orjson.loads(resources.files("hba_core.schema_files").joinpath(f"{name}.schema.json").read_bytes())

    assert tuple(schema("judgment")["properties"]["status"]["enum"]) == JUDGE_STATUSES
    per_dataset = schema("score-report")["$defs"]["dataset"]["properties"]["judgments"]["required"]
    assert per_dataset == ["true", "false", "unjudged", *(s for s in JUDGE_STATUSES if s != "ok")]

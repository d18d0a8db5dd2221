"""What a person reads from hba-score (table.md, heatmap.png, --subset's summary) and the one-pass truth reader."""

from __future__ import annotations

import orjson
import pytest
from click.testing import CliRunner

from hba_core.errors import InputError
from hba_core.samples import iter_samples
from hba_core.score_formats import heatmap_figure, to_markdown
from hba_core.scoring import (
    attach_judgments,
    load_all,
    load_truth,
    predictions_from_rows,
    score,
    truth_from_rows,
    truth_reader,
)
from hba_core.scoring.join import _build_truth
from hba_tools.score import main

GOLD = {"mmsd": "sarcasm", "tess": "anger", "siq2": "Because she is happy.", "mosei_emotion": "happy"}


def _row(dataset: str, i: int) -> dict:
    answer = GOLD[dataset]
    label = None if dataset == "siq2" else answer
    return {"dataset": dataset, "problem": f"<video>\nQuestion {i}?", "answer": answer, "class_label": label}


def _write(path, rows):
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return path


@pytest.fixture
def truth():
    return truth_from_rows([_row(d, i) for d in GOLD for i in range(4)])


def test_markdown_header_legend_counts_and_note(truth):
    right = predictions_from_rows("right", [{"id": i, "prediction": a} for i, a in zip(truth.ids, _answers())], truth)
    silent = predictions_from_rows("silent", [{"id": i, "prediction": "I cannot tell."} for i in truth.ids], truth)
    text = to_markdown(score(truth, [right, silent]), notes=["tiny random-weight fixtures"])
    lines = text.splitlines()
    assert lines[0] == "> **Note:** tiny random-weight fixtures"
    header = lines.index("| Model | EMO · CMU-MOSEI | EMO · TESS | SOC · Social-IQ 2.0 | SAR · MUStARD |")
    assert lines[header + 1] == "| --- | --- | --- | --- | --- |"  # directly under the header: it renders as one
    assert not any(ln.startswith("| **") for ln in lines)  # no bold-only pseudo-header row
    assert lines[header + 2] == "| right | **1.000** (4/4) | **1.000** (4/4) | – (not judged) | **1.000** (4/4) |"
    floor = "– (0/4 answered)"  # nothing answered: the metric's floor (.500 for EMO, .000 for SAR) is not shown
    assert lines[header + 3] == f"| silent | {floor} | {floor} | – (not judged) | {floor} |"
    legend = text[text.index("Legend:") :]
    assert "- EMO: mean weighted accuracy." in legend and "- SAR: weighted f1." in legend
    assert "- SOC: judge accuracy." in legend
    assert "`– (not judged)`" in legend and "`– (no samples)`" in legend and "(answered/samples)" in legend


def test_a_judged_free_text_cell_counts_the_judged_samples(truth):
    preds = predictions_from_rows("m", [{"id": i, "prediction": "x"} for i in truth.ids], truth)
    free = [i for i in truth.ids if i.startswith("siq2")]
    judged = [(k, {"id": i, "status": "ok", "correct": k < 2}) for k, i in enumerate(free[:3])]
    attach_judgments(preds, judged, truth, "j")
    per_dataset = to_markdown(score(truth, [preds])).split("Mean per task:")[0]
    assert "| – (0/4 answered) | .500 (3/4) | – (0/4 answered) |" in per_dataset  # 2 TRUE of 4; 3 judged


def test_a_model_without_a_dataset_shows_no_samples():
    report = {
        "models": [
            {"name": "a", "datasets": {"tess": {"value": 0.5, "answered": 2, "samples": 4}}, "tasks": {}},
            {"name": "b", "datasets": {}, "tasks": {}},
        ]
    }
    lines = to_markdown(report).splitlines()
    assert "| b | – (no samples) |" in lines


def _answers():
    return [GOLD[d] for d in GOLD for _ in range(4)]


def test_heatmap_has_a_colourbar_an_absolute_scale_and_hatched_missing_cells(truth):
    preds = predictions_from_rows("only", [{"id": i, "prediction": a} for i, a in zip(truth.ids, _answers())], truth)
    sarcasm = [i for i in truth.ids if i.startswith("mmsd")]
    for i in sarcasm[:3]:
        preds.texts[truth.index[i]] = "not sarcasm"  # SAR weighted F1 .400, EMO 1.0: one model, two colours
    fig = heatmap_figure(score(truth, [preds]), notes=["fixture"])
    main_ax, bar_ax = fig.axes  # the heatmap and its colour bar
    image = main_ax.images[0]
    assert (image.norm.vmin, image.norm.vmax) == (0, 1)  # absolute scale, not per-task rank
    data = image.get_array()
    codes = [t.get_text() for t in main_ax.get_xticklabels()]
    assert codes == ["EMO", "SOC", "SAR"]
    assert data[0, codes.index("EMO")] == pytest.approx(1.0) and data[0, codes.index("SAR")] < 0.5
    assert bool(data.mask[0, codes.index("SOC")])  # not judged: no colour of the scale
    missing = [p for p in main_ax.patches if p.get_gid() == "missing"]
    assert len(missing) == 1 and missing[0].get_hatch() == "///"
    assert missing[0].get_xy() == (codes.index("SOC") - 0.5, -0.5)
    assert "absolute 0-1 scale" in main_ax.get_title() and "fixture" in main_ax.get_title()
    assert bar_ax.get_ylabel() == "score (0-1)"


def test_subset_counts_outside_ids_in_one_line(tmp_path, truth):
    rows = [_row(d, i) for d in GOLD for i in range(4)]
    cut = _write(tmp_path / "cut.jsonl", [r for r in rows if r["dataset"] not in ("tess", "siq2")])
    preds = _write(tmp_path / "p.jsonl", [{"id": i, "prediction": a} for i, a in zip(truth.ids, _answers())])
    listed = CliRunner().invoke(main, ["--truth", str(cut), str(preds)])
    assert listed.exit_code == 0 and listed.stderr.count("is not in the truth") == 5  # 8, of which 5 are shown
    strict = CliRunner().invoke(main, ["--truth", str(cut), str(preds), "--strict"])
    assert strict.exit_code == 1 and "is not in the truth" in strict.output
    assert CliRunner().invoke(main, ["--truth", str(cut), str(preds), "--subset", "--strict"]).exit_code == 0
    result = CliRunner().invoke(main, ["--truth", str(cut), str(preds), "--subset"])
    assert result.exit_code == 0, result.output
    assert "is not in the truth" not in result.stderr
    assert "p: 8 predictions for ids outside the truth left out (--subset)" in result.stderr


def _mixed_rows():
    rows = [_row(d, i) for d in GOLD for i in range(40)]
    rows[5]["id"] = "given-5"
    rows += [dict(rows[7]), dict(rows[7]), dict(rows[100])]  # identical lines: #2, #3 - one far from the first
    return rows


@pytest.mark.parametrize("workers", [1, 3])
def test_one_pass_reader_matches_the_general_path(tmp_path, monkeypatch, workers):
    path = _write(tmp_path / "t.jsonl", _mixed_rows())
    path.write_bytes(path.read_bytes().replace(b"\n", b"\n\n", 3))  # blank lines count in line numbers
    monkeypatch.setattr(truth_reader, "PARALLEL_BYTES", 0)  # split even this small file into byte ranges
    general = _build_truth(iter_samples(path), str(path), ("answer",))
    fast, _ = load_all(path, [], workers=workers, pred_fields=("answer",))
    assert fast.ids == general.ids and fast.index == general.index
    assert (fast.dataset == general.dataset).all() and (fast.gold == general.gold).all()
    assert fast.embedded == general.embedded
    assert sum("#" in i for i in fast.ids) == 3


@pytest.mark.parametrize("workers", [1, 2])
def test_errors_name_the_absolute_line_in_any_range(tmp_path, monkeypatch, workers):
    rows = [orjson.dumps(_row("tess", i)) for i in range(50)]
    rows[44] = orjson.dumps({**_row("tess", 44), "id": 12})
    path = tmp_path / "t.jsonl"
    path.write_bytes(b"\n".join(rows) + b"\n")
    monkeypatch.setattr(truth_reader, "PARALLEL_BYTES", 0)
    with pytest.raises(InputError, match=r"t\.jsonl:45: 'id' must be a string"):
        load_all(path, [], workers=workers)
    rows[44] = orjson.dumps({**_row("tess", 1), "id": "x"})
    rows[45] = orjson.dumps({**_row("tess", 2), "id": "x"})
    path.write_bytes(b"\n".join(rows) + b"\n")
    with pytest.raises(InputError, match=r"t\.jsonl:46: sample id 'x' repeats sample 45"):
        load_truth(path)


def test_the_recipes_score_function_notes_fixtures_and_scores_a_subset(tmp_path, truth):
    import os
    import subprocess
    from pathlib import Path

    rows = [_row(d, i) for d in GOLD for i in range(4)]
    cut = _write(tmp_path / "cut.jsonl", [r for r in rows if r["dataset"] not in ("tess", "siq2")])
    preds = _write(tmp_path / "p.jsonl", [{"id": i, "prediction": a} for i, a in zip(truth.ids, _answers())])
    lib = Path(__file__).resolve().parents[1] / "recipes" / "lib.sh"
    script = f'set -euo pipefail; source {lib}; RECIPE=t; R=$OUT/t; mkdir -p "$R/.done"; score --subset {cut} "A=$PRED"'
    env = {k: v for k, v in os.environ.items() if not k.startswith("HBA_JUDGE")}
    result = subprocess.run(
        ["bash", "-c", script, "recipe", f"OUT={tmp_path}", "PROFILE=mini", f"PRED={preds}"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    table = (tmp_path / "t" / "table.md").read_text()
    assert table.startswith("> **Note:** PROFILE=mini: every model here is a tiny random-weight fixture")
    assert "| A | **1.000** (4/4) |" not in table and "| A | 1.000 (4/4) |" in table  # one model: nothing bold
    assert "is not in the truth" not in result.stderr and "left out (--subset)" in result.stderr

"""Malformed input through every tool entry point: one clear line (file and line or id), no traceback, and
no valid row lost - a bad row is reported and the rest processed, or the run is refused before it starts.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from hba_core.jsonl import iter_jsonl, write_jsonl

GOOD = {"dataset": "cremad", "problem": "<audio>\nWhat emotion?", "answer": "sad", "audios": ["audio/clip0.wav"]}
# variant -> (the bad row, what the message must say)
BAD_ROWS = {
    "no_dataset": ({k: v for k, v in GOOD.items() if k != "dataset"}, "no 'dataset' field"),
    "no_problem": ({k: v for k, v in GOOD.items() if k != "problem"}, "no 'problem' field"),
    "unknown_dataset": ({**GOOD, "dataset": "nosuchds"}, "unknown dataset 'nosuchds'"),
    "media_as_a_string": ({**GOOD, "audios": "audio/clip0.wav"}, "'audios' must be a list of paths, got a string"),
}


def _no_traceback(result):
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output


def _samples(path, variants, good=2):
    """Good rows g0.., then one bad row per variant (ids bad-<variant>) from line ``good + 1`` on, then g-last."""
    rows = [{**GOOD, "id": f"g{i}"} for i in range(good)]
    rows += [{**BAD_ROWS[v][0], "id": f"bad-{v}"} for v in variants]
    rows.append({**GOOD, "id": "g-last"})
    write_jsonl(path, rows)
    return {v: good + 1 + i for i, v in enumerate(variants)}  # variant -> line


@pytest.fixture()
def folder(tmp_path):
    (tmp_path / "adir").mkdir()
    write_jsonl(tmp_path / "s.jsonl", [{**GOOD, "id": "g0"}])
    return tmp_path / "adir", tmp_path / "s.jsonl"


def _directory_cases(d, f, root):
    """(tool main, args) that each get a directory where a JSON Lines file belongs."""
    from hba_tools.convert import main as convert
    from hba_tools.descriptors import main as descriptors
    from hba_tools.judge import main as judge
    from hba_tools.score import main as score
    from hba_tools.validate import main as validate

    return {
        "score --truth": (score, ["--truth", d, "--pred", f]),
        "score --pred": (score, ["--truth", f, "--pred", d]),
        "convert validate": (convert, ["validate", d]),
        "convert stats": (convert, ["stats", d]),
        "convert select": (convert, ["select", d]),
        "validate": (validate, ["sample", d]),
        "descriptors extract": (descriptors, ["extract", "--samples", d, "--root", root, "--store", f"{d}.zarr"]),
        "judge --truth": (judge, ["--truth", d, "--pred", f, "--base-url", "http://127.0.0.1:9/v1"]),
        "judge --pred": (judge, ["--truth", f, "--pred", d, "--base-url", "http://127.0.0.1:9/v1"]),
    }


@pytest.mark.parametrize(
    "case",
    [
        "score --truth",
        "score --pred",
        "convert validate",
        "convert stats",
        "convert select",
        "validate",
        "descriptors extract",
        "judge --truth",
        "judge --pred",
    ],
)
def test_a_directory_given_as_an_input_file_is_one_line(folder, case):
    d, f = (str(p) for p in folder)
    tool, args = _directory_cases(d, f, str(folder[0].parent))[case]
    result = CliRunner().invoke(tool, args, env={"OPENAI_API_KEY": "k"})
    _no_traceback(result)
    assert result.exit_code in (1, 2)
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("Error")]
    assert "adir" in line and ("director" in line or "folder" in line), line


def test_predict_reports_each_bad_row_and_predicts_the_rest(fixtures, tmp_path):
    from hba_tools.predict import main

    lines = _samples(tmp_path / "in.jsonl", list(BAD_ROWS))
    out = tmp_path / "preds.jsonl"
    args = ["--model", str(fixtures.omni), "--mode", "generate", "--samples", str(tmp_path / "in.jsonl")]
    args += ["--data-root", str(fixtures.data), "--out", str(out), "--max-new-tokens", "2", "--workers", "0"]
    result = CliRunner().invoke(main, args)
    _no_traceback(result)
    assert result.exit_code == 0, result.output
    for variant, (_, message) in BAD_ROWS.items():
        assert f"in.jsonl:{lines[variant]} (bad-{variant}): {message}" in result.stderr, variant
    assert sorted(row["id"] for _, row in iter_jsonl(out)) == ["g-last", "g0", "g1"]  # no valid row lost


@pytest.mark.parametrize("variant", list(BAD_ROWS))
def test_sft_refuses_a_bad_row_before_training(fixtures, tmp_path, variant):
    from hba_tools.sft import main

    lines = _samples(tmp_path / "in.jsonl", [variant])
    write_jsonl(tmp_path / "in.jsonl", [{**row, "split": "train"} for _, row in iter_jsonl(tmp_path / "in.jsonl")])
    args = ["cls", str(tmp_path / "in.jsonl"), "--data-root", str(fixtures.data), "--model", str(fixtures.omni)]
    result = CliRunner().invoke(main, [*args, "-o", str(tmp_path / "run"), "--workers", "0"])
    _no_traceback(result)
    assert result.exit_code == 1
    assert f"in.jsonl:{lines[variant]} (bad-{variant}): {BAD_ROWS[variant][1]}" in result.stderr
    assert not (tmp_path / "run" / "last").exists()


@pytest.mark.parametrize("variant", list(BAD_ROWS))
def test_grpo_refuses_a_bad_row_before_training(fixtures, tmp_path, variant):
    from hba_tools.grpo import main

    lines = _samples(tmp_path / "in.jsonl", [variant])
    args = ["--init", str(fixtures.omni), "--train", str(tmp_path / "in.jsonl"), "--out", str(tmp_path / "run")]
    result = CliRunner().invoke(main, args)
    _no_traceback(result)
    assert result.exit_code == 1
    assert f"in.jsonl:{lines[variant]} (bad-{variant}): {BAD_ROWS[variant][1]}" in result.stderr


def test_transcribe_passes_bad_rows_through_reported_and_refuses_a_repeated_id(fixtures, tmp_path):
    pytest.importorskip("whisper")
    from hba_tools.transcribe import main

    lines = _samples(tmp_path / "in.jsonl", list(BAD_ROWS))
    args = ["--samples", str(tmp_path / "in.jsonl"), "--root", str(fixtures.data), "--model", str(fixtures.whisper)]
    result = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "out.jsonl")])
    _no_traceback(result)
    assert result.exit_code == 0, result.output
    for variant, (_, message) in BAD_ROWS.items():
        assert f"in.jsonl:{lines[variant]} (bad-{variant}): {message}" in result.stderr, variant
    out = {row["id"]: row for _, row in iter_jsonl(tmp_path / "out.jsonl")}
    assert len(out) == 7 and out["bad-no_problem"] == {**BAD_ROWS["no_problem"][0], "id": "bad-no_problem"}
    assert "problem" not in out["bad-no_problem"]  # no invented prompt
    assert "transcript" in out["g0"]["metadata"]
    strict = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "o2.jsonl"), "--strict"])
    assert strict.exit_code == 1
    write_jsonl(tmp_path / "dup.jsonl", [{**GOOD, "id": "x"}, {**GOOD, "id": "x"}])
    dup = CliRunner().invoke(main, ["--samples", str(tmp_path / "dup.jsonl"), *args[2:], "--out", str(tmp_path / "d")])
    _no_traceback(dup)
    assert dup.exit_code == 1 and "dup.jsonl:2: id 'x' already used on line 1" in dup.stderr


def test_descriptors_report_media_given_as_a_string_once(fixture_data, tmp_path):
    from hba_tools.descriptors import main

    lines = _samples(tmp_path / "in.jsonl", ["media_as_a_string"])
    args = ["extract", "--samples", str(tmp_path / "in.jsonl"), "--root", str(fixture_data.data)]
    result = CliRunner().invoke(main, [*args, "--store", str(tmp_path / "d.zarr"), "--streams", "audio"])
    _no_traceback(result)
    assert result.exit_code == 0, result.output
    assert "1 media: 1 extracted" in result.stderr and "0 errors, 1 bad rows" in result.stderr  # not 15 "not found"
    assert f"in.jsonl:{lines['media_as_a_string']} (bad-media_as_a_string): 'audios' must be" in result.stderr


def test_select_refuses_unknown_datasets_and_bad_lines_before_writing_anything(tmp_path):
    from hba_tools.convert import main

    lines = _samples(tmp_path / "in.jsonl", ["no_dataset", "unknown_dataset"])
    result = CliRunner().invoke(main, ["select", str(tmp_path / "in.jsonl")])
    _no_traceback(result)
    assert result.exit_code == 1 and result.stdout == ""
    assert f"in.jsonl:{lines['no_dataset']} (dataset None)" in result.stderr
    assert "2 samples have a missing or unknown dataset" in result.stderr
    with open(tmp_path / "in.jsonl", "a") as fh:
        fh.write("{oops\n")
    write_jsonl(tmp_path / "ok.jsonl", [{**GOOD, "id": "g0"}])
    torn = tmp_path / "torn.jsonl"
    torn.write_text((tmp_path / "ok.jsonl").read_text() + "{oops\n")
    result = CliRunner().invoke(main, ["select", str(torn)])
    assert result.exit_code == 1 and result.stdout == "" and "torn.jsonl:2" in result.stderr


def test_one_validator_for_hba_validate_and_hba_convert_validate(tmp_path):
    from hba_tools.convert import main as convert
    from hba_tools.validate import main as validate

    rows = [{**GOOD, "id": "a"}, {**GOOD, "id": "b"}, {**GOOD, "id": "a"}, {**GOOD, "dataset": "nosuchds", "id": "c"}]
    write_jsonl(tmp_path / "s.jsonl", rows)
    one = CliRunner().invoke(validate, ["sample", str(tmp_path / "s.jsonl")])
    other = CliRunner().invoke(convert, ["validate", str(tmp_path / "s.jsonl")])
    assert one.exit_code == other.exit_code == 1
    assert one.stdout == other.stdout
    assert f"{tmp_path / 's.jsonl'}:3: $.id: same id as line 1: 'a'" in one.stdout
    assert ":4: $.dataset: unknown dataset 'nosuchds'" in one.stdout


def test_validate_reads_a_pretty_printed_score_report_as_one_document(fixture_data, tmp_path):
    from hba_tools.score import main as score
    from hba_tools.validate import main as validate

    truth = [row for _, row in iter_jsonl(fixture_data.atlas) if row["dataset"] == "cremad"]
    write_jsonl(tmp_path / "t.jsonl", truth)
    write_jsonl(tmp_path / "p.jsonl", [{"id": r["id"], "prediction": r["answer"]} for r in truth])
    scored = CliRunner().invoke(score, ["--truth", str(tmp_path / "t.jsonl"), "--pred", str(tmp_path / "p.jsonl")])
    assert scored.exit_code == 0, scored.output
    report = json.loads(scored.stdout)
    (tmp_path / "report.json").write_text(json.dumps(report, indent=2))
    result = CliRunner().invoke(validate, ["score-report", str(tmp_path / "report.json")])
    assert result.exit_code == 0, result.output
    assert "1 records, 0 problems" in result.stderr
    del report["models"]
    (tmp_path / "broken.json").write_text(json.dumps(report, indent=2))
    broken = CliRunner().invoke(validate, ["score-report", str(tmp_path / "broken.json")])
    assert broken.exit_code == 1 and "broken.json:1: $: 'models' is a required property" in broken.stdout


def test_a_non_string_id_is_reported_not_replaced(tmp_path):
    from hba_core.samples import iter_samples
    from hba_tools.score import main as score

    write_jsonl(tmp_path / "s.jsonl", [{**GOOD, "id": 12}, {**GOOD, "id": "g1"}])
    errors = []
    assert [row["id"] for _, row in iter_samples(tmp_path / "s.jsonl", errors)] == ["g1"]
    assert [str(e) for e in errors] == [
        f"{tmp_path / 's.jsonl'}:1: 'id' must be a string, got 12; quote it, or drop it to derive one"
    ]
    write_jsonl(tmp_path / "p.jsonl", [{"id": "g1", "prediction": "sad"}])
    result = CliRunner().invoke(score, ["--truth", str(tmp_path / "s.jsonl"), "--pred", str(tmp_path / "p.jsonl")])
    _no_traceback(result)
    assert result.exit_code == 1 and "s.jsonl:1: 'id' must be a string, got 12" in result.stderr


@pytest.mark.parametrize("variant", ["no_problem", "media_as_a_string"])
def test_bam_refuses_a_bad_row_before_training(tmp_path, variant):
    from hba_core.bam.data import read_bam_samples
    from hba_core.errors import InputError

    lines = _samples(tmp_path / "in.jsonl", [variant])
    with pytest.raises(InputError, match=f"in.jsonl:{lines[variant]} \\(bad-{variant}\\): {BAD_ROWS[variant][1]}"):
        read_bam_samples(str(tmp_path / "in.jsonl"), ["cremad"])

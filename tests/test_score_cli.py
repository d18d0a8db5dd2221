"""hba-score through click's runner, through a real shell pipe, and without torch."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys

import orjson
import pytest
from click.testing import CliRunner

from hba_core import registry, schemas
from hba_core.samples import iter_samples
from hba_tools.score import main


def write_jsonl(path, rows):
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory, fixture_data):
    """The fixture atlas as truth, two models' predictions and one shared judgments file (rows name their model)."""
    tmp = tmp_path_factory.mktemp("score")
    samples = [s for _, s in iter_samples(fixture_data.atlas) if s["split"] == "test"]
    truth = write_jsonl(tmp / "test.jsonl", samples)
    out = {"truth": truth, "dir": tmp}
    judged = []
    for name, keep in (("model_a", 1), ("model_b", 2)):  # a: every answer right; b: every second one
        rows = []
        for i, s in enumerate(samples):
            right = i % keep == 0
            free = registry.dataset(s["dataset"]).is_free_text
            answer = s["answer"] if right or free else "I am not sure."
            rows.append({"id": s["id"], "prediction": rf"<think>hm</think>\boxed{{{answer}}}"})
            if free:
                judged.append(
                    {
                        "id": s["id"],
                        "correct": right,
                        "status": "ok",
                        "judge_model": "j",
                        "prompt_variant": "paper",
                        "model": name,
                    }
                )
        out[name] = write_jsonl(tmp / f"{name}.jsonl", rows)
    out["judged"] = write_jsonl(tmp / "judged.jsonl", judged)
    return out


def run(args, input=None):
    return CliRunner().invoke(main, [str(a) for a in args], input=input)


def test_help_has_an_example():
    result = run(["--help"])
    assert result.exit_code == 0
    assert "cat preds.jsonl | hba-score --truth atlas.jsonl -" in result.output


def test_two_models_table4_markdown(files):
    result = run(
        [
            "--truth",
            files["truth"],
            "--pred",
            files["model_a"],
            "--pred",
            files["model_b"],
            "--judgments",
            files["judged"],
            "--format",
            "md",
        ]
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("| Model | SEN · CMU-MOSEI | SEN · MELD | SEN · CH-SIMS v2 | EMO · CMU-MOSEI |")
    assert lines[1] == "| " + " | ".join(["---"] * 17) + " |"  # the header renders as one
    row_a = next(ln for ln in lines if ln.startswith("| model_a |"))
    assert row_a.count("**1.000**") == 16 + 0  # model a is right everywhere: best in every dataset column
    means_a = [ln for ln in lines if ln.startswith("| model_a |")][1]  # task-mean table
    assert means_a.startswith("| model_a | **1.000** (") and means_a.count("**1.000**") == 10
    assert "model_b: 64 matched, 0 missing" in result.stderr


def test_json_report_validates_and_counts(files):
    result = run(["--truth", files["truth"], files["model_b"], "--judgments", files["judged"], "--bootstrap", "50"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert schemas.errors(report, "score-report") == []
    model = report["models"][0]
    assert model["name"] == "model_b" and model["counts"]["unparseable"] > 0
    assert report["truth"]["samples"] == model["counts"]["matched"] + model["counts"]["missing"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--truth", "nope.jsonl", "-"], "Error: nope.jsonl: no such file"),
        (["--truth", "{truth}"], "Error: nothing to score"),
        (["--truth", "-", "-"], "Error: stdin (-) can be read only once"),
        (["--truth", "{truth}", "--name", "x", "--name", "y", "{model_a}"], "Error: 2 --name for 1 predictions files"),
        (
            [
                "--truth",
                "{truth}",
                "{model_a}",
                "{model_b}",
                "--judgments",
                "{judged}",
                "--judgments",
                "{judged}",
                "--judgments",
                "{judged}",
            ],
            "Error: 3 --judgments files for 2 models",
        ),
        (["--truth", "{truth}", "{model_a}", "--compare", "model_a", "zzz"], "Error: --compare: no model named 'zzz'"),
    ],
)
def test_user_errors_are_one_line(files, args, message):
    result = run([a.format(**files) for a in args])
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output


def test_strict_fails_on_a_duplicate_with_file_and_line(files, tmp_path):
    doubled = tmp_path / "doubled.jsonl"
    lines = files["model_a"].read_bytes().splitlines(keepends=True)
    doubled.write_bytes(b"".join(lines) + lines[0])
    assert run(["--truth", files["truth"], doubled]).exit_code == 0
    result = run(["--truth", files["truth"], doubled, "--strict"])
    assert result.exit_code == 1
    assert f"Error: {doubled}:{len(lines) + 1}: duplicate prediction" in result.output


def test_csv_latex_and_plot_to_files(files, tmp_path):
    out, png = tmp_path / "t.tex", tmp_path / "heat.png"
    result = run(
        [
            "--truth",
            files["truth"],
            files["model_a"],
            files["model_b"],
            "--judgments",
            files["judged"],
            "--format",
            "latex",
            "-o",
            out,
            "--plot",
            png,
        ]
    )
    assert result.exit_code == 0, result.output
    assert out.read_text().startswith(r"\begin{tabular}")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_real_shell_pipe(files):
    cmd = (
        f"cat {shlex.quote(str(files['model_a']))} | {shlex.quote(sys.executable)} -m hba_tools.score "
        f"--truth {shlex.quote(str(files['truth']))} --format csv -"
    )
    proc = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("model,task,dataset,metric,value,n,ci_low,ci_high\n")
    assert "stdin,EMO,,mean_weighted_accuracy,1.0" in proc.stdout
    assert "stdin: 64 matched, 0 missing, 0 unparseable" in proc.stderr


def test_runs_without_torch_and_keeps_heavy_imports_lazy(files):
    code = (
        "import sys\n"
        "for name in ('torch', 'transformers', 'torchvision'):\n"
        "    sys.modules[name] = None  # any import of them now raises ImportError\n"
        "from hba_tools.score import main\n"
        f"args = ['--truth', {str(files['truth'])!r}, {str(files['model_a'])!r}, '--format', 'md']\n"
        "try:\n"
        "    main(args)\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "heavy = [m for m in ('sklearn', 'matplotlib', 'scipy') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "| model_a |" in proc.stdout


def test_models_are_named_by_their_model_field(files, tmp_path):
    paths = []
    for name in ("model_a", "model_b"):
        rows = [{**orjson.loads(line), "model": f"omni-{name[-1]}"} for line in files[name].read_bytes().splitlines()]
        paths.append(write_jsonl(tmp_path / f"{name}.jsonl", rows))
    judged = [
        {**orjson.loads(line), "model": "omni-" + orjson.loads(line)["model"][-1]}
        for line in files["judged"].read_bytes().splitlines()
    ]
    result = run(
        ["--truth", files["truth"], *paths, "--judgments", write_jsonl(tmp_path / "j.jsonl", judged), "--format", "csv"]
    )
    assert result.exit_code == 0, result.output
    assert "omni-a,SOC,siq2,judge_accuracy,1.0" in result.stdout
    assert "omni-b,SOC,siq2,judge_accuracy,0." in result.stdout


def test_a_shared_judgment_file_without_model_fields_is_refused(files, tmp_path):
    rows = [
        {k: v for k, v in orjson.loads(line).items() if k != "model"}
        for line in files["judged"].read_bytes().splitlines()
    ]
    result = run(
        [
            "--truth",
            files["truth"],
            files["model_a"],
            files["model_b"],
            "--judgments",
            write_jsonl(tmp_path / "j.jsonl", rows),
        ]
    )
    assert result.exit_code == 1
    assert 'has no "model" field' in result.output and "--judgments NAME=FILE" in result.output


def test_compare_and_pred_field_through_the_cli(files, tmp_path):
    result = run(
        [
            "--truth",
            files["truth"],
            files["model_a"],
            files["model_b"],
            "--judgments",
            files["judged"],
            "--compare",
            "model_a",
            "model_b",
            "--bootstrap",
            "200",
        ]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert schemas.errors(report, "score-report") == []
    emo = report["comparisons"][0]["tasks"]["EMO"]
    assert emo["delta"] > 0 and emo["ci"][0] <= emo["delta"] <= emo["ci"][1]

    answers = {
        orjson.loads(line)["id"]: orjson.loads(line)["prediction"]
        for line in files["model_b"].read_bytes().splitlines()
    }
    embedded = [{**s, "output": answers[s["id"]]} for _, s in iter_samples(files["truth"])]
    result = run(
        ["--truth", write_jsonl(tmp_path / "embedded.jsonl", embedded), "--pred-field", "output", "--format", "csv"]
    )
    assert result.exit_code == 0, result.output
    by_file = run(["--truth", files["truth"], files["model_b"], "--format", "csv"]).stdout
    assert result.stdout.replace("output,", "model_b,") == by_file


def test_intensity_format_is_table_19(tmp_path):
    from click.testing import CliRunner

    from hba_core import registry
    from hba_core.jsonl import write_jsonl
    from hba_tools.score import main

    labels = list(registry.dataset("mosei_senti").labels)  # the 7 intensity labels, from the registry
    truth = [
        {"id": f"m{i}", "dataset": "mosei_senti", "problem": "p", "answer": labels[i % 7], "class_label": labels[i % 7]}
        for i in range(14)
    ]
    write_jsonl(tmp_path / "t.jsonl", truth)
    write_jsonl(tmp_path / "a.jsonl", [{"id": r["id"], "prediction": r["answer"]} for r in truth])
    write_jsonl(tmp_path / "b.jsonl", [{"id": r["id"], "prediction": "neutral"} for r in truth])
    result = CliRunner().invoke(
        main,
        [
            "--truth",
            str(tmp_path / "t.jsonl"),
            "--pred",
            str(tmp_path / "a.jsonl"),
            "--pred",
            str(tmp_path / "b.jsonl"),
            "--format",
            "intensity",
        ],
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "| Model | CMU-MOSEI (SEN) 7-class F1 | CMU-MOSEI (SEN) 7-class Acc |"
    assert lines[2] == "| a | **1.000** | **1.000** |"
    # b always says neutral: accuracy 2/14, weighted F1 = (2/14) * F1(neutral) = (2/14) * (2 * (1/7) / (1 + 1/7))
    assert lines[3] == f"| b | {(2 / 14) * (2 / 8):.3f}".replace("0.", ".") + " | .143 |"


# ---------------------------------------------------------------- paper cuts of a first hour (issue 17.9-11)
def _ids(files):
    return [s["id"] for _, s in iter_samples(files["truth"])]


def test_a_file_without_the_prediction_field_is_an_error_naming_it(files, tmp_path):
    ids = _ids(files)
    renamed = write_jsonl(tmp_path / "output.jsonl", [{"id": i, "output": "anger"} for i in ids])
    result = run(["--truth", files["truth"], renamed])
    assert result.exit_code == 1
    assert f'Error: {renamed}: no row has a "prediction" field (the rows have: output)' in result.output
    # a few such rows are problems with file:line, the rest is scored
    mixed = [{"id": i, "prediction": "anger"} for i in ids]
    mixed[2] = {"id": ids[2], "pred": "anger"}
    partly = write_jsonl(tmp_path / "partly.jsonl", mixed)
    result = run(["--truth", files["truth"], partly])
    assert result.exit_code == 0, result.output
    assert f'{partly}:3: no "prediction" field' in result.stderr
    assert json.loads(result.stdout)["models"][0]["counts"]["invalid"] == 1


@pytest.mark.parametrize("rows", [[], [{"id": "no-such-id", "prediction": "anger"}]], ids=["empty", "wrong ids"])
def test_predictions_matching_no_sample_are_an_error(files, tmp_path, rows):
    path = write_jsonl(tmp_path / "p.jsonl", rows)
    result = run(["--truth", files["truth"], path, "--format", "md"])
    assert result.exit_code == 1
    assert ("the file is empty" if not rows else "no prediction matches a sample of") in result.output
    assert ".000" not in result.output


def test_a_metric_floor_is_not_shown_as_a_score(tmp_path):
    rows = [
        {"id": f"e{i}", "dataset": "cremad", "problem": "q", "answer": g, "class_label": g}
        for i, g in enumerate(["anger", "sad", "happy"])
    ]
    truth = write_jsonl(tmp_path / "t.jsonl", rows)
    preds = write_jsonl(tmp_path / "p.jsonl", [{"id": r["id"], "prediction": "I cannot tell."} for r in rows])
    result = run(["--truth", truth, preds, "--format", "md"])
    assert result.exit_code == 0, result.output
    assert ".500" not in result.stdout  # mean weighted accuracy of no answer at all is 0.5
    assert "– (0/3 answered)" in result.stdout
    report = json.loads(run(["--truth", truth, preds]).stdout)
    cremad = report["models"][0]["datasets"]["cremad"]
    assert (cremad["value"], cremad["answered"]) == (0.5, 0)
    assert any("floor" in note for note in cremad["notes"])


def test_strict_needs_judgments_for_free_text_samples(files):
    result = run(["--truth", files["truth"], files["model_a"], "--strict"])
    assert result.exit_code == 1
    assert "Error: --judgments: model 'model_a' has no judgments for the" in result.output
    assert "drop --strict" in result.output


def test_strict_duplicate_message_does_not_say_the_first_is_kept(files, tmp_path):
    lines = files["model_a"].read_bytes().splitlines(keepends=True)
    doubled = tmp_path / "doubled.jsonl"
    doubled.write_bytes(b"".join(lines) + lines[0])
    strict = run(["--truth", files["truth"], doubled, "--strict", "--judgments", files["judged"]])
    assert strict.exit_code == 1 and "first one is kept" not in strict.output
    lenient = run(["--truth", files["truth"], doubled])
    assert "(the first one is kept)" in lenient.stderr


def test_markdown_shows_intervals_and_the_paired_test(files):
    args = ["--truth", files["truth"], files["model_a"], files["model_b"], "--judgments", files["judged"]]
    result = run([*args, "--bootstrap", "200", "--compare", "model_a", "model_b", "--format", "md"])
    assert result.exit_code == 0, result.output
    table, _, paired = result.stdout.partition("Paired bootstrap, model_a − model_b (200 replicates")
    assert " ± " in table and "± half-width of the 95% bootstrap interval (200 replicates)." in table
    assert "| Task | Dataset | Δ | 95% CI | p |" in paired
    assert "| EMO | mean | +" in paired


def test_a_pred_field_no_sample_has_is_an_error(files):
    result = run(["--truth", files["truth"], "--pred-field", "model_output"])
    assert result.exit_code == 1
    assert f"Error: --pred-field model_output: no sample of {files['truth']} has a value under 'model_output'" in (
        result.output
    )

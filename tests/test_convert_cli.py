"""hba-convert wiring: build (rejects, strict, all), import/export, stats, select --exclude, validate, a real pipe."""

from __future__ import annotations

import json
import subprocess
import sys

import orjson
import pytest
from click.testing import CliRunner

from hba_core.convert.base import make_sample
from hba_core.convert.release import RELEASE_FILES
from hba_tools.convert import main

COMMANDS = ("build", "import", "export", "stats", "select", "validate")


def invoke(*args, input=None):
    return CliRunner().invoke(main, [str(a) for a in args], input=input)


def mustard_release(root, n=10, media=True):
    root.mkdir(parents=True, exist_ok=True)
    data = {str(i): {"utterance": f"u{i}", "speaker": "S", "show": "BBT", "sarcasm": i % 2 == 0} for i in range(n)}
    (root / "sarcasm_data.json").write_text(json.dumps(data))
    if media:
        (root / "utterances_final").mkdir()
        for i in range(n - 1):  # the last clip is missing
            (root / "utterances_final" / f"{i}.mp4").write_bytes(b"")
    return root


def read(path):
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(command):
    result = invoke(command, "--help")
    assert result.exit_code == 0 and "Example" in result.output


def test_build_writes_samples_and_rejects(tmp_path):
    raw = mustard_release(tmp_path / "mustard")
    result = invoke("build", "mustard", "--raw", raw, "--out", tmp_path / "out.jsonl")
    assert result.exit_code == 0, result.output
    assert len(read(tmp_path / "out.jsonl")) == 9
    (reject,) = read(tmp_path / "out.rejects.jsonl")
    assert reject["reason"] == "media missing: utterances_final/9.mp4" and reject["row"]["id"] == "9"
    assert "mustard: 9 samples" in result.stderr and "1 rejects (media missing: 1)" in result.stderr


def test_build_strict_fails_with_one_line_and_writes_nothing(tmp_path):
    raw = mustard_release(tmp_path / "mustard")
    result = invoke("build", "mustard", "--raw", raw, "--out", tmp_path / "out.jsonl", "--strict")
    assert result.exit_code == 1
    assert result.output.startswith("Error: mmsd-") and "media missing: utterances_final/9.mp4" in result.output
    assert not (tmp_path / "out.jsonl").exists()


def test_build_unknown_source_and_bad_flags():
    result = invoke("build", "mustrad", "--raw", ".")
    assert result.exit_code == 1 and "Did you mean 'mustard'?" in result.output
    assert invoke("build", "all", "--raw", ".").exit_code == 2


def test_build_all_goes_on_past_a_broken_release(tmp_path):
    mustard_release(tmp_path / "raw" / "mustard", media=False)
    (tmp_path / "raw" / "urfunny").mkdir()  # no pickles in it
    result = invoke("build", "all", "--raw-root", tmp_path / "raw", "--no-media", "--out", tmp_path / "all.jsonl")
    assert result.exit_code == 0, result.output
    assert len(read(tmp_path / "all.jsonl")) == 10
    rejects = read(tmp_path / "all.rejects.jsonl")
    assert [r["source"] for r in rejects] == ["urfunny"] and rejects[0]["reason"].startswith("source failed")
    assert "meld: skipped, no folder" in result.stderr
    strict = invoke("build", "all", "--raw-root", tmp_path / "raw", "--no-media", "--strict", "--out", "-")
    assert strict.exit_code == 1 and "no release folder for source mosei" in strict.output


def sample_file(path):
    rows = []
    for name, split, label in (
        ("mosei_senti", "train", "neutral"),
        ("meld_emotion", "train", "happy"),
        ("daicwoz", "train", "depression"),
        ("mmsd", "train", "sarcasm"),
        ("cremad", "train", "sad"),
        ("cremad", "test", "sad"),
        ("tess", "train", "fear"),
        ("meld_senti", "val", "positive"),
    ):
        audio_only = name in ("cremad", "tess", "daicwoz")
        rows.append(
            make_sample(
                name,
                split=split,
                instruction="Q?",
                question="Q?",
                answer=label,
                class_label=label,
                video=None if audio_only else f"{name}.mp4",
                audio=f"{name}.wav",
                transcript="hi",
                source_ids={"n": len(rows)},
            )
        )
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return rows


def test_select_exclude_gives_the_transfer_training_set(tmp_path):
    sample_file(tmp_path / "atlas.jsonl")
    result = invoke(
        "select",
        tmp_path / "atlas.jsonl",
        "--split",
        "train",
        "--exclude",
        "mosei_senti,meld_emotion",
        "--exclude",
        "daicwoz",
        "--exclude",
        "mmsd",
    )
    assert result.exit_code == 0, result.output
    kept = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["dataset"] for r in kept] == ["cremad", "tess"]
    assert "selected 2 of 8 samples" in result.stderr
    by_task = invoke("select", tmp_path / "atlas.jsonl", "--task", "emo", "--modality", "video")
    assert [json.loads(line)["dataset"] for line in by_task.stdout.splitlines()] == ["meld_emotion"]
    bad = invoke("select", tmp_path / "atlas.jsonl", "--exclude", "meld_emo")
    assert bad.exit_code == 1 and "Did you mean 'meld_emotion'?" in bad.output


def test_stats_formats(tmp_path):
    sample_file(tmp_path / "atlas.jsonl")
    md = invoke("stats", tmp_path / "atlas.jsonl")
    assert md.exit_code == 0, md.output
    lines = md.stdout.splitlines()
    assert lines[0] == "| Dataset | Train | Val | Test | Total | Paper (train/val/test) |"
    assert "| CMU-MOSEI (SEN) | 1 | 0 | 0 | 1 | 16326/1871/4659 |" in lines
    assert "| CREMA-D | 1 | 0 | 1 | 2 | 5209/1116/1117 |" in lines
    assert "| **Combined Total** | **7** | **1** | **1** | **9** | |" not in lines  # 8 samples, not 9
    assert "| **Combined Total** | **6** | **1** | **1** | **8** | |" in lines
    data = json.loads(invoke("stats", tmp_path / "atlas.jsonl", "--format", "json").stdout)
    assert data["labels"]["cremad"] == {"sad": 2} and data["modalities"]["tess"] == {"text_audio": 1}
    csv_out = invoke("stats", tmp_path / "atlas.jsonl", "--format", "csv").stdout.splitlines()
    assert csv_out[0] == "dataset,train,val,test,total,paper_train,paper_val,paper_test"
    assert csv_out[-1] == "Combined Total,6,1,1,8,,,"


def test_validate_reports_every_problem_by_line(tmp_path):
    rows = sample_file(tmp_path / "atlas.jsonl")
    (tmp_path / "root" / "cremad").mkdir(parents=True)
    (tmp_path / "root" / "cremad" / "cremad.wav").write_bytes(b"")
    bad = [
        dict(rows[4], id="b1", class_label="joy"),
        dict(rows[4], id="b2", dataset="cremadd"),
        dict(rows[4], id="b3", audios=["../x.wav"]),
        rows[4],
    ]
    (tmp_path / "bad.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in bad) + b"{oops\n")
    result = invoke("validate", tmp_path / "bad.jsonl", "--root", tmp_path / "root")
    assert result.exit_code == 1
    out = result.stdout.splitlines()
    first = f"{tmp_path / 'bad.jsonl'}:1: $.class_label: 'joy' is not a cremad label"
    assert any(line.startswith(first) for line in out)
    assert any(":2: $.dataset: unknown dataset 'cremadd'" in line for line in out)
    assert any(":3: $.audios[0]: media path escapes the data root" in line for line in out)
    assert any(":5: not valid JSON" in line for line in out)
    assert not any(":4:" in line for line in out)
    assert "4 records, 4 problems" in result.stderr
    good = invoke("validate", tmp_path / "atlas.jsonl")
    assert good.exit_code == 0 and "8 records, 0 problems" in good.stderr
    missing = invoke("validate", tmp_path / "atlas.jsonl", "--root", tmp_path / "root")
    assert missing.exit_code == 1 and "media file not found under" in missing.stdout


def test_import_export_cli_round_trip(tmp_path):
    line = {
        "problem": "<audio>\nQ?",
        "answer": "sad",
        "images": [],
        "videos": [],
        "audios": ["a.wav"],
        "dataset": "cremad",
        "texts": [],
        "modality_signature": "audio",
        "ext_video_feats": [],
        "ext_audio_feats": [],
        "task": "emotion_cls",
        "class_label": "sad",
    }
    (tmp_path / "rel").mkdir()
    for name in RELEASE_FILES.values():
        (tmp_path / "rel" / name).write_text(json.dumps(line) + "\n")
    result = invoke("import", "--from", tmp_path / "rel", "--out", tmp_path / "ours.jsonl")
    assert result.exit_code == 0, result.output
    assert "imported 3 samples" in result.stderr
    assert [r["split"] for r in read(tmp_path / "ours.jsonl")] == ["train", "val", "test"]
    result = invoke("export", tmp_path / "ours.jsonl", "--out-dir", tmp_path / "back")
    assert result.exit_code == 0, result.output
    for name in RELEASE_FILES.values():
        assert read(tmp_path / "back" / name) == [line]


def test_real_shell_pipe_and_no_torch(tmp_path):
    raw = mustard_release(tmp_path / "mustard", n=20, media=False)
    pipe = subprocess.run(
        f"{sys.executable} -m hba_tools.convert build mustard --raw {raw} --no-media "
        f"--out - --rejects {tmp_path / 'r.jsonl'} | {sys.executable} -m hba_tools.convert stats - "
        "--format csv",
        shell=True,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "MUStARD,14,3,3,20,483,104,103" in pipe.stdout.splitlines()
    code = (
        f"import sys; from hba_core.convert import build_source; "
        f"list(build_source('mustard', {str(raw)!r}, check_media=False)); "
        "import hba_tools.convert; assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)

"""hba-transcribe on the tiny random whisper: plumbing, pass-through, caching, resume after kill, prompts."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from hba_core.errors import HbaError
from hba_core.jsonl import iter_jsonl, write_jsonl
from hba_core.prompts import build_problem, split_problem
from hba_core.transcribe import needs_transcript, transcribe_samples
from hba_tools.transcribe import main as cli

pytest.importorskip("whisper")


def _without_transcript(sample: dict) -> dict:
    tags, _, instruction = split_problem(sample["problem"])
    sample = {
        **sample,
        "problem": build_problem(tags, None, instruction),
        "metadata": {k: v for k, v in sample["metadata"].items() if k != "transcript"},
    }
    assert needs_transcript(sample)
    return sample


@pytest.fixture()
def mixed(fixtures, tmp_path):
    """Fixture samples: odd rows lose their transcript; a text-only sample; a sample whose audio is missing."""
    rows = [row for _, row in iter_jsonl(fixtures.atlas) if row.get("audios") or row.get("videos")][:12]
    rows = [_without_transcript(r) if i % 2 else r for i, r in enumerate(rows)]
    rows.append(
        {"id": "text-only", "dataset": "cremad", "problem": "Q", "answer": "x", "metadata": {"transcript": None}}
    )
    rows.append({**_without_transcript(rows[1]), "id": "lost", "audios": ["audio/missing.wav"]})
    write_jsonl(tmp_path / "in.jsonl", rows)
    return tmp_path / "in.jsonl", rows


def test_transcripts_fill_only_what_is_missing_and_reach_the_prompt(fixtures, mixed, tmp_path):
    path, rows = mixed
    summary = transcribe_samples(path, fixtures.data, tmp_path / "out.jsonl", model=str(fixtures.whisper), batch_size=3)
    out = [row for _, row in iter_jsonl(tmp_path / "out.jsonl")]
    assert [r["id"] for r in out] == [r["id"] for r in rows]  # nothing lost, order kept
    assert summary.had_transcript == 6 and summary.transcribed == 6 and summary.no_media == 1
    assert summary.errors == [("audio/missing.wav", "media file not found")]
    for before, after in zip(rows, out):
        if not needs_transcript(before) or before["id"] in ("text-only", "lost"):
            assert after == before  # untouched
            continue
        text = after["metadata"]["transcript"]
        assert isinstance(text, str) and split_problem(after["problem"])[1] == (text or None)
        assert after["metadata"]["transcript_source"]["model"] == str(fixtures.whisper)
        assert len(after["metadata"]["transcript_source"]["language"]) >= 2
        assert after["problem"].startswith(before["problem"].split("\n")[0])  # tags stay first
    same_media = {}
    for before, after in zip(rows, out):  # one transcript per media file, shared by its samples
        if after is not before and "transcript_source" in after["metadata"]:
            key = (before.get("audios") or before.get("videos"))[0]
            assert same_media.setdefault(key, after["metadata"]["transcript"]) == after["metadata"]["transcript"]


def test_cache_makes_a_rerun_free_and_force_redoes(fixtures, mixed, tmp_path):
    path, _ = mixed
    first = transcribe_samples(
        path, fixtures.data, tmp_path / "a.jsonl", model=str(fixtures.whisper), cache=tmp_path / "cache.jsonl"
    )
    again = transcribe_samples(
        path, fixtures.data, tmp_path / "b.jsonl", model=str(fixtures.whisper), cache=tmp_path / "cache.jsonl"
    )
    assert first.media_transcribed > 0 and again.media_transcribed == 0
    assert again.media_cached == first.media_transcribed
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    forced = transcribe_samples(
        path,
        fixtures.data,
        tmp_path / "c.jsonl",
        model=str(fixtures.whisper),
        cache=tmp_path / "cache.jsonl",
        force=True,
    )
    assert forced.had_transcript == 0 and forced.transcribed == 12
    assert forced.media_transcribed == 0  # the cache still serves: same media, same model
    redone = [row for _, row in iter_jsonl(tmp_path / "c.jsonl")]
    assert all("transcript_source" in r["metadata"] for r in redone if r["id"] not in ("text-only", "lost"))


def test_killed_run_resumes_without_loss_or_duplicates(fixtures, tmp_path):
    root = tmp_path / "data"
    (root / "audio").mkdir(parents=True)
    rows = []
    for i in range(12):
        shutil.copy(fixtures.data / f"audio/clip{i % 4}.wav", root / f"audio/x{i}.wav")
        rows.append(
            {
                "id": f"s{i}",
                "dataset": "cremad",
                "problem": "<audio>\nWhat emotion?",
                "answer": "x",
                "audios": [f"audio/x{i}.wav"],
            }
        )
    write_jsonl(tmp_path / "in.jsonl", rows)
    cache = tmp_path / "out.jsonl.transcripts.jsonl"
    command = [
        sys.executable,
        "-m",
        "hba_tools.transcribe",
        "--samples",
        str(tmp_path / "in.jsonl"),
        "--root",
        str(root),
        "--out",
        str(tmp_path / "out.jsonl"),
        "--model",
        str(fixtures.whisper),
        "--batch-size",
        "1",
        "--device",
        "cpu",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if cache.exists() and cache.read_bytes().count(b"\n") >= 2:
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    assert process.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (tmp_path / "out.jsonl").exists()  # the output only appears complete
    summary = transcribe_samples(
        tmp_path / "in.jsonl", root, tmp_path / "out.jsonl", model=str(fixtures.whisper), batch_size=1
    )
    assert summary.media_cached >= 2 and summary.media_cached + summary.media_transcribed == 12
    out = [row for _, row in iter_jsonl(tmp_path / "out.jsonl")]
    assert [r["id"] for r in out] == [f"s{i}" for i in range(12)]
    assert all(isinstance(r["metadata"]["transcript"], str) for r in out)
    cached = {row["media"]: row for _, row in iter_jsonl(cache)}
    assert sum(1 for _ in iter_jsonl(cache)) == 12 and set(cached) == {f"audio/x{i}.wav" for i in range(12)}
    for row in out:  # every sample carries exactly its media's cached transcript, the killed run's included
        entry = cached[row["audios"][0]]
        assert row["metadata"]["transcript"] == entry["text"]
        assert row["metadata"]["transcript_source"] == {"model": str(fixtures.whisper), "language": entry["language"]}
    # (not compared byte for byte with a fresh run in this process: a random tiny model's near-tied logits
    # can pick other tokens under another process's thread settings; the cache is the source of truth)


def test_unknown_model_name_is_a_clear_error(fixtures, mixed, tmp_path):
    with pytest.raises(HbaError, match="unknown whisper model .*'large-v9'.*Did you mean 'large-v3'"):
        transcribe_samples(mixed[0], fixtures.data, tmp_path / "o.jsonl", model="large-v9")


def test_cli_pipes_and_reports(fixtures, mixed, tmp_path):
    runner = CliRunner()
    args = ["--samples", str(mixed[0]), "--root", str(fixtures.data), "--model", str(fixtures.whisper)]
    result = runner.invoke(cli, [*args, "--out", "-"])
    assert result.exit_code == 2 and "give --cache PATH too" in result.output
    result = runner.invoke(cli, [*args, "--out", "-", "--cache", str(tmp_path / "c.jsonl")])
    assert result.exit_code == 0  # one media error: reported, not fatal without --strict
    assert "14 samples: 6 transcribed" in result.stderr
    assert "error audio/missing.wav: media file not found" in result.stderr
    assert len(result.stdout.splitlines()) == 14
    strict = runner.invoke(cli, [*args, "--out", "-", "--cache", str(tmp_path / "c.jsonl"), "--strict"])
    assert strict.exit_code == 1 and len(strict.stdout.splitlines()) == 14
    help_text = runner.invoke(cli, ["--help"]).output
    assert "Example:" in help_text and "hba-transcribe" in help_text


def test_transcripts_flow_into_hba_convert_prompts(fixtures, tmp_path):
    """Samples built by hba-convert without a transcript get it in the prompt, template parts included."""
    from hba_core.convert.base import make_sample
    from hba_core.registry import dataset

    rows = []
    for name, slot, kind in (("cremad", True, "audio"), ("intentqa", False, "video")):
        media = f"{kind}/clip0.{'wav' if kind == 'audio' else 'mp4'}"
        (tmp_path / dataset(name).source / kind).mkdir(parents=True)
        shutil.copy(fixtures.data / media, tmp_path / dataset(name).source / media)
        rows.append(
            make_sample(
                name,
                split="test",
                instruction="The above is a recording[[ with its transcript]]. Q?",
                question="Q?",
                answer="a",
                class_label=None,
                transcript=None,
                transcript_slot=slot,
                source_ids={},
                **{kind: media},
            )
        )
    assert rows[0]["problem"] == "<audio>\nThe above is a recording. Q?"
    write_jsonl(tmp_path / "in.jsonl", rows)
    transcribe_samples(tmp_path / "in.jsonl", tmp_path, tmp_path / "out.jsonl", model=str(fixtures.whisper))
    cremad, intentqa = (row for _, row in iter_jsonl(tmp_path / "out.jsonl"))
    text = cremad["metadata"]["transcript"]
    assert text and cremad["problem"] == f"<audio>\n{text}\nThe above is a recording with its transcript. Q?"
    assert intentqa["problem"] == rows[1]["problem"]  # no transcript in this dataset's template
    assert intentqa["metadata"]["transcript"] and intentqa["metadata"]["transcript_source"]["model"]

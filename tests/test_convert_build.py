"""hba-convert build's loop and failure policy as a core function (hba_core.convert.build.build_files)."""

from __future__ import annotations

import json

import orjson
import pytest

from hba_core.convert.build import build_files, default_rejects_path
from hba_core.errors import InputError


def _mustard(root, n=4):
    root.mkdir(parents=True)
    data = {str(i): {"utterance": f"u{i}", "speaker": "S", "show": "BBT", "sarcasm": i % 2 == 0} for i in range(n)}
    (root / "sarcasm_data.json").write_text(json.dumps(data))  # MUStARD's own annotation file
    return root


def _read(path):
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_one_source_writes_samples_rejects_and_a_line_per_source(tmp_path):
    raw = _mustard(tmp_path / "mustard")
    (raw / "utterances_final").mkdir()
    for i in range(3):  # clip 3 is missing: a reject with its reason
        (raw / "utterances_final" / f"{i}.mp4").write_bytes(b"")
    logged = []
    out = tmp_path / "out.jsonl"
    report = build_files([("mustard", raw)], str(out), default_rejects_path(str(out)), log=logged.append)
    assert report.samples == 3 and report.rejects == 1 and len(_read(out)) == 3
    assert _read(tmp_path / "out.rejects.jsonl")[0]["reason"] == "media missing: utterances_final/3.mp4"
    assert len(logged) == 1 and logged[0].startswith("mustard: 3 samples")
    assert report.line() == f"wrote 3 samples to {out}; 1 rejects to {tmp_path / 'out.rejects.jsonl'}"


def test_keep_going_skips_missing_and_records_broken_releases(tmp_path):
    jobs = [("mustard", _mustard(tmp_path / "mustard")), ("urfunny", tmp_path / "urfunny"), ("meld", tmp_path / "no")]
    (tmp_path / "urfunny").mkdir()  # no pickles: the adapter fails
    out, rejects = tmp_path / "all.jsonl", tmp_path / "all.rejects.jsonl"
    logged = []
    report = build_files(jobs, str(out), str(rejects), check_media=False, keep_going=True, log=logged.append)
    assert report.samples == 4 and [r["source"] for r in _read(rejects)] == ["urfunny"]
    assert _read(rejects)[0]["reason"].startswith("source failed: ")
    assert any(line.startswith("urfunny: FAILED: ") for line in logged)
    assert f"meld: skipped, no folder {tmp_path / 'no'}" in logged
    assert [s.source for s in report.summaries] == ["mustard", "urfunny"]


def test_without_keep_going_or_with_strict_a_broken_release_is_an_error(tmp_path):
    (tmp_path / "urfunny").mkdir()
    out = tmp_path / "o.jsonl"
    with pytest.raises(InputError):
        build_files([("urfunny", tmp_path / "urfunny")], str(out), str(tmp_path / "r.jsonl"), check_media=False)
    assert not out.exists()  # atomic: nothing half-written
    with pytest.raises(InputError, match="no release folder for source meld"):
        build_files([("meld", tmp_path / "no")], str(out), str(tmp_path / "r.jsonl"), strict=True, keep_going=True)

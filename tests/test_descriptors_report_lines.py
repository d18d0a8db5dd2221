"""What hba-descriptors prints and writes, as core functions (hba_core.descriptors.report): the stats table,
the extract / import / merge reports, and pooled vectors as .npz or JSONL."""

from __future__ import annotations

import numpy as np
import orjson

from hba_core.descriptors.extract import ExtractSummary
from hba_core.descriptors.import_pt import ImportSummary
from hba_core.descriptors.merge import MergeSummary
from hba_core.descriptors.report import (
    error_lines,
    extract_lines,
    import_lines,
    merge_line,
    stats_table,
    write_pooled,
)


def test_stats_table_is_fixed_width_under_its_header():
    rows = [
        {"dataset": "cremad", "stream": "audio", "clips": 12, "frames": 3400, "invalid_frames": 0,
         "clips_without_valid_frames": 0, "errors": 1},
        {"dataset": "mosei_senti", "stream": "face", "clips": 7, "frames": 210, "invalid_frames": 15,
         "clips_without_valid_frames": 2, "errors": 0},
    ]  # fmt: skip
    header, first, second = stats_table(rows)
    assert header == "dataset        stream       clips    frames no-detect  empty errors"
    assert first == "cremad         audio           12      3400         0      0      1"
    assert second == "mosei_senti    face             7       210        15      2      0"
    assert stats_table([]) == [header]


def test_extract_report_counts_errors_and_bad_rows_with_a_limit():
    summary = ExtractSummary(
        media=30,
        skipped=4,
        extracted=25,
        frames={"face": 100, "pose": 90},
        invalid_frames={"face": 7},
        errors=[(f"v{i}.mp4", "face", "unreadable") for i in range(3)],
        bad_rows=["s.jsonl:3 (x): videos is not a list"],
    )
    lines = extract_lines(summary, limit=2)
    assert lines[0] == (
        "30 media: 25 extracted, 4 already in the store, 3 errors, 1 bad rows; "
        "face 100 frames (7 without detection), pose 90 frames (0 without detection)"
    )
    assert lines[1:] == [
        "  error v0.mp4 [face]: unreadable",
        "  error v1.mp4 [face]: unreadable",
        "  ... and 1 more (see `hba-descriptors stats`)",
        "  bad row skipped: s.jsonl:3 (x): videos is not a list",
    ]
    assert extract_lines(ExtractSummary()) == ["0 media: 0 extracted, 0 already in the store, 0 errors, 0 bad rows"]
    assert error_lines([]) == []


def test_import_and_merge_reports_name_what_failed():
    summary = ImportSummary(
        files=3, imported=2, errors=[("a.pt", "ext_audio", "not a tensor")], used_by={"a.pt": "sample s1, s.jsonl:4"}
    )
    assert import_lines(summary) == [
        "3 feature files: 2 imported, 0 already in the store, 1 errors",
        "  error a.pt (sample s1, s.jsonl:4) [ext_audio]: not a tensor",
    ]
    merged = MergeSummary(clips={"face": 3, "audio": 2}, skipped=1, errors=0)
    assert merge_line(merged, 2) == "merged 2 stores: face 3, audio 2 clips copied, 1 already there, 0 error rows"
    assert merge_line(MergeSummary(), 1).startswith("merged 1 stores: nothing clips copied")


def test_pooled_vectors_as_npz_and_jsonl(tmp_path):
    ids = ["a", "b"]
    vectors = {
        "audio": (np.array([[1.0, 2.0], [np.nan, np.nan]], np.float32), np.array([5, 0])),
        "face": (np.array([[0.5, 0.25], [3.0, 4.0]], np.float32), np.array([2, 3])),
    }
    write_pooled(str(tmp_path / "p.npz"), ids, vectors)
    with np.load(tmp_path / "p.npz") as saved:
        assert list(saved["ids"]) == ids and saved["face_valid_counts"].tolist() == [2, 3]
        np.testing.assert_array_equal(saved["audio"], vectors["audio"][0])
    write_pooled(str(tmp_path / "p.jsonl"), ids, vectors)
    rows = [orjson.loads(line) for line in (tmp_path / "p.jsonl").read_bytes().splitlines()]
    assert rows[1] == {"id": "b", "audio": [None, None], "audio_valid_counts": 0, "face": [3.0, 4.0],
                       "face_valid_counts": 3}  # fmt: skip
    assert rows[0]["audio"] == [1.0, 2.0]

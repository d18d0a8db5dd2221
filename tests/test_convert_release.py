"""Import of the official release (JSONL and Parquet with media bytes) and export back, line for line."""

from __future__ import annotations

import hashlib
import json

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hba_core.convert.release import RELEASE_FILES, export_release, import_release, split_of
from hba_core.errors import InputError
from hba_core.fixtures.media import write_face_clip
from hba_core.fixtures.shards import sine_wav
from hba_core.jsonl import LineError
from hba_core.samples import sample_id

# The official release's example line, as the reference repository shows it.
OFFICIAL_LINE = {
    "problem": "<audio>\nDon't forget a jacket.\nThe above is a speech recording along with the transcript from a "
    "clinical context. What emotion is the speaker expressing? Answer with one word from the following: "
    "anger, disgust, fear, happy, neutral, sad",
    "answer": "sad",
    "images": [],
    "videos": [],
    "audios": ["cremad_dataset_audio/1077_DFA_SAD_XX.wav"],
    "dataset": "cremad",
    "texts": [],
    "modality_signature": "text_audio",
    "ext_video_feats": ["pose/cremad_dataset_audio/1077_DFA_SAD_XX.pt"],
    "ext_audio_feats": ["opensmile/cremad_dataset_audio/1077_DFA_SAD_XX.pt"],
    "task": "emotion_cls",
    "class_label": "sad",
}
QA_LINE = {
    **OFFICIAL_LINE,
    "problem": "<video>\nWhy?",
    "answer": "Because.",
    "dataset": "siq2",
    "task": "social_qa",
    "class_label": None,
    "audios": [],
    "videos": ["siq2/v.mp4"],
    "ext_video_feats": [],
    "ext_audio_feats": [],
}


def write_release(root, lines_per_split):
    root.mkdir(parents=True, exist_ok=True)
    for split, lines in lines_per_split.items():
        (root / RELEASE_FILES[split]).write_text("".join(json.dumps(line) + "\n" for line in lines))


def test_official_line_round_trips_unchanged(tmp_path):
    write_release(tmp_path / "rel", {"train": [], "val": [QA_LINE], "test": [OFFICIAL_LINE, OFFICIAL_LINE]})
    rows = list(import_release(tmp_path / "rel"))
    assert [r["split"] for r in rows] == ["val", "test", "test"]
    assert rows[1]["id"] == sample_id(OFFICIAL_LINE) and rows[2]["id"] == sample_id(OFFICIAL_LINE) + "#2"
    assert rows[1]["metadata"] == {"release_line": "final_v8_test_cleaned.jsonl:1"}
    counts = export_release(iter(rows), tmp_path / "out")
    assert counts == {"train": 0, "val": 1, "test": 2}
    back = [orjson.loads(line) for line in (tmp_path / "out" / RELEASE_FILES["test"]).read_bytes().splitlines()]
    assert back == [OFFICIAL_LINE, OFFICIAL_LINE]
    assert [list(b) for b in back] == [list(OFFICIAL_LINE)] * 2  # field order too
    assert (tmp_path / "out" / RELEASE_FILES["train"]).read_bytes() == b""


def test_bad_lines_are_reported_with_file_and_line(tmp_path):
    write_release(tmp_path, {"test": [OFFICIAL_LINE]})
    with open(tmp_path / RELEASE_FILES["test"], "a") as fh:
        fh.write("{broken\n[1, 2]\n")
    errors: list[LineError] = []
    rows = list(import_release(tmp_path, errors=errors))
    assert len(rows) == 1
    assert [(e.line, e.message.split(" (")[0]) for e in errors] == [
        (2, "not valid JSON"),
        (3, "expected a JSON object, got list"),
    ]


def test_export_refuses_samples_without_split_and_leaves_nothing(tmp_path):
    with pytest.raises(InputError, match="no split"):
        export_release(iter([{**OFFICIAL_LINE, "split": "test"}, dict(OFFICIAL_LINE)]), tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


def test_split_from_file_names(tmp_path):
    assert split_of(tmp_path / "final_v8_train_cleaned_2.jsonl") == "train"
    assert split_of(tmp_path / "data" / "validation-00000-of-00001.parquet") == "val"
    with pytest.raises(InputError, match="cannot tell the split"):
        split_of(tmp_path / "final_v8_all.jsonl")


def parquet_release(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)


def test_parquet_media_bytes_become_files_named_by_content(tmp_path):
    wav = sine_wav(0.3)
    mp4 = write_face_clip(tmp_path / "clip.mp4", seconds=0.5, size=64).read_bytes()
    row = {
        **OFFICIAL_LINE,
        "audios": [{"bytes": wav, "path": "cremad_dataset_audio/1077_DFA_SAD_XX.wav"}],
        "videos": [{"bytes": mp4, "path": None}],
    }
    parquet_release(tmp_path / "rel" / "data" / "test-00000-of-00001.parquet", [row])
    rows = list(import_release(tmp_path / "rel", tmp_path / "media"))
    (audio,) = rows[0]["audios"]
    assert audio == f"cremad/audios/{hashlib.sha256(wav).hexdigest()}.wav"  # the name's extension, the bytes' digest
    assert (tmp_path / "media" / audio).read_bytes() == wav
    (video,) = rows[0]["videos"]
    assert video.startswith("cremad/videos/") and video.endswith(".mp4")
    assert (tmp_path / "media" / video).read_bytes() == mp4
    assert rows[0]["split"] == "test"


def test_parquet_needs_media_root_and_refuses_escaping_paths(tmp_path):
    row = {**OFFICIAL_LINE, "audios": [{"bytes": b"RIFF", "path": "../../etc/evil.wav"}]}
    parquet_release(tmp_path / "rel" / "train.parquet", [row])
    with pytest.raises(InputError, match="media-root"):
        list(import_release(tmp_path / "rel"))
    errors: list[LineError] = []
    assert list(import_release(tmp_path / "rel", tmp_path / "media", errors)) == []  # the row is reported, not written
    assert len(errors) == 1 and errors[0].line == 1 and "escapes the data root" in errors[0].message
    assert not (tmp_path / "etc").exists()


def test_release_folder_without_split_files(tmp_path):
    with pytest.raises(InputError, match="no final_v8_"):
        list(import_release(tmp_path))

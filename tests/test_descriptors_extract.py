"""Extraction on the fixture clips (real MediaPipe and OpenSMILE), errors, resume after kill, shards, the CLI."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import zarr
from click.testing import CliRunner

from hba_core.descriptors.extract import in_shard, parse_shard, run_extract
from hba_core.descriptors.merge import merge_stores
from hba_core.descriptors.store import open_store, pooled
from hba_core.errors import HbaError
from hba_core.jsonl import iter_jsonl, write_jsonl
from hba_tools.descriptors import main as cli

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:google.*")
pytest.importorskip("mediapipe")
pytest.importorskip("opensmile")


@pytest.fixture(scope="module")
def atlas_store(fixture_data, tmp_path_factory):
    path = tmp_path_factory.mktemp("desc") / "atlas.zarr"
    summary = run_extract(fixture_data.atlas, fixture_data.data, path)
    return path, summary


def _many_clips(fixture_data, root, copies: int):
    """A samples file over ``copies`` renamed copies of each fixture clip and wav (distinct media keys)."""
    rows = []
    for c in range(copies):
        for k in range(4):
            for kind, ext in (("video", "mp4"), ("audio", "wav")):
                key = f"{kind}/c{c}_clip{k}.{ext}"
                (root / kind).mkdir(parents=True, exist_ok=True)
                shutil.copy(fixture_data.data / kind / f"clip{k}.{ext}", root / key)
                rows.append({"dataset": "cremad", "problem": f"<{kind}>\nQ", "answer": "x", f"{kind}s": [key]})
    write_jsonl(root / "s.jsonl", rows)
    return root / "s.jsonl"


def test_fixture_clips_have_faces_poses_and_65_llds(atlas_store, fixture_data):
    path, summary = atlas_store
    rows = [row for _, row in iter_jsonl(fixture_data.atlas)]
    videos = {v for r in rows for v in r.get("videos", [])}
    audios = {a for r in rows for a in r.get("audios", [])}
    assert summary.media == len(videos | audios) and summary.errors == []  # each file once
    store = open_store(path)
    assert set(store.index("face")) == videos and set(store.index("audio")) == videos | audios
    assert store.streams["face"]["dim"] == 1404 and store.streams["pose"]["dim"] == 132
    assert store.streams["audio"]["dim"] == 65 and len(store.streams["audio"]["columns"]) == 65
    for stream in ("face", "pose"):
        lengths, counts = store.column(stream, "lengths"), store.column(stream, "valid_counts")
        assert counts.sum() >= 0.8 * lengths.sum()  # detections on most frames of the moving face
    for key in videos:  # 5 fps over 1.5-2.25 s clips
        values, _ = store.frames("face", key)
        assert 7 <= len(values) <= 12
        audio, _ = store.frames("audio", key)
        assert audio.shape[1] == 65 and abs(len(audio) - 100 * len(values) / 5) <= 12  # 10 ms frames


def test_pooled_vectors_are_exactly_mean_and_std_of_valid_frames(atlas_store):
    store = open_store(atlas_store[0])
    for stream in ("face", "pose", "audio"):
        keys = list(store.index(stream))
        matrix, counts = pooled(store, stream, keys)
        for row, key in enumerate(keys):
            values, valid = store.frames(stream, key)
            assert np.isnan(values[~valid]).all() and not np.isnan(values[valid]).any()
            rows = values[valid].astype(np.float64)
            expected = np.concatenate([rows.mean(0), rows.std(0)]).astype(np.float32)
            np.testing.assert_array_equal(matrix[row], expected)
            assert counts[row] == valid.sum()


def test_rerun_skips_everything_and_changes_nothing(atlas_store, fixture_data):
    path, _ = atlas_store
    before = open_store(path).group.attrs["committed"]
    summary = run_extract(fixture_data.atlas, fixture_data.data, path)
    assert summary.extracted == 0 and summary.skipped == summary.media
    assert open_store(path).group.attrs["committed"] == before


def test_unreadable_media_are_recorded_and_the_run_goes_on(fixture_data, tmp_path):
    root = tmp_path / "data"
    (root / "video").mkdir(parents=True)
    shutil.copy(fixture_data.data / "video/clip0.mp4", root / "video/ok.mp4")
    (root / "video/corrupt.mp4").write_bytes(os.urandom(5000))
    shutil.copy(fixture_data.data / "audio/clip0.wav", root / "video/audio-only.mp4")  # a wav under a video name
    rows = [
        {"dataset": "cremad", "problem": "<video>\nQ", "answer": "x", "videos": [k]}
        for k in ("video/corrupt.mp4", "video/missing.mp4", "../escape.mp4", "video/ok.mp4", "video/audio-only.mp4")
    ]
    write_jsonl(tmp_path / "s.jsonl", rows)
    summary = run_extract(tmp_path / "s.jsonl", root, tmp_path / "d.zarr")
    reasons = {(k, s): r for k, s, r in summary.errors}
    assert set(reasons) == {
        (k, s) for k in ("video/corrupt.mp4", "video/missing.mp4", "../escape.mp4") for s in ("face", "pose", "audio")
    } | {("video/audio-only.mp4", "face"), ("video/audio-only.mp4", "pose")}
    assert reasons[("video/missing.mp4", "face")] == "media file not found"
    assert "escapes the data root" in reasons[("../escape.mp4", "pose")]
    assert reasons[("video/audio-only.mp4", "face")] == "no video stream"
    store = open_store(tmp_path / "d.zarr")
    assert set(store.index("face")) == {"video/ok.mp4"}
    assert set(store.index("audio")) == {"video/ok.mp4", "video/audio-only.mp4"}
    assert len(store.errors()) == len(summary.errors)
    again = run_extract(tmp_path / "s.jsonl", root, tmp_path / "d.zarr")  # errors are not retried
    assert again.extracted == 0 and again.errors == []


def _store_arrays(path) -> dict[str, np.ndarray]:
    group = zarr.open_group(str(path), mode="r")
    committed = group.attrs["committed"]
    out = {}
    for stream, counts in committed["streams"].items():
        for name in ("frames", "valid"):
            out[f"{stream}/{name}"] = group[stream][name][: counts["frames"]]
        for name in ("keys", "datasets", "offsets", "lengths", "valid_counts", "pooled"):
            out[f"{stream}/{name}"] = group[stream][name][: counts["clips"]]
    return out


def _assert_same_store(a, b) -> None:
    left, right = _store_arrays(a), _store_arrays(b)
    assert left.keys() == right.keys()
    for name in left:
        np.testing.assert_array_equal(left[name], right[name], err_msg=name)


def test_killed_extraction_resumes_to_the_same_store(fixture_data, tmp_path):
    samples = _many_clips(fixture_data, tmp_path / "data", copies=3)
    command = [
        sys.executable,
        "-m",
        "hba_tools.descriptors",
        "extract",
        "--samples",
        str(samples),
        "--root",
        str(tmp_path / "data"),
        "--store",
        str(tmp_path / "killed.zarr"),
        "--commit-seconds",
        "0",
        "--streams",
        "face,audio",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    committed = 0
    while time.monotonic() < deadline and process.poll() is None:
        try:
            committed = zarr.open_group(str(tmp_path / "killed.zarr"), mode="r").attrs["committed"]["streams"]
            committed = committed.get("audio", {}).get("clips", 0)
        except Exception:  # the store is being created
            committed = 0
        if committed >= 3:
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    assert process.wait() == -signal.SIGKILL, "the extraction finished before it could be killed"
    partial = open_store(tmp_path / "killed.zarr")
    assert 0 < partial.counts("audio")[0] < 24
    resumed = run_extract(samples, tmp_path / "data", tmp_path / "killed.zarr", ("face", "audio"))
    assert resumed.skipped > 0 and resumed.extracted + resumed.skipped == 24
    run_extract(samples, tmp_path / "data", tmp_path / "whole.zarr", ("face", "audio"))
    _assert_same_store(tmp_path / "killed.zarr", tmp_path / "whole.zarr")


def test_shards_partition_the_media_and_merge_to_the_whole(atlas_store, fixture_data, tmp_path):
    assert parse_shard("1/3") == (1, 3)
    with pytest.raises(HbaError, match="need 0 <= i < n"):
        parse_shard("3/3")
    keys = [f"v{i}.mp4" for i in range(200)]
    assert sorted(k for i in range(3) for k in keys if in_shard(k, (i, 3))) == sorted(keys)
    shards = [tmp_path / f"s{i}.zarr" for i in range(2)]
    for i, shard in enumerate(shards):
        run_extract(fixture_data.atlas, fixture_data.data, shard, ("audio",), shard=(i, 2), workers=2 if i == 0 else 1)
    assert all(open_store(s).counts("audio")[0] > 0 for s in shards)
    merge_stores(tmp_path / "merged.zarr", shards)
    merged, whole = open_store(tmp_path / "merged.zarr"), open_store(atlas_store[0])
    assert set(merged.index("audio")) == set(whole.index("audio"))
    for key in whole.index("audio"):
        np.testing.assert_array_equal(merged.frames("audio", key)[0], whole.frames("audio", key)[0])


def test_cli_extract_stats_show_pool(fixture_data, tmp_path):
    runner = CliRunner()
    store = str(tmp_path / "a.zarr")
    args = [
        "extract",
        "--samples",
        str(fixture_data.atlas),
        "--root",
        str(fixture_data.data),
        "--store",
        store,
        "--streams",
        "audio",
    ]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert result.stdout == store + "\n" and "8 media: 8 extracted, 0 already in the store, 0 errors" in result.stderr
    result = runner.invoke(cli, ["stats", "--store", store])
    assert result.exit_code == 0 and '"stream":"audio","clips":8' in result.stdout
    result = runner.invoke(cli, ["show", "--store", store, "audio/clip1.wav"])
    assert result.exit_code == 0 and len(json.loads(result.stdout)["streams"]["audio"]["pooled"]) == 130
    npz = tmp_path / "pooled.npz"
    result = runner.invoke(cli, ["pool", "--store", store, "--samples", str(fixture_data.atlas), "--out", str(npz)])
    assert result.exit_code == 0, result.output
    rows = [row for _, row in iter_jsonl(fixture_data.atlas)]
    with np.load(npz) as data:
        assert data["ids"].tolist() == [row["id"] for row in rows] and data["audio"].shape == (len(rows), 130)
        has_media = np.array([bool(row.get("audios") or row.get("videos")) for row in rows])
        assert ((data["audio_valid_counts"] > 0) == has_media).all() and np.isnan(data["audio"][~has_media]).all()
    assert f"{(~has_media).sum()} (sample, stream) pairs without descriptors" in result.stderr
    result = runner.invoke(cli, ["pool", "--store", store, "--samples", str(fixture_data.atlas), "--streams", "face"])
    assert result.exit_code == 1 and "unknown stream in" in result.output and "Valid: audio" in result.output
    result = runner.invoke(cli, args[:-1] + ["face,voice"])
    assert result.exit_code == 1 and "unknown stream 'voice'" in result.output
    result = runner.invoke(cli, args + ["--shard", "2"])
    assert result.exit_code == 1 and "--shard '2': expected i/n" in result.output


@pytest.mark.parametrize("command", ["extract", "merge", "import-pt", "pool", "show", "stats"])
def test_every_command_has_help_with_an_example(command):
    result = CliRunner().invoke(cli, [command, "--help"])
    assert result.exit_code == 0 and "Example:" in result.output and "hba-descriptors" in result.output


def test_landmarks_read_from_the_wire_equal_the_protobuf_attributes(fixture_data):
    import mediapipe as mp
    from mediapipe.framework.formats import landmark_pb2

    from hba_core.descriptors.video import _landmark_rows, _rows_from_wire
    from hba_core.media import sample_video_frames

    frame = sample_video_frames(fixture_data.data / "video/clip0.mp4", fps=1).frames[0]
    with mp.solutions.face_mesh.FaceMesh(max_num_faces=1) as face, mp.solutions.pose.Pose() as pose:
        mesh = face.process(frame).multi_face_landmarks[0]
        body = pose.process(frame).pose_landmarks
    np.testing.assert_array_equal(_rows_from_wire(mesh, 468, 3), _landmark_rows(mesh.landmark, 468, False))
    np.testing.assert_array_equal(_rows_from_wire(body, 33, 4), _landmark_rows(body.landmark, 33, True))
    uneven = landmark_pb2.NormalizedLandmarkList()
    uneven.CopyFrom(mesh)
    uneven.landmark[7].visibility = 0.5  # one landmark with an extra field: not the uniform layout
    assert _rows_from_wire(uneven, 468, 3) is None

"""The release's .pt behavioural features: import-pt of the reference's dict layouts (files and shard
bytes), the reference's BAM input built from them, and hba-bam's sample checks.

Feature files are written as the reference's readers (``training/sft/models/bam_utils.py``) expect
them: keypoint dicts ``{"pose", "face", "left_hand", "right_hand"}`` of (T, K, 3) tensors and
OpenSMILE dicts ``{"features": (1, 6373)}``, saved with ``torch.save``. The expected reference
vectors are computed here independently, following bam_utils step by step.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from hba_core.bam.features import reference_features  # noqa: E402
from hba_core.descriptors.import_pt import feature_key, import_pt  # noqa: E402
from hba_core.descriptors.store import open_store, pooled  # noqa: E402
from hba_core.errors import InputError  # noqa: E402
from hba_core.jsonl import write_jsonl  # noqa: E402

PARTS = {"pose": 33, "face": 478, "left_hand": 21, "right_hand": 21}


def keypoints(seed: int, t: int = 4, parts: tuple[str, ...] = tuple(PARTS), channels: int = 3) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {p: torch.rand(t, PARTS[p], channels, generator=g) for p in parts}


def functionals(seed: int) -> dict:
    return {"features": torch.randn(1, 6373, generator=torch.Generator().manual_seed(seed)) * 10}


def bam_utils_video(d: dict) -> np.ndarray:
    """openpose_dict_to_framewise (use_conf) -> pool_temporal meanstd -> _pad_trunc_1d(3318), norm none."""
    chunks = [d[k].double().numpy().reshape(d[k].shape[0], -1) for k in PARTS if k in d]
    x = np.concatenate(chunks, axis=1)
    v = np.concatenate([x.mean(0), x.std(0)])
    out = np.zeros(3318)
    out[: min(3318, v.size)] = v[:3318]
    return out


def bam_utils_audio(d: dict) -> np.ndarray:
    """opensmile_to_framewise -> pool_temporal none (T=1) -> l2 -> _pad_trunc_1d(6373)."""
    v = d["features"].double().numpy()[0]
    return v / max(np.linalg.norm(v), 1e-6)


def sample(i: int, video: str | None, audio: str | None) -> dict:
    row = {"id": f"s{i}", "dataset": "mmsd", "split": "train", "problem": "<video>\nSarcastic?", "answer": "yes"}
    row["class_label"] = "yes"
    row["ext_video_feats"] = [video] if video else []
    row["ext_audio_feats"] = [audio] if audio else []
    return row


@pytest.fixture()
def release(tmp_path):
    root = tmp_path / "release"
    (root / "feats").mkdir(parents=True)
    files = {
        "feats/v0.pt": keypoints(0),  # every part
        "feats/v1.pt": keypoints(1, parts=("pose", "face")),  # no hands: the reference shifts and pads
        "feats/v2.pt": keypoints(2, parts=("face",), channels=2),  # 2 channels: another width than the stream's
        "feats/nan.pt": {**keypoints(3), "pose": keypoints(3)["pose"].index_fill(0, torch.tensor([1]), float("nan"))},
        "feats/list.pt": ["not", "features"],
        "feats/odd.pt": {"landmarks": torch.zeros(2, 3)},
        "feats/a0.pt": functionals(0),
        "feats/a1.pt": torch.randn(6373, generator=torch.Generator().manual_seed(5)),  # a bare (D,) tensor
    }
    for name, value in files.items():
        torch.save(value, root / name)
    rows = [
        sample(0, "feats/v0.pt", "feats/a0.pt"),
        sample(1, "feats/v1.pt", "feats/a1.pt"),
        sample(2, "feats/v2.pt", None),
        sample(3, "feats/nan.pt", None),
        sample(4, "feats/list.pt", None),
        sample(5, "feats/odd.pt", "feats/missing.pt"),
        sample(6, None, None),
    ]
    write_jsonl(tmp_path / "release.jsonl", rows)
    return root, tmp_path / "release.jsonl", files, rows


def test_import_pt_keeps_every_keypoint_part_and_reports_bad_files_by_sample(release, tmp_path):
    root, samples, files, _ = release
    summary = import_pt(samples, root, tmp_path / "r.zarr", batch=3)
    assert summary.files == 9 and summary.imported == 5  # v0 v1 nan a0 a1; v2's one part has another width
    errors = {(key, stream): reason for key, stream, reason in summary.errors}
    assert set(errors) == {
        ("feats/v2.pt", "ext_face"),
        ("feats/list.pt", "ext_video"),
        ("feats/odd.pt", "ext_video"),
        ("feats/missing.pt", "ext_audio"),
    }
    assert errors["feats/v2.pt", "ext_face"] == "has 956 features per frame, the stream has 1434"
    assert "found a list" in errors["feats/list.pt", "ext_video"]
    assert "'landmarks'" in errors["feats/odd.pt", "ext_video"]
    assert summary.used_by["feats/list.pt"] == f"sample s4, {samples}:5"
    store = open_store(tmp_path / "r.zarr")
    assert {s: store.streams[s]["dim"] for s in store.streams} == {
        "ext_pose": 99,
        "ext_face": 1434,
        "ext_left_hand": 63,
        "ext_right_hand": 63,
        "ext_audio": 6373,
    }
    values, valid = store.frames("ext_face", "feats/v0.pt")  # frames landmark-major, every channel kept
    np.testing.assert_array_equal(values, files["feats/v0.pt"]["face"].reshape(4, -1).numpy())
    assert valid.all()
    assert "feats/v1.pt" not in store.index("ext_left_hand")  # an absent part is absent, not zeros
    vector, counts = pooled(store, "ext_pose", ["feats/nan.pt"])  # the NaN frame is invalid, the rest pooled
    assert counts.tolist() == [3] and np.isfinite(vector).all()
    kept = files["feats/nan.pt"]["pose"].reshape(4, -1).double().numpy()[[0, 2, 3]]
    np.testing.assert_allclose(vector[0, :99], kept.mean(0), rtol=1e-5)
    again = import_pt(samples, root, tmp_path / "r.zarr")
    assert again.imported == 0 and again.skipped == 9 and again.errors == []


def test_reference_features_follow_bam_utils(release, tmp_path):
    root, samples, files, rows = release
    import_pt(samples, root, tmp_path / "r.zarr")
    store = open_store(tmp_path / "r.zarr")
    video = reference_features(store, rows, "video")
    assert video.values.shape == (7, 3318) and video.valid.tolist() == [True, True, False, True, False, False, False]
    np.testing.assert_allclose(video.values[0], bam_utils_video(files["feats/v0.pt"]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(video.values[1], bam_utils_video(files["feats/v1.pt"]), rtol=1e-5, atol=1e-6)
    assert not video.values[1, 2 * (33 + 478) * 3 :].any()  # the missing hands: zero padding at the end
    assert np.isfinite(video.values).all()  # invalid rows are zeros, and the adapter masks them
    assert video.not_in_store == ["feats/list.pt", "feats/odd.pt", "feats/v2.pt"]  # v2: its one part refused
    assert video.no_file == 1  # s6 names no feature file
    audio = reference_features(store, rows, "audio")
    np.testing.assert_allclose(audio.values[0], bam_utils_audio(files["feats/a0.pt"]), rtol=1e-5, atol=1e-7)
    bare = files["feats/a1.pt"].double().numpy()
    np.testing.assert_allclose(audio.values[1], bare / np.linalg.norm(bare), rtol=1e-5, atol=1e-7)
    assert audio.valid.tolist() == [True, True, False, False, False, False, False]
    assert audio.not_in_store == ["feats/missing.pt"]


def _pt_bytes(value: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


def test_import_pt_reads_pt_bytes_straight_from_a_v2_shard(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    from hba_core.samples import iter_samples

    cells = [
        [_pt_bytes(keypoints(0))],
        [_pt_bytes({"pose": keypoints(1)["pose"]})],
        [_pt_bytes("a string, not features")],
    ]
    audio = [[_pt_bytes(functionals(0))], [], []]
    n = len(cells)
    table = pa.table(
        {
            "problem": ["<video>\nSarcastic?"] * n,
            "answer": ["yes"] * n,
            "dataset": ["mmsd"] * n,
            "modality_signature": ["text_video"] * n,
            "task": ["SAR"] * n,
            "class_label": ["yes"] * n,
            "ext_video_feats": pa.array(cells, pa.list_(pa.binary())),
            "ext_audio_feats": pa.array(audio, pa.list_(pa.binary())),
        }
    )
    shard = tmp_path / "test-00000-of-00001.parquet"
    pq.write_table(table, shard)
    summary = import_pt(shard, tmp_path, tmp_path / "r.zarr")
    assert summary.files == 4 and summary.imported == 3 and len(summary.errors) == 1
    key, stream, reason = summary.errors[0]
    assert key == "test-00000-of-00001.parquet#2/ext_video_feats/0" and stream == "ext_video"
    assert "found a str" in reason
    assert summary.used_by[key].endswith("test-00000-of-00001.parquet:3 ext_video_feats[0]")
    store = open_store(tmp_path / "r.zarr")
    assert "test-00000-of-00001.parquet#0/ext_video_feats/0" in store.index("ext_right_hand")
    rows = [s for _, s in iter_samples(shard, media=True)]
    assert feature_key(rows[0]["ext_video_feats"][0]) == "test-00000-of-00001.parquet#0/ext_video_feats/0"
    video = reference_features(store, rows, "video")
    np.testing.assert_allclose(video.values[0], bam_utils_video(keypoints(0)), rtol=1e-5, atol=1e-6)
    assert video.valid.tolist() == [True, True, False]


def test_fit_normalizer_skips_a_part_that_is_missing_in_one_clip():
    """Issue 16: one training clip with a face but no pose must not zero the pose columns for everyone."""
    from hba_core.bam.adapter import BehavioralAdapter

    feats = torch.tensor([[1.0, 10.0], [3.0, 20.0], [5.0, float("nan")]])  # clip 3: face, no pose
    adapter = BehavioralAdapter(feat_dim=2, out_dim=3, hidden=4, dropout=0.0).eval()
    adapter.fit_normalizer(feats, torch.ones(3, dtype=torch.bool))
    np.testing.assert_allclose(adapter.feat_mean.numpy(), [3.0, 15.0])
    np.testing.assert_allclose(adapter.feat_std.numpy(), [np.sqrt(8 / 3), 5.0], rtol=1e-6)
    # the missing part becomes the training mean: the same output as giving the mean itself
    with torch.no_grad():
        missing = adapter(feats[2:], torch.ones(1, dtype=torch.bool))
        at_mean = adapter(torch.tensor([[5.0, 15.0]]), torch.ones(1, dtype=torch.bool))
        other = adapter(torch.tensor([[5.0, 20.0]]), torch.ones(1, dtype=torch.bool))
    assert torch.isfinite(missing).all()
    torch.testing.assert_close(missing, at_mean)
    assert not torch.allclose(missing, other)


def test_fit_normalizer_column_missing_everywhere_keeps_unit_scale():
    from hba_core.bam.adapter import BehavioralAdapter

    adapter = BehavioralAdapter(feat_dim=2, out_dim=2, hidden=2)
    adapter.fit_normalizer(torch.tensor([[1.0, float("nan")], [2.0, float("nan")]]), torch.ones(2, dtype=torch.bool))
    assert adapter.feat_mean.tolist() == [1.5, 0.0] and adapter.feat_std.tolist() == [0.5, 1.0]


def _rows(*rows: dict) -> list[dict]:
    base = {"problem": "<video>\nQ", "answer": "yes", "class_label": "yes", "split": "train"}
    return [{**base, **r} for r in rows]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (_rows({"id": "a", "dataset": "mmsd"}, {"id": "a", "dataset": "urfunny"}), ":2: sample id 'a' repeats line 1"),
        (_rows({"id": "a", "dataset": "mmsd"}, {"id": "b", "dataset": "nosuchds"}), ":2: unknown dataset 'nosuchds'"),
        (_rows({"id": "a", "dataset": "mmsd"}, {"id": "b"}), ":2: sample 'b' has no dataset"),
    ],
)
def test_bam_samples_refuse_duplicate_ids_and_unknown_datasets(tmp_path, rows, message):
    """Issue 19: a repeated id would replace a sample's features; a bad dataset would drop the row."""
    from hba_core.bam.data import read_bam_samples

    path = tmp_path / "s.jsonl"
    write_jsonl(path, rows)
    with pytest.raises(InputError) as raised:
        read_bam_samples(str(path), ["mmsd"])
    assert f"{path}{message}" in str(raised.value)


def test_bam_samples_keep_every_train_and_val_row(tmp_path):
    from hba_core.bam.data import read_bam_samples

    path = tmp_path / "s.jsonl"
    rows = _rows({"id": "a", "dataset": "mmsd"}, {"id": "b", "dataset": "mmsd", "split": "val"})
    rows += _rows({"id": "c", "dataset": "urfunny"}, {"id": "d", "dataset": "mmsd", "split": "test"})
    write_jsonl(path, rows)
    found = read_bam_samples(str(path), ["mmsd"])
    assert {split: [r["id"] for r in part] for split, part in found["mmsd"].items()} == {"train": ["a"], "val": ["b"]}
    assert json.dumps(found)  # rows stay JSON (no bytes)


def test_import_pt_command_names_the_sample_of_each_bad_file(release, tmp_path):
    from click.testing import CliRunner

    from hba_tools.descriptors import main

    root, samples, _, _ = release
    result = CliRunner().invoke(
        main, ["import-pt", "--samples", str(samples), "--root", str(root), "--store", str(tmp_path / "r.zarr")]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{tmp_path / 'r.zarr'}\n"
    assert "9 feature files: 5 imported, 0 already in the store, 4 errors" in result.stderr
    assert f"error feats/list.pt (sample s4, {samples}:5) [ext_video]: expected a dict" in result.stderr
    strict = CliRunner().invoke(
        main,
        ["import-pt", "--samples", str(samples), "--root", str(root), "--store", str(tmp_path / "r2.zarr"), "--strict"],
    )
    assert strict.exit_code == 1 and "4 errors" in strict.stderr


def test_a_clip_without_pose_leaves_the_video_normaliser_of_the_others_intact(tmp_path):
    """Issue 16 through the store: face found in every clip, pose in all but one."""
    from hba_core.bam.adapter import BehavioralAdapter
    from hba_core.bam.features import sample_features
    from hba_core.descriptors.store import ClipResult, DescriptorStore

    streams = {"face": {"dim": 2, "source": "test"}, "pose": {"dim": 1, "source": "test"}}
    with DescriptorStore.open_for_writing(tmp_path / "d.zarr", streams) as store:
        clips = []
        for i in range(3):
            face = np.full((2, 2), float(i), np.float32)
            pose = np.full((2, 1), np.nan if i == 2 else 10.0 * (i + 1), np.float32)  # clip 2: no pose found
            valid = ~np.isnan(pose).any(axis=1)
            clips.append(ClipResult(f"v{i}.mp4", "mmsd", {"face": (face, np.ones(2, bool)), "pose": (pose, valid)}))
        store.append(clips)
    rows = [{"id": f"s{i}", "dataset": "mmsd", "videos": [f"v{i}.mp4"]} for i in range(3)]
    found = sample_features(open_store(tmp_path / "d.zarr"), rows, "video")
    assert found.valid.tolist() == [True, True, True] and np.isnan(found.values[2, 4:]).all()
    adapter = BehavioralAdapter(feat_dim=6, out_dim=2, hidden=2)
    adapter.fit_normalizer(torch.from_numpy(found.values), torch.from_numpy(found.valid))
    assert torch.isfinite(adapter.feat_mean).all() and adapter.feat_mean[4].item() == 15.0  # pose mean of clips 0, 1

"""The descriptor store without any extractor: layout, pooling, commits, kill leftovers, merge, .pt import."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import zarr

from hba_core.descriptors.import_pt import import_pt
from hba_core.descriptors.merge import merge_stores
from hba_core.descriptors.store import ClipResult, DescriptorStore, open_store, pool_frames, pooled
from hba_core.errors import HbaError, InputError
from hba_core.jsonl import write_jsonl

CONFIG = {"audio": {"dim": 3, "source": "test"}, "face": {"dim": 2, "source": "test"}}


def clip(key: str, seed: int, *, t: int = 5, nan_rows: tuple[int, ...] = ()) -> ClipResult:
    rng = np.random.default_rng(seed)
    face = rng.normal(size=(t, 2)).astype(np.float32)
    face[list(nan_rows)] = np.nan
    audio = rng.normal(size=(t * 3, 3)).astype(np.float32)
    return ClipResult(
        key, "cremad", {"face": (face, ~np.isnan(face).any(axis=1)), "audio": (audio, np.ones(len(audio), bool))}
    )


def test_pool_frames_is_mean_and_population_std_of_valid_rows():
    values = np.array([[1, 10], [3, 30], [np.nan, np.nan], [5, 20]], np.float32)
    vector, count = pool_frames(values, ~np.isnan(values).any(axis=1))
    assert count == 3
    np.testing.assert_allclose(vector, [3, 20, np.std([1, 3, 5]), np.std([10, 30, 20])], rtol=1e-6)
    empty, none = pool_frames(np.full((2, 2), np.nan, np.float32), np.zeros(2, bool))
    assert none == 0 and np.isnan(empty).all() and empty.shape == (4,)


def test_round_trip_frames_index_and_pooled(tmp_path):
    path = tmp_path / "d.zarr"
    clips = [clip("a.mp4", 0, nan_rows=(1, 3)), clip("b.mp4", 1, t=7), clip("c.mp4", 2, t=1, nan_rows=(0,))]
    with DescriptorStore.open_for_writing(path, CONFIG) as store:
        store.append(clips[:2])
        store.append(clips[2:])
    store = open_store(path)
    assert store.counts("face") == (3, 13) and store.counts("audio") == (3, 39)
    for c in clips:
        values, valid = store.frames("face", c.key)
        np.testing.assert_array_equal(values, c.streams["face"][0])  # NaN rows kept as NaN
        np.testing.assert_array_equal(valid, c.streams["face"][1])
    matrix, counts = pooled(store, "face", ["c.mp4", "a.mp4"])
    assert counts.tolist() == [0, 3] and np.isnan(matrix[0]).all()
    face_a = clips[0].streams["face"][0][[0, 2, 4]].astype(np.float64)
    np.testing.assert_allclose(matrix[1], np.concatenate([face_a.mean(0), face_a.std(0)]), rtol=1e-6)
    assert pooled(store, "audio")[0].shape == (3, 6)
    with pytest.raises(InputError, match="zz.mp4: no face descriptors"):
        pooled(store, "face", ["a.mp4", "zz.mp4"])
    nan_rows, missing = pooled(store, "face", ["zz.mp4"], missing="nan")
    assert missing.tolist() == [0] and np.isnan(nan_rows).all()
    with pytest.raises(HbaError, match="unknown stream.*'pos'.*Valid: audio, face"):
        store.counts("pos")


def test_store_attributes_are_self_describing_and_valid(tmp_path):
    from hba_core import schemas

    with DescriptorStore.open_for_writing(tmp_path / "d.zarr", CONFIG) as store:
        store.append([clip("a.mp4", 0)])
    attrs = dict(zarr.open_group(str(tmp_path / "d.zarr"), mode="r").attrs)
    assert schemas.errors(attrs, "descriptor-store") == []
    assert attrs["libraries"]["zarr"] == zarr.__version__
    assert attrs["committed"] == {
        "streams": {"audio": {"clips": 1, "frames": 15}, "face": {"clips": 1, "frames": 5}},
        "errors": 0,
    }


def test_resume_with_other_settings_is_refused(tmp_path):
    with DescriptorStore.open_for_writing(tmp_path / "d.zarr", CONFIG):
        pass
    changed = {"face": {"dim": 2, "source": "test", "fps": 10}}
    with pytest.raises(HbaError, match="stream 'face' was extracted with other settings \\(fps differ\\)"):
        DescriptorStore.open_for_writing(tmp_path / "d.zarr", changed)


def test_second_writer_is_refused_while_the_first_holds_the_store(tmp_path):
    with DescriptorStore.open_for_writing(tmp_path / "d.zarr", CONFIG):
        with pytest.raises(HbaError, match="another process is writing this store"):
            DescriptorStore.open_for_writing(tmp_path / "d.zarr", CONFIG)
    DescriptorStore.open_for_writing(tmp_path / "d.zarr", CONFIG).close()


def test_rows_of_an_uncommitted_batch_are_ignored_then_trimmed(tmp_path):
    """A writer killed between writing rows and committing leaves rows past the committed ends."""
    path = tmp_path / "d.zarr"
    with DescriptorStore.open_for_writing(path, CONFIG) as store:
        store.append([clip("a.mp4", 0)])
    group = zarr.open_group(str(path), mode="r+")  # what a killed append leaves: rows written, no commit
    group["face/frames"].resize((9, 2))
    group["face/frames"][5:9] = 7.0
    group["face/keys"].resize((2,))
    group["face/keys"][1] = "ghost.mp4"
    reader = open_store(path)
    assert reader.counts("face") == (1, 5) and set(reader.index("face")) == {"a.mp4"}
    with DescriptorStore.open_for_writing(path, CONFIG) as store:
        assert store.group["face/frames"].shape == (5, 2) and store.group["face/keys"].shape == (1,)
        store.append([clip("b.mp4", 1)])
    values, _ = open_store(path).frames("face", "b.mp4")
    np.testing.assert_array_equal(values, clip("b.mp4", 1).streams["face"][0])


def test_a_killed_writer_with_grown_arrays_resumes_without_duplicates_or_losses(tmp_path):
    """Writers grow arrays ahead of the commits; a kill leaves that slack, the next writer trims it."""
    path = tmp_path / "d.zarr"
    store = DescriptorStore.open_for_writing(path, CONFIG)
    for k in range(5):  # one clip per commit: the arrays grow by doubling, not per commit
        store.append([clip(f"{k}.mp4", k)])
    grown = store.group["face/frames"].shape[0]
    assert grown > 25 and open_store(path).counts("face") == (5, 25)
    store._lock.close()  # killed: no close(), so no trim; the lock dies with the process
    with DescriptorStore.open_for_writing(path, CONFIG) as again:
        assert again.group["face/frames"].shape == (25, 2) and again.group["face/keys"].shape == (5,)
        assert again.done("face") == {f"{k}.mp4" for k in range(5)}
        again.append([clip("5.mp4", 5), clip("6.mp4", 6)])
    reader = open_store(path)
    assert list(reader.column("face", "keys")) == [f"{k}.mp4" for k in range(7)]
    for k in range(7):
        values, _ = reader.frames("face", f"{k}.mp4")
        np.testing.assert_array_equal(values, clip(f"{k}.mp4", k).streams["face"][0])
    assert reader.group["face/frames"].shape == (35, 2) and reader.group["audio/pooled"].shape == (7, 6)  # closed


def test_errors_table_and_done_keys(tmp_path):
    path = tmp_path / "d.zarr"
    with DescriptorStore.open_for_writing(path, CONFIG) as store:
        store.append([clip("a.mp4", 0), ClipResult("bad.mp4", "cremad", errors={"face": "video decode failed (x)"})])
        assert store.done("face") == {"a.mp4", "bad.mp4"} and store.done("audio") == {"a.mp4"}
    assert open_store(path).errors() == [{"key": "bad.mp4", "stream": "face", "reason": "video decode failed (x)"}]


def test_merge_joins_shards_and_skips_what_is_there(tmp_path):
    for name, keys in (("s0", ["a.mp4", "c.mp4"]), ("s1", ["b.mp4"])):
        with DescriptorStore.open_for_writing(tmp_path / f"{name}.zarr", CONFIG) as store:
            store.append([clip(k, i) for i, k in enumerate(keys)])
            store.append([ClipResult(f"{name}-bad.wav", "cremad", errors={"audio": "no audio stream"})])
    summary = merge_stores(tmp_path / "all.zarr", [tmp_path / "s0.zarr", tmp_path / "s1.zarr"])
    assert summary.clips == {"audio": 3, "face": 3} and summary.errors == 2
    merged = open_store(tmp_path / "all.zarr")
    for name in ("s0", "s1"):
        shard = open_store(tmp_path / f"{name}.zarr")
        for key in shard.index("face"):
            for stream in ("face", "audio"):
                np.testing.assert_array_equal(merged.frames(stream, key)[0], shard.frames(stream, key)[0])
                np.testing.assert_array_equal(pooled(merged, stream, [key])[0], pooled(shard, stream, [key])[0])
    again = merge_stores(tmp_path / "all.zarr", [tmp_path / "s0.zarr"])
    assert again.clips == {} and again.skipped == 4 and again.errors == 0
    assert len(open_store(tmp_path / "all.zarr").errors()) == 2


class Exploit:
    def __reduce__(self):
        return (print, ("this must never run",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_import_pt_loads_tensors_with_weights_only(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    root = tmp_path / "release"
    (root / "feats").mkdir(parents=True)
    tensors = {f"feats/v{i}.pt": torch.randn(4 + i, 6) for i in range(3)}
    tensors["feats/a0.pt"] = torch.randn(10)  # one frame of 10
    for key, value in tensors.items():
        torch.save(value, root / key)
    with open(root / "feats/evil.pt", "wb") as fh:
        pickle.dump(Exploit(), fh)
    (root / "feats/torn.pt").write_bytes(b"PK\x03\x04 not a zip")
    torch.save(torch.randn(3, 5), root / "feats/narrow.pt")
    samples = [
        {"dataset": "cremad", "problem": "<video>\nQ", "answer": "x", "ext_video_feats": [k], "ext_audio_feats": []}
        for k in [
            "feats/v0.pt",
            "feats/v1.pt",
            "feats/v0.pt",
            "feats/evil.pt",
            "feats/v2.pt",
            "feats/torn.pt",
            "feats/narrow.pt",
            "../outside.pt",
        ]
    ]
    samples.append({"dataset": "cremad", "problem": "<audio>\nQ", "answer": "x", "ext_audio_feats": ["feats/a0.pt"]})
    write_jsonl(tmp_path / "s.jsonl", samples)
    summary = import_pt(tmp_path / "s.jsonl", root, tmp_path / "r.zarr", batch=2)
    assert summary.files == 8 and summary.imported == 4
    reasons = {key: reason for key, _, reason in summary.errors}
    assert set(reasons) == {"feats/evil.pt", "feats/torn.pt", "feats/narrow.pt", "../outside.pt"}
    assert "weights_only=True" in reasons["feats/evil.pt"] and "must never run" not in capsys.readouterr().out
    assert reasons["feats/narrow.pt"] == "has 5 features per frame, the stream has 6"
    assert "escapes the data root" in reasons["../outside.pt"]
    store = open_store(tmp_path / "r.zarr")
    matrix, counts = pooled(store, "ext_video", ["feats/v1.pt"])
    v1 = tensors["feats/v1.pt"].double()
    expected = torch.cat([v1.mean(0), v1.std(0, unbiased=False)]).float().numpy()
    np.testing.assert_allclose(matrix[0], expected, rtol=1e-5)
    assert counts.tolist() == [5] and store.frames("ext_audio", "feats/a0.pt")[0].shape == (1, 10)
    again = import_pt(tmp_path / "s.jsonl", root, tmp_path / "r.zarr")
    assert again.imported == 0 and again.skipped == 8 and again.errors == []


def test_a_few_keys_of_a_large_store_read_the_same_rows(tmp_path):
    with DescriptorStore.open_for_writing(tmp_path / "d.zarr", CONFIG) as store:
        store.append([clip(f"k{i}.mp4", i, t=2) for i in range(60)])
    store = open_store(tmp_path / "d.zarr")
    everything, all_counts = pooled(store, "face")
    few, counts = pooled(store, "face", ["k41.mp4", "k3.mp4", "k41.mp4"])  # 2 of 60 rows: read by row
    np.testing.assert_array_equal(few, everything[[41, 3, 41]])
    assert counts.tolist() == all_counts[[41, 3, 41]].tolist()

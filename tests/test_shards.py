"""The published Atlas v2 Parquet shards as a sample source: reading, ids, lazy media, import, score."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pq = pytest.importorskip("pyarrow.parquet")

from click.testing import CliRunner  # noqa: E402

from hba_core.errors import MediaError  # noqa: E402
from hba_core.fixtures.shards import BAD_ROWS, sine_wav, write_struct_shard, write_v2_shards  # noqa: E402
from hba_core.media import decode_audio, resolve_media, sample_video_frames  # noqa: E402
from hba_core.samples import iter_samples  # noqa: E402
from hba_core.sources import BINARY_COLUMNS, is_cell_ref, read_cell  # noqa: E402


@pytest.fixture(scope="module")
def v2(fixture_data, tmp_path_factory):
    """Good shards (one sample per dataset and split) in the published layout, train in two shards."""
    out = tmp_path_factory.mktemp("v2")
    write_v2_shards(out, fixture_data.atlas, fixture_data.data, per_dataset=1)
    return out


@pytest.fixture(scope="module")
def v2_bad(fixture_data, tmp_path_factory):
    """Test shard only, with the bad rows appended (rows 17 and 18)."""
    out = tmp_path_factory.mktemp("v2bad")
    shards = write_v2_shards(out, fixture_data.atlas, fixture_data.data, per_dataset=1, bad=BAD_ROWS)
    return shards["test"][0]


def _run(main, args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result


def test_published_schema_and_every_source_form(v2):
    test = v2 / "data" / "test-00000-of-00001.parquet"
    schema = pq.read_schema(test)
    assert "texts" not in schema.names and str(schema.field("videos").type) == "list<element: binary>"
    folder = [s for _, s in iter_samples(v2)]
    assert {s["split"] for s in folder} == {"train", "val", "test"}  # validation-* -> val
    assert len(folder) == 48
    glob_rows = [s for _, s in iter_samples(str(v2 / "data" / "train-*.parquet"))]
    assert [s["id"] for s in glob_rows] == [s["id"] for s in folder if s["split"] == "train"]
    assert len({s["id"] for s in folder}) == 48  # one id each, across shards and splits
    second = [s for _, s in iter_samples(v2 / "data" / "train-00001-of-00002.parquet")]
    assert [s["id"] for s in second] == [s["id"] for s in glob_rows[len(glob_rows) - len(second) :]]


def test_without_media_no_binary_column_is_read(v2, monkeypatch):
    read = []
    for method in ("read", "read_row_group", "read_row_groups", "iter_batches"):
        original = getattr(pq.ParquetFile, method)

        def spy(self, *args, _original=original, **kw):
            read.append(tuple(kw.get("columns") or ("<all>",)))
            return _original(self, *args, **kw)

        monkeypatch.setattr(pq.ParquetFile, method, spy)
    rows = [s for _, s in iter_samples(v2 / "data" / "test-00000-of-00001.parquet")]
    assert rows and read and all(not set(cols) & {*BINARY_COLUMNS, "<all>"} for cols in read)
    assert all(not set(s) & set(BINARY_COLUMNS) for s in rows)
    with_media = [s for _, s in iter_samples(v2 / "data" / "test-00000-of-00001.parquet", media=True)]
    assert [s["id"] for s in with_media] == [s["id"] for s in rows]  # ids never depend on media bytes
    json.dumps(with_media)  # references are plain JSON, no bytes


def test_media_decode_from_the_shard_equals_the_file(v2, fixture_data):
    atlas = {}
    for line in fixture_data.atlas.read_text().splitlines():
        row = json.loads(line)
        atlas.setdefault((row["split"], row["dataset"]), row)
    rows = [s for _, s in iter_samples(v2 / "data" / "test-00000-of-00001.parquet", media=True)]
    sample = next(s for s in rows if s["videos"] and s["audios"])
    source = atlas[("test", sample["dataset"])]
    assert all(is_cell_ref(r) for r in sample["videos"] + sample["audios"] + sample["ext_video_feats"])
    ref = resolve_media(fixture_data.data, sample["videos"][0])  # a shard read here is trusted
    got = sample_video_frames(ref, fps=2.0).frames
    want = sample_video_frames(fixture_data.data / source["videos"][0], fps=2.0).frames
    assert got.shape == want.shape and np.array_equal(got, want)
    assert np.array_equal(decode_audio(sample["audios"][0]), decode_audio(fixture_data.data / source["audios"][0]))
    feats = torch.load(__import__("io").BytesIO(read_cell(sample["ext_video_feats"][0])), weights_only=True)
    assert set(feats) == {"pose", "face", "left_hand", "right_hand"} and feats["face"].shape[1:] == (478, 3)


def test_a_reference_to_a_shard_outside_the_root_is_refused(v2, tmp_path):
    ref = f"parquet://{tmp_path}/elsewhere/test-00000-of-00001.parquet#0/audios/0"
    with pytest.raises(MediaError, match="escapes the data root"):
        resolve_media(tmp_path / "root", ref)
    with pytest.raises(MediaError, match="malformed"):
        resolve_media(tmp_path, "parquet://x.parquet#zero/audios/0")


def test_import_writes_content_named_files_reports_bad_rows_and_reruns_identically(v2_bad, tmp_path):
    from hba_tools.convert import main

    out, media = tmp_path / "test.jsonl", tmp_path / "media"
    result = _run(main, ["import", "--from", v2_bad, "--media-root", media, "--out", out])
    assert result.exit_code == 1  # rows were rejected: reported, the rest written
    assert f"{v2_bad}:17: audios: cannot open media" in result.output
    assert f"{v2_bad}:18: ext_audio_feats: a .pt holding list" in result.output
    assert "imported 16 samples" in result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    direct = [s for _, s in iter_samples(v2_bad)]
    assert [r["id"] for r in rows] == [s["id"] for s in direct[:16]]  # same ids, nothing else lost
    for row in rows:
        for column in BINARY_COLUMNS:
            for rel in row[column]:
                data = (media / rel).read_bytes()
                assert rel.split("/")[-1].split(".")[0] == hashlib.sha256(data).hexdigest()
    pt = next(r["ext_audio_feats"][0] for r in rows if r["ext_audio_feats"])
    assert torch.load(media / pt, weights_only=True)["features"].shape == (1, 6373)
    files = sorted(p for p in media.rglob("*") if p.is_file())
    first = out.read_bytes()
    out.unlink()  # a re-run after a kill: media partly or wholly there, output absent
    assert _run(main, ["import", "--from", v2_bad, "--media-root", media, "--out", out]).exit_code == 1
    assert out.read_bytes() == first and sorted(p for p in media.rglob("*") if p.is_file()) == files
    assert not list(media.rglob("*.tmp"))


def test_same_name_different_bytes_keep_their_own_and_escapes_are_refused(tmp_path):
    from hba_core.convert.release import import_release

    a, b = sine_wav(0.3, 220.0), sine_wav(0.3, 330.0)  # same size, different bytes
    shard = write_struct_shard(
        tmp_path / "rel" / "test-00000-of-00001.parquet",
        [
            [{"bytes": a, "path": "dia0_utt0.wav"}],
            [{"bytes": b, "path": "dia0_utt0.wav"}],
            [{"bytes": None, "path": "../../outside.wav"}],
            [{"bytes": None, "path": "cremad/kept.wav"}],
        ],
    )
    errors = []
    rows = list(import_release(shard, tmp_path / "media", errors))
    assert [e.line for e in errors] == [3] and "escapes the data root" in errors[0].message
    assert len(rows) == 3
    first, second = rows[0]["audios"][0], rows[1]["audios"][0]
    assert first != second
    assert (tmp_path / "media" / first).read_bytes() == a and (tmp_path / "media" / second).read_bytes() == b
    assert rows[2]["audios"] == ["cremad/kept.wav"]  # a path-only cell inside the root stays a path


def test_scoring_the_shard_and_its_import_give_the_same_report(v2, tmp_path):
    from hba_tools.convert import main as convert
    from hba_tools.score import main as score

    shard = v2 / "data" / "test-00000-of-00001.parquet"
    imported = tmp_path / "test.jsonl"
    assert _run(convert, ["import", "--from", shard, "--media-root", tmp_path / "m", "--out", imported]).exit_code == 0
    preds = tmp_path / "preds.jsonl"
    with open(preds, "w") as fh:
        for k, (_, s) in enumerate(iter_samples(shard)):
            answer = s["answer"] if k % 3 else "neutral"
            fh.write(json.dumps({"id": s["id"], "prediction": answer}) + "\n")
    reports = []
    for truth in (shard, imported):
        result = _run(score, ["--truth", truth, "--pred", preds, "--format", "json"])
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        report["truth"].pop("path")
        reports.append(report)
    assert reports[0] == reports[1]
    assert reports[0]["truth"]["samples"] == 16


def test_stats_and_validate_read_shards(v2):
    from hba_tools.convert import main

    result = _run(main, ["stats", v2, "--format", "csv"])
    assert result.exit_code == 0, result.output
    assert "CMU-MOSEI (SEN),1,1,1,3," in result.stdout  # one sample per split, from the shards
    result = _run(main, ["validate", v2 / "data" / "validation-00000-of-00001.parquet"])
    assert result.exit_code == 0, result.output
    assert "16 records, 0 problems" in result.output


def _reference_cls_file(samples, path, wrong_every=0):
    """A cls_val_generations file as the reference writes it, from samples in order."""
    from hba_core import registry

    predictions, truths, datasets = [], [], []
    for k, s in enumerate(samples):
        ds = registry.dataset(s["dataset"])
        if ds.is_free_text:
            continue
        truth = ds.task.domain.global_index(s["class_label"])
        other = ds.task.domain.global_index(next(lab for lab in ds.labels if lab != s["class_label"]))
        predictions.append(other if wrong_every and k % wrong_every == 0 else truth)
        truths.append(truth)
        datasets.append(s["dataset"])
    path.write_text(json.dumps({"predictions": predictions, "ground_truths": truths, "datasets": datasets}))
    return predictions


def test_import_predictions_from_reference_files_matches_by_dataset_and_position(v2, tmp_path):
    from hba_core import registry
    from hba_tools.convert import main

    val = v2 / "data" / "validation-00000-of-00001.parquet"
    samples = [s for _, s in iter_samples(val)]
    results = tmp_path / "cls_val_generations_500.json"
    predictions = _reference_cls_file(samples, results, wrong_every=2)
    out = tmp_path / "ref.jsonl"
    result = _run(main, ["import-predictions", results, "-s", val, "--out", out])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    cls = [s for s in samples if not registry.dataset(s["dataset"]).is_free_text]
    assert [r["id"] for r in rows] == [s["id"] for s in cls]
    assert [r["prediction"] for r in rows] == [registry.global_classes()[p][1] for p in predictions]
    assert sum(r["prediction"] == s["class_label"] for r, s in zip(rows, cls, strict=True)) == len(cls) // 2

    qa = tmp_path / "validation_qa_preds_step_500.json"
    free = [s for s in samples if registry.dataset(s["dataset"]).is_free_text]
    qa.write_text(json.dumps([{"dataset": s["dataset"], "pred": "A guess.", "gold": s["answer"]} for s in free]))
    result = _run(main, ["import-predictions", qa, "-s", val, "--out", tmp_path / "qa.jsonl"])
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["id"] for line in (tmp_path / "qa.jsonl").read_text().splitlines()] == [
        s["id"] for s in free
    ]


def test_import_predictions_refuses_a_shifted_file(v2, tmp_path):
    from hba_core import registry
    from hba_tools.convert import main

    val = v2 / "data" / "validation-00000-of-00001.parquet"
    samples = [s for _, s in iter_samples(val)]
    results, out = tmp_path / "cls_val_generations_1.json", tmp_path / "ref.jsonl"
    _reference_cls_file([*samples, next(s for s in samples if s["dataset"] == "cremad")], results)
    result = _run(main, ["import-predictions", results, "-s", val, "--out", out])
    assert result.exit_code == 1
    assert "2 cremad entries but 1 cremad samples" in result.output and not out.exists()
    _reference_cls_file(samples, results)
    data = json.loads(results.read_text())
    k = data["datasets"].index("cremad")
    data["ground_truths"][k] = registry.dataset("cremad").task.domain.global_index("neutral")
    results.write_text(json.dumps(data))
    result = _run(main, ["import-predictions", results, "-s", val, "--out", out])
    assert result.exit_code == 1, result.output
    assert f"entry {k}: ground truth 'neutral' but cremad sample 1 (" in result.output and not out.exists()


@pytest.mark.slow  # three interpreter starts; the re-run without output above covers the same path fast
def test_import_killed_midway_resumes_to_the_uninterrupted_output(v2, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    def command(out, media):
        code = "from hba_tools.convert import main; main()"
        shard = v2 / "data" / "test-00000-of-00001.parquet"
        return [
            sys.executable,
            "-c",
            code,
            "import",
            "--from",
            str(shard),
            "--media-root",
            str(media),
            "--out",
            str(out),
        ]

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(command(tmp_path / "whole.jsonl", tmp_path / "m1"), check=True, env=env, capture_output=True)
    out, media = tmp_path / "cut.jsonl", tmp_path / "m2"
    proc = subprocess.Popen(command(out, media), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if media.exists() and sum(1 for p in media.rglob("*") if p.is_file()) >= 5:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.wait()
    assert not out.exists() or proc.returncode == 0  # a killed run leaves no partial output
    subprocess.run(command(out, media), check=True, env=env, capture_output=True)
    assert out.read_bytes() == (tmp_path / "whole.jsonl").read_bytes()
    files = sorted(p.relative_to(media) for p in media.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "m1") for p in (tmp_path / "m1").rglob("*") if p.is_file())


def test_a_playlist_in_a_cell_is_refused_like_a_playlist_file(tmp_path):
    import pyarrow as pa

    playlist = b"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\n../../outside.ts\n#EXT-X-ENDLIST\n"
    shard = tmp_path / "test-00000-of-00001.parquet"
    pq.write_table(pa.table({"problem": ["<audio>"], "audios": pa.array([[playlist]], pa.list_(pa.binary()))}), shard)
    [(_, sample)] = list(iter_samples(shard, media=True))
    with pytest.raises(MediaError, match="HLS playlist"):
        decode_audio(sample["audios"][0])
    with pytest.raises(MediaError, match="cannot open media"):
        decode_audio(b"\x00" * 64)  # bytes straight in: the same allow-list

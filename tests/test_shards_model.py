"""hba-predict and hba-sft straight on Atlas v2 Parquet shards (media decoded from the shard's bytes)."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")
pytest.importorskip("pyarrow")

from click.testing import CliRunner  # noqa: E402

from hba_core.fixtures.shards import write_v2_shards  # noqa: E402
from hba_core.samples import iter_samples  # noqa: E402

KEEP = ["mmpsy_depression", "cremad", "mimeqa"]  # text only, audio, video+audio (free text)


@pytest.fixture(scope="module")
def shards(fixtures, tmp_path_factory):
    out = tmp_path_factory.mktemp("v2")
    write_v2_shards(out, fixtures.atlas, fixtures.data, datasets=KEEP, per_dataset=2, train_shards=1)
    return out / "data"


def _predict(model, samples, out, root, *extra):
    from hba_tools.predict import main

    args = ["--model", model, "--samples", samples, "--data-root", root, "--out", out]
    return CliRunner().invoke(main, [str(a) for a in [*args, "--max-new-tokens", "3", "--workers", "0", *extra]])


@pytest.mark.parametrize("mode", ["heads", "generate"])
def test_predict_on_a_shard(shards, checkpoint, tmp_path, mode):
    from hba_core import schemas

    shard = shards / "test-00000-of-00001.parquet"
    out = tmp_path / "preds.jsonl"
    result = _predict(checkpoint, shard, out, tmp_path, "--mode", mode)  # the data root holds no media at all
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["id"] for r in rows) == sorted(s["id"] for _, s in iter_samples(shard))  # none skipped
    assert all(r["mode"] == mode and not schemas.errors(r, "prediction") for r in rows)
    assert b"parquet://" not in out.read_bytes()  # predictions carry ids, never media references or bytes


def test_sft_cls_trains_on_shards(fixtures, shards, tmp_path):
    from hba_tools.sft import main as sft

    args = [
        "cls",
        str(shards),  # the release folder: train and validation shards
        "--data-root",
        str(tmp_path),
        "--model",
        str(fixtures.omni),
        "-o",
        str(tmp_path / "run"),
        "--datasets",
        "mmpsy_depression,cremad",
        "--micro-batch",
        "2",
        "--batch-size",
        "2",
        "--max-steps",
        "2",
        "--lr",
        "1e-3",
        "--workers",
        "0",
        "--no-gradient-checkpointing",
    ]
    result = CliRunner().invoke(sft, args)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert len(losses) == 2 and all(loss == loss and loss > 0 for loss in losses)
    assert "0 samples skipped (undecodable media)" in result.output  # cremad's audio decoded from the shard


def test_predict_reports_an_undecodable_cell_by_shard_and_row(fixtures, tmp_path, caplog):
    from hba_core.fixtures.shards import write_v2_shards

    shards = write_v2_shards(tmp_path / "v2", fixtures.atlas, fixtures.data, datasets=["cremad"], bad=["undecodable"])
    shard = shards["test"][0]
    out = tmp_path / "preds.jsonl"
    result = _predict(fixtures.omni, shard, out, tmp_path, "--mode", "generate")
    assert result.exit_code == 0, result.output
    assert "test-00000-of-00001.parquet:5 audios[0]: cannot open media" in caplog.text  # the 5th row's cell
    assert "4 predictions written (0 already there), 1 skipped" in result.output  # nothing else lost
    assert len(out.read_text().splitlines()) == 4

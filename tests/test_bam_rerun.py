"""hba-bam re-run from a full cache: the Thinker is never loaded and the adapters are the same."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("mediapipe")

DATASETS = ["mmsd"]


@pytest.fixture(scope="module")
def sft_and_store(fixtures, tmp_path_factory):
    from click.testing import CliRunner

    from hba_core.descriptors.extract import run_extract
    from hba_core.descriptors.video import VideoConfig
    from hba_core.jsonl import write_jsonl
    from hba_core.samples import iter_samples
    from hba_tools.sft import main as sft

    root = tmp_path_factory.mktemp("bam-rerun")
    atlas = root / "atlas.jsonl"
    write_jsonl(atlas, [s for _, s in iter_samples(fixtures.atlas) if s["dataset"] in DATASETS])
    args = ["cls", str(atlas), "--root", str(fixtures.data), "--model", str(fixtures.omni), "-o", str(root / "sft")]
    args += ["--micro-batch", "2", "--batch-size", "2", "--warmup-steps", "1", "--workers", "0", "--epochs", "1"]
    args += ["--no-gradient-checkpointing", "--fps", "1", "--datasets", ",".join(DATASETS)]
    result = CliRunner().invoke(sft, args)
    assert result.exit_code == 0, result.output
    run_extract(atlas, fixtures.data, root / "desc.zarr", ("face", "pose", "audio"), video=VideoConfig(fps=2.0))
    return root, atlas, root / "sft" / "best", root / "desc.zarr"


def _job(fixtures, atlas, ckpt, store, out, cache):
    from hba_core.bam.run import BamJob
    from hba_core.bam.train import BamSettings

    return BamJob(
        checkpoint=str(ckpt),
        samples=str(atlas),
        store=str(store),
        datasets=DATASETS,
        data_root=str(fixtures.data),
        out=str(out),
        settings=BamSettings(epochs=2),
        cache_dir=str(cache),
        fps=1.0,
    )


def test_fully_cached_rerun_never_loads_the_backbone(fixtures, sft_and_store, tmp_path):
    import io

    from safetensors.torch import load_file

    from hba_core.bam.run import run_bam

    root, atlas, ckpt, store = sft_and_store
    cache = tmp_path / "cache"
    first = run_bam(_job(fixtures, atlas, ckpt, store, tmp_path / "a", cache), log=io.StringIO())
    assert first["backbone_loaded"] is True and first["backbone_load_seconds"] > 0
    assert first["datasets"]["mmsd"]["backbone_passes"] == 8  # 4 train + 4 val computed and cached

    again = run_bam(_job(fixtures, atlas, ckpt, store, tmp_path / "b", cache), log=io.StringIO())
    assert again["backbone_loaded"] is False and again["backbone_load_seconds"] == 0
    assert again["datasets"]["mmsd"]["backbone_passes"] == 0
    assert json.loads((tmp_path / "b" / "summary.json").read_text())["backbone_loaded"] is False
    a = load_file(str(tmp_path / "a" / "mmsd" / "adapters.safetensors"))
    b = load_file(str(tmp_path / "b" / "mmsd" / "adapters.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # head copied from heads.safetensors
    meta_a = json.loads((tmp_path / "a" / "mmsd" / "bam.json").read_text())
    meta_b = json.loads((tmp_path / "b" / "mmsd" / "bam.json").read_text())
    assert meta_a["history"] == meta_b["history"] and meta_a["labels"] == meta_b["labels"]


def test_one_uncached_sample_loads_the_backbone_for_it_alone(fixtures, sft_and_store, tmp_path):
    import io

    import numpy as np

    from hba_core.bam.run import run_bam

    root, atlas, ckpt, store = sft_and_store
    cache = tmp_path / "cache"
    run_bam(_job(fixtures, atlas, ckpt, store, tmp_path / "a", cache), log=io.StringIO())
    # drop one vector from the cache: the re-run must load the backbone and compute exactly that one
    part = sorted(cache.glob("*/*.npz"))[0]  # one file per split
    with np.load(part) as data:
        keys, h = data["keys"], data["h"]
    part.unlink()
    np.savez(part.with_name("kept.npz"), keys=keys[1:], h=h[1:])
    again = run_bam(_job(fixtures, atlas, ckpt, store, tmp_path / "b", cache), log=io.StringIO())
    assert again["backbone_loaded"] is True
    assert again["datasets"]["mmsd"]["backbone_passes"] == 1


def test_not_a_checkpoint_is_one_line_before_anything_loads(fixtures, sft_and_store, tmp_path):
    from hba_core.bam.run import run_bam
    from hba_core.errors import InputError

    root, atlas, _, store = sft_and_store
    with pytest.raises(InputError, match="not an hba checkpoint"):
        run_bam(_job(fixtures, atlas, tmp_path, store, tmp_path / "out", tmp_path / "cache"))

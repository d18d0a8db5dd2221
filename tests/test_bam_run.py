"""hba-bam end to end on the fixtures: SFT checkpoint + descriptor store -> adapters -> hba-predict --bam -> score."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("mediapipe")

from click.testing import CliRunner  # noqa: E402

DATASETS = "mmsd,urfunny"


@pytest.fixture(scope="module")
def sft_and_store(fixtures, tmp_path_factory):
    from hba_core.descriptors.extract import run_extract
    from hba_core.descriptors.video import VideoConfig
    from hba_core.jsonl import write_jsonl
    from hba_core.samples import iter_samples
    from hba_tools.sft import main as sft

    root = tmp_path_factory.mktemp("bam")
    rows = [s for _, s in iter_samples(fixtures.atlas) if s["dataset"] in (*DATASETS.split(","), "mimeqa")]
    atlas = root / "atlas.jsonl"
    write_jsonl(atlas, rows)
    result = CliRunner().invoke(
        sft,
        [
            "cls",
            str(atlas),
            "--root",
            str(fixtures.data),
            "--model",
            str(fixtures.omni),
            "-o",
            str(root / "sft"),
            "--micro-batch",
            "2",
            "--batch-size",
            "2",
            "--warmup-steps",
            "1",
            "--workers",
            "0",
            "--epochs",
            "1",
            "--no-gradient-checkpointing",
            "--fps",
            "1",
            "--datasets",
            DATASETS,
        ],
    )
    assert result.exit_code == 0, result.output
    run_extract(atlas, fixtures.data, root / "desc.zarr", ("face", "pose", "audio"), video=VideoConfig(fps=2.0))
    return root, atlas, root / "sft" / "best", root / "desc.zarr"


def _bam(ckpt, atlas, data, store, out, *extra, datasets=DATASETS):
    from hba_tools.bam import main as bam

    return CliRunner().invoke(
        bam,
        [
            "--init",
            str(ckpt),
            "--samples",
            str(atlas),
            "--root",
            str(data),
            "--store",
            str(store),
            "--datasets",
            datasets,
            "--out",
            str(out),
            "--fps",
            "1",
            "--epochs",
            "3",
            *extra,
        ],
    )


def test_bam_trains_selects_saves_and_caches(fixtures, sft_and_store):
    from safetensors.torch import load_file

    root, atlas, ckpt, store = sft_and_store
    before = {p.name: p.read_bytes() for p in ckpt.iterdir() if p.is_file()}
    result = _bam(ckpt, atlas, fixtures.data, store, root / "bam")
    assert result.exit_code == 0, result.output
    saved = result.stdout.split()
    assert saved == [str(root / "bam" / "mmsd"), str(root / "bam" / "urfunny")]
    summary = json.loads((root / "bam" / "summary.json").read_text())
    for name in DATASETS.split(","):
        report = summary["datasets"][name]
        assert report["adapters"] == ["audio", "video"] and report["backbone_passes"] == 8  # 4 train + 4 val
        assert report["feat_dims"] == {"audio": 2 * 65, "video": 2 * (468 * 3 + 33 * 4)}
        best = min(report["history"], key=lambda e: e["val_loss"])
        assert report["best_epoch"] == best["epoch"]
    assert {p.name: p.read_bytes() for p in ckpt.iterdir() if p.is_file()} == before  # the SFT model is untouched

    # A re-run reads every pooled vector from the cache: no backbone pass, the same adapters.
    again = _bam(ckpt, atlas, fixtures.data, store, root / "bam2", "--cache", str(root / "bam" / ".cache"))
    assert again.exit_code == 0, again.output
    summary2 = json.loads((root / "bam2" / "summary.json").read_text())
    assert all(r["backbone_passes"] == 0 for r in summary2["datasets"].values())
    # Uncached: the backbone runs again and gives the same trained adapters (within float tolerance).
    uncached = _bam(ckpt, atlas, fixtures.data, store, root / "bam3", "--no-cache")
    assert uncached.exit_code == 0, uncached.output
    for name in DATASETS.split(","):
        a = load_file(str(root / "bam" / name / "adapters.safetensors"))
        for other in ("bam2", "bam3"):
            b = load_file(str(root / other / name / "adapters.safetensors"))
            assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


def test_predict_with_bam_then_score_table6(fixtures, sft_and_store, tmp_path):
    from hba_core.jsonl import iter_jsonl, write_jsonl
    from hba_core.samples import iter_samples
    from hba_tools.predict import main as predict
    from hba_tools.score import main as score

    root, atlas, ckpt, store = sft_and_store
    if not (root / "bam" / "mmsd").exists():
        assert _bam(ckpt, atlas, fixtures.data, store, root / "bam").exit_code == 0
    test = tmp_path / "test.jsonl"
    write_jsonl(test, [s for _, s in iter_samples(atlas) if s["split"] == "test" and s["dataset"] != "mimeqa"])
    common = [
        "--samples",
        str(test),
        "--root",
        str(fixtures.data),
        "--model",
        str(ckpt),
        "--fps",
        "1",
        "--workers",
        "0",
    ]
    runner = CliRunner()
    for name, extra in (("sft", []), ("bam", ["--bam", str(root / "bam"), "--store", str(store)]), ("sft_again", [])):
        result = runner.invoke(predict, [*common, "--out", str(tmp_path / f"{name}.jsonl"), *extra])
        assert result.exit_code == 0, result.output
    rows = {n: {r["id"]: r for _, r in iter_jsonl(tmp_path / f"{n}.jsonl")} for n in ("sft", "bam", "sft_again")}
    assert rows["sft"] == rows["sft_again"]  # without --bam: exactly the SFT model
    assert rows["bam"].keys() == rows["sft"].keys()
    assert any(rows["sft"][i]["probs"] != rows["bam"][i]["probs"] for i in rows["sft"])  # the adapters act
    result = runner.invoke(
        score,
        [
            "--truth",
            str(test),
            "--pred",
            str(tmp_path / "sft.jsonl"),
            "--name",
            "SFT",
            "--pred",
            str(tmp_path / "bam.jsonl"),
            "--name",
            "BAM",
            "--format",
            "delta",
        ],
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].replace(" ", "") == "|Task|Dataset|SFT|BAM|Δ%|Δ|"
    assert any(line.startswith("| SAR") for line in lines) and any(line.startswith("| HUM") for line in lines)


def test_free_text_bam_goes_through_the_decoder(fixtures, sft_and_store, tmp_path):
    from safetensors.torch import load_file

    from hba_core.jsonl import iter_jsonl, write_jsonl
    from hba_core.samples import iter_samples
    from hba_tools.predict import main as predict

    root, atlas, ckpt, store = sft_and_store
    result = _bam(ckpt, atlas, fixtures.data, store, tmp_path / "bam", "--epochs", "2", datasets="mimeqa")
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "bam" / "mimeqa" / "bam.json").read_text())
    assert meta["kind"] == "qa" and meta["adapters"] == ["audio", "video"] and len(meta["history"]) == 2
    saved = load_file(str(tmp_path / "bam" / "mimeqa" / "adapters.safetensors"))
    assert "lm_head.weight" in saved and "head.weight" not in saved
    # the LM head the SFT checkpoint decodes with (its own lm_head.safetensors if it has one, else the
    # backbone's): free-text BAM trains it, so the saved one must differ
    from hba_core.model.checkpoint import load_checkpoint

    model, _ = load_checkpoint(ckpt)
    base = model.thinker.get_output_embeddings().weight.detach()
    assert saved["lm_head.weight"].shape == base.shape
    assert not torch.equal(saved["lm_head.weight"], base)

    test = tmp_path / "test.jsonl"
    write_jsonl(test, [s for _, s in iter_samples(atlas) if s["split"] == "test" and s["dataset"] == "mimeqa"])
    common = [
        "--samples",
        str(test),
        "--root",
        str(fixtures.data),
        "--model",
        str(ckpt),
        "--fps",
        "1",
        "--workers",
        "0",
        "--max-new-tokens",
        "6",
    ]
    runner = CliRunner()
    for name, extra in (
        ("sft", []),
        ("bam", ["--bam", str(tmp_path / "bam"), "--store", str(store)]),
        ("sft_again", []),
    ):
        out = runner.invoke(predict, [*common, "--out", str(tmp_path / f"{name}.jsonl"), *extra])
        assert out.exit_code == 0, out.output
    rows = {n: [r for _, r in iter_jsonl(tmp_path / f"{n}.jsonl")] for n in ("sft", "bam", "sft_again")}
    assert rows["sft"] == rows["sft_again"] and len(rows["bam"]) == 4
    assert all(isinstance(r["prediction"], (str, type(None))) for r in rows["bam"])


def test_a_checkpoint_with_untrained_heads_is_refused(fixtures, sft_and_store, tmp_path):
    """An hba-sft gen checkpoint keeps its heads' random init: BAM must not fit Δh to them."""
    import shutil

    root, atlas, ckpt, store = sft_and_store
    gen_like = tmp_path / "gen"
    shutil.copytree(ckpt, gen_like)
    config = json.loads((gen_like / "config.json").read_text())
    config["heads_trained"] = False
    (gen_like / "config.json").write_text(json.dumps(config))
    result = _bam(gen_like, atlas, fixtures.data, store, tmp_path / "bam", datasets="mmsd")
    assert result.exit_code == 1, result.output
    assert "never trained" in result.output and str(gen_like) in result.output

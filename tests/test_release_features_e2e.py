"""hba-bam and hba-predict on the release's .pt features end to end, on the tiny fixture model:
import-pt -> hba-bam --features reference --arch reference -> hba-predict --bam, and hba-predict --bam
with a released-layout adapter folder. Slow (an SFT run on the tiny model); the pieces are covered
fast by tests/test_release_features.py and tests/test_release_features_bam.py.
"""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def release_run(fixtures, tmp_path_factory):
    from hba_core.descriptors.import_pt import import_pt
    from hba_core.jsonl import write_jsonl
    from hba_core.samples import iter_samples
    from hba_tools.sft import main as sft

    root = tmp_path_factory.mktemp("release-bam")
    feats = root / "feats"
    feats.mkdir()
    g = torch.Generator().manual_seed(0)
    rows = [s for _, s in iter_samples(fixtures.atlas) if s["dataset"] == "mmsd"]
    for i, row in enumerate(rows):
        parts = {"pose": 33, "face": 478, "left_hand": 21, "right_hand": 21}
        torch.save({p: torch.rand(3, k, 3, generator=g) for p, k in parts.items()}, feats / f"v{i}.pt")
        torch.save({"features": torch.randn(1, 6373, generator=g)}, feats / f"a{i}.pt")
        row["ext_video_feats"], row["ext_audio_feats"] = [f"v{i}.pt"], [f"a{i}.pt"]
    atlas = root / "atlas.jsonl"
    write_jsonl(atlas, rows)
    summary = import_pt(atlas, feats, root / "release.zarr")
    assert summary.errors == [] and summary.imported == 2 * len(rows)
    args = ["cls", str(atlas), "--root", str(fixtures.data), "--model", str(fixtures.omni), "-o", str(root / "sft")]
    args += ["--micro-batch", "2", "--batch-size", "2", "--warmup-steps", "1", "--workers", "0", "--epochs", "1"]
    args += ["--no-gradient-checkpointing", "--fps", "1", "--datasets", "mmsd"]
    result = CliRunner().invoke(sft, args)
    assert result.exit_code == 0, result.output
    return root, atlas, rows, root / "sft" / "best", root / "release.zarr"


def _predict(fixtures, ckpt, test, out, *extra):
    from hba_tools.predict import main as predict

    args = ["--samples", str(test), "--root", str(fixtures.data), "--model", str(ckpt), "--fps", "1"]
    return CliRunner().invoke(predict, [*args, "--workers", "0", "--out", str(out), *extra])


def test_hba_bam_trains_the_reference_bam_on_release_features(fixtures, release_run, tmp_path):
    from hba_core.jsonl import iter_jsonl, write_jsonl
    from hba_tools.bam import main as bam

    root, atlas, rows, ckpt, store = release_run
    args = ["--init", str(ckpt), "--samples", str(atlas), "--root", str(fixtures.data), "--store", str(store)]
    args += ["--datasets", "mmsd", "--out", str(tmp_path / "bam"), "--fps", "1", "--epochs", "2"]
    result = CliRunner().invoke(bam, [*args, "--features", "reference", "--arch", "reference"])
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "bam" / "mmsd" / "bam.json").read_text())
    assert meta["feat_dims"] == {"audio": 6373, "video": 3318}
    assert (meta["settings"]["arch"], meta["settings"]["features"], meta["settings"]["alpha_init"]) == (
        "reference",
        "reference",
        4.0,
    )
    summary = json.loads((tmp_path / "bam" / "summary.json").read_text())["datasets"]["mmsd"]
    nothing = {"audio": 0, "video": 0}
    assert summary["not_in_store"] == {"audio": [], "video": []}
    assert summary["no_valid_frames"] == nothing and summary["no_feature_file"] == nothing
    test = tmp_path / "test.jsonl"
    write_jsonl(test, [r for r in rows if r["split"] == "test"])
    for name, extra in (("sft", []), ("bam", ["--bam", str(tmp_path / "bam"), "--store", str(store)])):
        result = _predict(fixtures, ckpt, test, tmp_path / f"{name}.jsonl", *extra)
        assert result.exit_code == 0, result.output
    got = {n: {r["id"]: r for _, r in iter_jsonl(tmp_path / f"{n}.jsonl")} for n in ("sft", "bam")}
    assert got["bam"].keys() == got["sft"].keys() and got["sft"]
    assert any(got["sft"][i]["probs"] != got["bam"][i]["probs"] for i in got["sft"])


def test_hba_predict_takes_a_released_bam_folder(fixtures, release_run, tmp_path):
    from hba_core.fixtures.reference_bam import write_reference_bam
    from hba_core.jsonl import iter_jsonl, write_jsonl
    from hba_core.model.checkpoint import load_checkpoint

    root, atlas, rows, ckpt, store = release_run
    hidden = load_checkpoint(ckpt)[0].text_config.hidden_size
    write_reference_bam(tmp_path / "omnisapiens_bam_sarcasm_detection", hidden)
    test = tmp_path / "test.jsonl"
    write_jsonl(test, [r for r in rows if r["split"] == "test"])
    extra = ["--bam", str(tmp_path / "omnisapiens_bam_sarcasm_detection"), "--store", str(store)]
    result = _predict(fixtures, ckpt, test, tmp_path / "released.jsonl", *extra)
    assert result.exit_code == 0, result.output
    assert _predict(fixtures, ckpt, test, tmp_path / "sft.jsonl").exit_code == 0
    predicted = {r["id"]: r for _, r in iter_jsonl(tmp_path / "released.jsonl")}
    plain = {r["id"]: r for _, r in iter_jsonl(tmp_path / "sft.jsonl")}
    assert predicted.keys() == plain.keys() and len(plain) == len([r for r in rows if r["split"] == "test"])
    assert all(set(r["probs"]) == {"not sarcasm", "sarcasm"} for r in predicted.values())
    assert all(predicted[i]["probs"] != plain[i]["probs"] for i in plain)  # the released head and adapters act

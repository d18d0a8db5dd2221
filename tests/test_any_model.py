"""Any backbone on the Atlas: adapters chosen from config.json, generation on the paper's baseline families,
modality substitutions counted per dataset, and unknown model kinds refused before any weights."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

pytest.importorskip("torch")

from hba_core.jsonl import iter_jsonl
from hba_core.model.backbones import UnsupportedModelError, backbone_for

EXPECTED = {  # adapter, substitutions that must appear on the fixture test split (video+audio datasets)
    "tiny-causal-lm": ("causal_lm", {"video->dropped", "audio->transcript"}),
    "tiny-gemma3": ("image_text_to_text", {"video->frames", "audio->transcript"}),
    "tiny-qwen2_5_vl": ("image_text_to_text", {"audio->transcript"}),
    "tiny-qwen2_audio": ("audio_lm", {"video->audio"}),  # the clip's sound; tests/test_audio_lm.py for more
}


@pytest.fixture(scope="module")
def test_split(fixtures, tmp_path_factory):
    from hba_core.jsonl import write_jsonl

    rows = [row for _, row in iter_jsonl(fixtures.atlas) if row["split"] == "test"]
    path = tmp_path_factory.mktemp("anymodel") / "test.jsonl"
    write_jsonl(path, rows)
    return path, rows


def test_adapter_is_chosen_from_model_type_alone():
    assert backbone_for({"model_type": "qwen2_5_omni_thinker"}).adapter == "omni_thinker"
    assert backbone_for({"model_type": "gemma3"}).adapter == "image_text_to_text"
    assert backbone_for({"model_type": "llama"}).modalities == frozenset({"text"})
    assert backbone_for({"model_type": "qwen2_audio"}).takes("audio")
    with pytest.raises(UnsupportedModelError, match="model_type 'vit' is not a model hba can run"):
        backbone_for({"model_type": "vit"})


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_generate_on_each_baseline_family_reports_substitutions(name, baselines, fixtures, test_split, tmp_path):
    from hba_tools.predict import main as predict

    samples, rows = test_split
    out = tmp_path / "pred.jsonl"
    args = ["--model", str(baselines[name]), "--samples", str(samples), "--data-root", str(fixtures.data)]
    args += ["--out", str(out), "--max-new-tokens", "3", "--workers", "0", "--max-frames", "4", "--batch-size", "8"]
    result = CliRunner().invoke(predict, args)
    assert result.exit_code == 0, result.output
    written = [row for _, row in iter_jsonl(out)]
    assert sorted(r["id"] for r in written) == sorted(r["id"] for r in rows)
    assert {r["mode"] for r in written} == {"generate"} and all(r["model"] == str(baselines[name]) for r in written)
    adapter, kinds = EXPECTED[name]
    assert f"modality substitutions ({adapter} backbone)" in result.output
    for kind in kinds:
        assert kind in result.output
    if name == "tiny-qwen2_5_vl":
        assert "video->" not in result.output  # it takes video natively
    if name == "tiny-qwen2_audio":
        assert "audio->" not in result.output  # it takes audio natively
    # a re-run resumes: nothing new to predict
    again = CliRunner().invoke(predict, args)
    assert again.exit_code == 0 and "0 predictions written" in again.output


def test_substitution_counts_per_dataset(baselines, fixtures, test_split):
    from hba_core.model.collate import MediaSettings
    from hba_core.model.generic import GenericCollator, Substitutions, load_generic

    _, rows = test_split
    path = baselines["tiny-causal-lm"]
    gm = load_generic(str(path), json.loads((path / "config.json").read_text()), name="t", dtype="float32", device=None)
    collate = GenericCollator(gm, MediaSettings(data_root=str(fixtures.data), max_frames=2))
    video_rows = [r for r in rows if r["videos"]]
    total = Substitutions()
    for r in video_rows:
        total.merge(collate([r]).substitutions)
    counts = total.as_dict()
    for dataset in {r["dataset"] for r in video_rows}:
        expected = sum(len(r["videos"]) for r in video_rows if r["dataset"] == dataset)
        assert counts[dataset]["video->dropped"] == expected


def test_heads_mode_needs_a_checkpoint_for_any_backbone(baselines, fixtures, test_split, tmp_path):
    from hba_tools.predict import main as predict

    samples, _ = test_split
    args = ["--model", str(baselines["tiny-causal-lm"]), "--samples", str(samples), "--out", str(tmp_path / "p.jsonl")]
    result = CliRunner().invoke(predict, [*args, "--mode", "heads", "--data-root", str(fixtures.data)])
    assert result.exit_code == 1 and "heads mode needs an hba checkpoint" in result.output


def test_unknown_model_kind_is_refused_before_weights(tmp_path, test_split):
    from hba_tools.predict import main as predict

    model = tmp_path / "odd"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "vit"}))
    samples, _ = test_split
    result = CliRunner().invoke(
        predict, ["--model", str(model), "--samples", str(samples), "--out", str(tmp_path / "p")]
    )
    assert result.exit_code == 1 and "is not a model hba can run" in result.output
    assert "Traceback" not in result.output

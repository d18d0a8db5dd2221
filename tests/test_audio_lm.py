"""Qwen2-Audio (the ``audio_lm`` adapter) on the Atlas: the tiny fixture loads through the auto class the
adapter names, audio reaches the audio tower, and what it cannot take is substituted and counted."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

pytest.importorskip("torch")

from hba_core.jsonl import iter_jsonl, write_jsonl

NAME = "tiny-qwen2_audio"


@pytest.fixture(scope="module")
def audio_lm(baselines):
    from hba_core.model.generic import load_generic

    path = baselines[NAME]
    return load_generic(
        str(path), json.loads((path / "config.json").read_text()), name=NAME, dtype="float32", device=None
    )


@pytest.fixture(scope="module")
def test_rows(fixtures):
    return [row for _, row in iter_jsonl(fixtures.atlas) if row["split"] == "test"]


def _like(row: dict, i: int, tag: str, **media: list[str]) -> dict:
    """A copy of an atlas row with other media: ``tag`` replaces the row's media tags in its prompt."""
    question = row["problem"].split("\n", 2)[-1]  # after "<video>\n<audio>\n"
    meta = {**row["metadata"], "transcript": "I think it went fine."}
    return {
        **row,
        "id": f"odd-{i}",
        "problem": f"{tag}\n{question}",
        "videos": [],
        "audios": [],
        "images": [],
        **media,
        "metadata": meta,
    }


@pytest.fixture(scope="module")
def odd_samples(test_rows, tmp_path_factory):
    """Samples the fixture atlas lacks: a video alone (with and without a sound track) and an image."""
    from hba_core.fixtures.media import write_face_clip

    root = tmp_path_factory.mktemp("audio-lm-data")
    write_face_clip(root / "video" / "voiced.mp4", seconds=1.0, size=64, seed=1)
    write_face_clip(root / "video" / "silent.mp4", seconds=1.0, size=64, seed=2, with_audio=False)
    base = next(r for r in test_rows if r["dataset"] == "mosei_senti")
    assert base["problem"].startswith("<video>\n<audio>\n")

    rows = [
        _like(base, 0, "<video>", videos=["video/voiced.mp4"]),
        _like(base, 1, "<video>", videos=["video/silent.mp4"]),
        _like(base, 2, "<image>", images=["image/never-opened.png"]),  # dropped before anything reads it
    ]
    return root, rows


def test_qwen2_audio_loads_through_the_auto_class_its_adapter_names(audio_lm):
    from transformers import WhisperFeatureExtractor
    from transformers.models.auto.modeling_auto import MODEL_FOR_MULTIMODAL_LM_MAPPING_NAMES

    assert audio_lm.backbone.adapter == "audio_lm" and audio_lm.backbone.auto_class == "AutoModelForMultimodalLM"
    assert MODEL_FOR_MULTIMODAL_LM_MAPPING_NAMES["qwen2_audio"] == "Qwen2AudioForConditionalGeneration"
    assert type(audio_lm.model).__name__ == "Qwen2AudioForConditionalGeneration"
    assert type(audio_lm.processor).__name__ == "Qwen2AudioProcessor"
    assert isinstance(audio_lm.processor.feature_extractor, WhisperFeatureExtractor)
    assert audio_lm.backbone.modalities == frozenset({"text", "audio"})


def test_audio_clips_become_whisper_features_and_audio_tokens(audio_lm, fixtures, test_rows):
    from hba_core.media import media_duration
    from hba_core.model.collate import MediaSettings
    from hba_core.model.generic import GenericCollator

    collate = GenericCollator(audio_lm, MediaSettings(data_root=str(fixtures.data)))
    rows = [r for r in test_rows if r["dataset"] in ("cremad", "mosei_senti")]  # audio alone; video + audio
    batch = collate(rows)
    fe = audio_lm.processor.feature_extractor
    clips = sum(len(r["audios"]) for r in rows)
    assert batch.inputs["input_features"].shape == (clips, fe.feature_size, fe.nb_max_frames)  # (N, mels, frames)
    # one feature frame per 10 ms of each clip (1.5-2.25 s: all inside the tiny model's 3 s window)
    seconds = [media_duration(fixtures.data / rel) for r in rows for rel in r["audios"]]
    frames = batch.inputs["feature_attention_mask"].sum(-1)
    assert frames.tolist() == [round(s * 100) for s in seconds] and batch.audio_cut == 0
    tokens = sum(((n - 1) // 2 + 1 - 2) // 2 + 1 for n in frames.tolist())  # conv stride 2, then pooling by 2
    assert int((batch.inputs["input_ids"] == audio_lm.processor.audio_token_id).sum()) == tokens
    assert batch.substitutions == {"mosei_senti": {"video->audio": sum(r["dataset"] == "mosei_senti" for r in rows)}}


def test_audio_reaches_the_audio_tower_in_hba_predict_generate(audio_lm, fixtures, test_rows, tmp_path):
    """Through predict_file (hba-predict's core), every audio clip of the split passes the audio tower."""
    import torch

    from hba_core.model.collate import MediaSettings
    from hba_core.predict import Predictor, predict_file

    samples = tmp_path / "test.jsonl"
    write_jsonl(samples, test_rows)
    seen: list[int] = []
    hook = audio_lm.model.model.audio_tower.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[0]))
    try:
        predictor = Predictor(NAME, audio_lm.model, audio_lm.processor, generic=audio_lm)
        summary = predict_file(
            predictor,
            samples,
            tmp_path / "pred.jsonl",
            media=MediaSettings(data_root=str(fixtures.data)),
            mode="generate",
            batch_size=8,
            max_new_tokens=2,
            workers=0,
        )
    finally:
        hook.remove()
    assert summary["written"] == len(test_rows) and summary["skipped"] == 0
    assert sum(seen) == sum(len(r["audios"]) for r in test_rows)  # once per clip: prefill only, not per new token
    written = [row for _, row in iter_jsonl(tmp_path / "pred.jsonl")]
    assert sorted(r["id"] for r in written) == sorted(r["id"] for r in test_rows)
    videos = {
        d: sum(len(r["videos"]) for r in test_rows if r["dataset"] == d) for d in {r["dataset"] for r in test_rows}
    }
    assert summary["substitutions"] == {d: {"video->audio": n} for d, n in sorted(videos.items()) if n}
    # the clip's features change the answer's logits: audio is not merely tokenised
    collate_rows = [r for r in test_rows if r["dataset"] == "cremad"][:1]
    from hba_core.model.generic import GenericCollator

    batch = GenericCollator(audio_lm, MediaSettings(data_root=str(fixtures.data)))(collate_rows)
    with torch.no_grad():
        real = audio_lm.model(**batch.inputs).logits[:, -1]
        silent = audio_lm.model(**{**batch.inputs, "input_features": torch.zeros_like(batch.inputs["input_features"])})
    assert not torch.allclose(real, silent.logits[:, -1])


def test_video_alone_becomes_its_sound_or_transcript_and_images_are_dropped(baselines, odd_samples, tmp_path):
    from hba_tools.predict import main as predict

    root, rows = odd_samples
    samples = tmp_path / "odd.jsonl"
    write_jsonl(samples, rows)
    out = tmp_path / "pred.jsonl"
    args = ["--model", str(baselines[NAME]), "--samples", str(samples), "--data-root", str(root)]
    result = CliRunner().invoke(predict, [*args, "--out", str(out), "--max-new-tokens", "2", "--workers", "0"])
    assert result.exit_code == 0, result.output
    assert sorted(r["id"] for _, r in iter_jsonl(out)) == ["odd-0", "odd-1", "odd-2"]
    assert "modality substitutions (audio_lm backbone)" in result.output
    assert "mosei_senti: 1 image->dropped, 1 video->audio, 1 video->transcript" in result.output


def test_each_substitute_is_what_the_model_is_given(audio_lm, odd_samples):
    from hba_core.model.collate import MediaSettings
    from hba_core.model.generic import GenericCollator, Substitutions

    root, rows = odd_samples
    collate = GenericCollator(audio_lm, MediaSettings(data_root=str(root)))
    voiced, silent, image = (collate.prepare(r, Substitutions()) for r in rows)
    assert len(voiced.audios) == 1  # the mp4's own 1 s track at 16 kHz (AAC rounds up to whole 1024-sample frames)
    assert 16_000 <= voiced.audios[0].size <= 16_000 + 1024
    assert "<|AUDIO|>" in voiced.text and "Transcript:" not in voiced.text
    assert not silent.audios and "Transcript: I think it went fine." in silent.text
    assert not image.audios and not image.images and "<|AUDIO|>" not in image.text


def test_audio_longer_than_the_feature_window_is_cut_and_counted(audio_lm, test_rows, tmp_path):
    from hba_core.fixtures.media import write_voice_wav
    from hba_core.model.collate import MediaSettings
    from hba_core.model.generic import GenericCollator

    write_voice_wav(tmp_path / "audio" / "long.wav", seconds=4.0)
    row = {**next(r for r in test_rows if r["dataset"] == "cremad"), "audios": ["audio/long.wav"]}
    batch = GenericCollator(audio_lm, MediaSettings(data_root=str(tmp_path)))([row])
    window = audio_lm.processor.feature_extractor.nb_max_frames  # the tiny model's 3 s window (7B: 30 s)
    assert batch.audio_cut == 1 and batch.inputs["feature_attention_mask"].sum().item() == window

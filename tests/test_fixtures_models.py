"""The tiny Qwen2.5-Omni fixture loads through the same from_pretrained path as Qwen/Qwen2.5-Omni-7B."""

import json

import pytest

torch = pytest.importorskip("torch")


def test_hub_layout(fixtures):
    config = json.loads((fixtures.omni / "config.json").read_text())
    assert config["model_type"] == "qwen2_5_omni"  # composite, like the hub checkpoint
    from safetensors import safe_open

    with safe_open(fixtures.omni / "model.safetensors", "pt") as fh:
        keys = list(fh.keys())
    assert keys and all(k.startswith("thinker.") for k in keys)


def test_processor_and_thinker_forward_on_video_and_audio(fixtures):
    from transformers import Qwen2_5OmniProcessor, Qwen2_5OmniThinkerForConditionalGeneration

    from hba_core.media import decode_audio, sample_video_frames
    from hba_core.samples import iter_samples

    model = Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(fixtures.omni).eval()
    processor = Qwen2_5OmniProcessor.from_pretrained(fixtures.omni)
    sample = next(s for _, s in iter_samples(fixtures.atlas) if s["videos"] and s["audios"])
    assert sample["problem"].startswith("<video>\n<audio>\n")
    text = sample["problem"].split("\n", 2)[2]
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "audio"}, {"type": "text", "text": text}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    frames = sample_video_frames(fixtures.data / sample["videos"][0], fps=4, max_side=112).frames
    audio = decode_audio(fixtures.data / sample["audios"][0])
    inputs = processor(text=[prompt], videos=[frames], audio=[audio], return_tensors="pt", padding=True)
    assert inputs["pixel_values_videos"].shape[-1] == 1176 and inputs["input_features"].shape[1] == 128
    with torch.no_grad():
        out = model(**inputs, output_hidden_states=True)
    n = inputs["input_ids"].shape[1]
    assert out.hidden_states[-2].shape == (1, n, model.config.text_config.hidden_size)
    assert torch.isfinite(out.logits).all()


def test_rebuild_is_deterministic(tmp_path, fixtures):
    from transformers import Qwen2_5OmniThinkerForConditionalGeneration

    from hba_core.fixtures.tiny_omni import build_tiny_omni

    again = build_tiny_omni(tmp_path / "again")
    a = Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(fixtures.omni).eval()
    b = Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(again).eval()
    ids = torch.tensor([[1, 5, 9, 20, 3]])
    with torch.no_grad():
        assert torch.equal(a(input_ids=ids).logits, b(input_ids=ids).logits)


def test_tiny_whisper_loads_with_load_model(fixtures):
    whisper = pytest.importorskip("whisper")
    from hba_core.media import decode_audio

    model = whisper.load_model(str(fixtures.whisper), device="cpu")
    result = model.transcribe(
        decode_audio(fixtures.data / "audio/clip0.wav"),
        fp16=False,
        language="en",
        condition_on_previous_text=False,
        temperature=0.0,
    )
    assert isinstance(result["text"], str) and result["language"] == "en"

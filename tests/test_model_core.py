"""OmniSapiens core on the tiny random Qwen2.5-Omni: pooling, heads, collation, rope ids, learning, save/load."""

from __future__ import annotations

import shutil

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from hba_core import registry  # noqa: E402
from hba_core.fixtures.atlas import fixture_sample  # noqa: E402
from hba_core.model.heads import TaskHeads, classification_loss, default_label_space, masked_mean  # noqa: E402


@pytest.fixture(scope="module")
def tiny(fixtures):
    from hba_core.model.backbone import add_lora, load_processor, load_thinker
    from hba_core.model.omnisapiens import OmniSapiens

    processor = load_processor(str(fixtures.omni))
    torch.manual_seed(0)
    model = OmniSapiens(add_lora(load_thinker(str(fixtures.omni))), default_label_space())
    return model, processor


def _samples(fixtures, signature):
    from hba_core.samples import iter_samples

    return [s for _, s in iter_samples(fixtures.atlas) if s["modality_signature"] == signature]


def _collator(processor, fixtures, **kwargs):
    from hba_core.model.collate import Collator, MediaSettings

    return Collator(processor, MediaSettings(data_root=str(fixtures.data), **kwargs), targets=True)


# ------------------------------------------------------------------ pure pieces


def test_masked_mean_ignores_padding():
    hidden = torch.arange(2 * 3 * 2, dtype=torch.float32).reshape(2, 3, 2)  # (B, T, H)
    mask = torch.tensor([[0, 1, 1], [0, 0, 1]])
    pooled = masked_mean(hidden, mask)
    assert pooled.shape == (2, 2)
    assert torch.equal(pooled[0], hidden[0, 1:].mean(0))
    assert torch.equal(pooled[1], hidden[1, 2])
    changed = hidden.clone()
    changed[:, 0] = 1e6  # padded positions do not matter
    assert torch.equal(masked_mean(changed, mask), pooled)


def test_heads_route_each_row_to_its_task():
    space = default_label_space()
    assert space["EMO"] == list(registry.task("EMO").domain.labels)
    assert "SOC" not in space  # free-text tasks have no head
    heads = TaskHeads(4, space)
    pooled = torch.randn(4, 4)
    routed = heads(pooled, ["EMO", "SOC", "SAR", "EMO"])
    assert set(routed) == {"EMO", "SAR"}
    rows, logits = routed["EMO"]
    assert rows.tolist() == [0, 3] and logits.shape == (2, 8)
    assert torch.allclose(logits[1], heads.heads["EMO"](pooled[3]))
    assert routed["SAR"][1].shape == (1, 2)
    loss, count = classification_loss(routed, torch.tensor([3, -1, 1, 0]))
    assert count == 3 and loss.item() > 0


def test_messages_follow_tag_order():
    from hba_core.model.collate import sample_messages

    content = sample_messages("<audio>\n<video>\nHi.", interleave=False)[0]["content"]
    assert [c["type"] for c in content] == ["audio", "video", "text"]
    content = sample_messages("<video>\n<audio>\nHi.", interleave=True)[0]["content"]
    assert [c["type"] for c in content] == ["video", "text"]
    assert sample_messages("just text", interleave=False)[0]["content"] == [{"type": "text", "text": "just text"}]


# ------------------------------------------------------------------ collation


@pytest.mark.parametrize("signature", ["text", "text_audio", "text_video_audio"])
def test_collator_builds_thinker_inputs(tiny, fixtures, signature):
    model, processor = tiny
    samples = _samples(fixtures, signature)[:2]
    batch = _collator(processor, fixtures)(samples)
    assert batch.ids == [s["id"] for s in samples] and not batch.skipped
    ids = batch.inputs["input_ids"]
    assert (ids == processor.audio_token_id).any() == ("audio" in signature)
    assert (ids == processor.video_token_id).any() == ("video" in signature)
    assert batch.inputs["use_audio_in_video"] == (signature == "text_video_audio")
    with torch.no_grad():
        losses = model(batch)
    assert torch.isfinite(losses.total)


def test_free_text_targets_are_the_only_lm_labels(tiny, fixtures):
    model, processor = tiny
    sample = next(s for s in _samples(fixtures, "text_video_audio") if s["dataset"] == "siq2")
    batch = _collator(processor, fixtures)([sample])
    target = processor.tokenizer(sample["answer"] + processor.tokenizer.eos_token, add_special_tokens=False)
    labelled = batch.lm_labels[batch.lm_labels != -100].tolist()
    assert labelled == target["input_ids"]
    assert batch.label_index.tolist() == [-1]


def test_undecodable_media_is_skipped_and_reported(tiny, fixtures, tmp_path):
    _, processor = tiny
    good = _samples(fixtures, "text_audio")[:2]
    (tmp_path / "audio").mkdir()
    (tmp_path / "audio" / "broken.wav").write_bytes(b"RIFF not really a wav")
    shutil.copy(fixtures.data / good[0]["audios"][0], tmp_path / "audio" / "ok.wav")
    rows = [dict(good[0], audios=["audio/ok.wav"]), dict(good[1], id="bad-one", audios=["audio/broken.wav"])]
    from hba_core.model.collate import Collator, MediaSettings

    batch = Collator(processor, MediaSettings(data_root=str(tmp_path)), targets=True)(rows)
    assert batch.ids == [good[0]["id"]]
    assert [sid for sid, _ in batch.skipped] == ["bad-one"]


def test_long_audio_is_cut_and_counted(tiny, fixtures):
    _, processor = tiny
    samples = _samples(fixtures, "text_audio")[:2]
    batch = _collator(processor, fixtures, max_audio_seconds=0.5)(samples)
    assert batch.audio_cut == 2
    assert int(batch.inputs["feature_attention_mask"].sum(-1).max()) == 50  # 0.5 s of 10 ms frames


def test_rope_index_of_interleaved_video_and_audio(tiny, fixtures):
    """The model's own get_rope_index on a video+audio sample: time-aligned 3D positions, audio inside video."""
    model, processor = tiny
    sample = _samples(fixtures, "text_video_audio")[0]
    batch = _collator(processor, fixtures)([sample])
    inputs = batch.inputs
    thinker = model.thinker.get_base_model()
    position_ids, delta = thinker.get_rope_index(
        inputs["input_ids"],
        None,
        inputs["video_grid_thw"],
        inputs["attention_mask"],
        True,
        inputs["feature_attention_mask"].sum(-1),
        inputs["video_second_per_grid"],
    )
    ids = inputs["input_ids"][0]
    assert position_ids.shape == (3, 1, ids.numel())
    video = ids == processor.video_token_id
    audio = ids == processor.audio_token_id
    # Interleaved: some audio tokens come before the last video token (chunks of 2 s alternate).
    assert audio.nonzero().min() < video.nonzero().max()
    # Video tokens carry spatial positions (height/width axes differ), audio tokens share one position on all axes.
    assert not torch.equal(position_ids[1, 0, video], position_ids[2, 0, video])
    assert torch.equal(position_ids[0, 0, audio], position_ids[1, 0, audio])
    # The text after the media continues from the largest media position, so delta is negative (compression).
    assert int(delta) < 0
    with torch.no_grad():
        out = thinker(**inputs, position_ids=position_ids, output_hidden_states=True)
        plain = thinker(**inputs, output_hidden_states=True)
    assert torch.allclose(out.logits, plain.logits)  # the forward pass computes the same positions itself


# ------------------------------------------------------------------ learning and checkpoints


def test_few_steps_learn_the_cue(fixtures):
    """A text-only fixture task whose transcript says 'cue: <label>': training accuracy clearly beats chance."""
    from hba_core.model.backbone import add_lora, load_processor, load_thinker
    from hba_core.model.collate import Collator, MediaSettings
    from hba_core.model.omnisapiens import OmniSapiens
    from hba_core.model.train import set_trainable

    processor = load_processor(str(fixtures.omni))
    torch.manual_seed(0)
    thinker = load_thinker(str(fixtures.omni))
    with torch.no_grad():
        # Random init gives embeddings of std 0.02: one cue token among ~80 then moves the pooled vector by ~1e-3,
        # which a linear head cannot use in a few steps. Trained LLMs' hidden states are O(1): give them that scale.
        thinker.get_input_embeddings().weight.mul_(50)
    model = OmniSapiens(add_lora(thinker), {"SAR": list(registry.dataset("mmsd").labels)})
    trainable = set_trainable(model, "cls")
    rows = [fixture_sample("mmsd", i, "train", video=None, audio=None) for i in range(32)]
    collate = Collator(processor, MediaSettings(), targets=True)
    batches = [collate(rows[i : i + 8]) for i in range(0, 32, 8)]
    optimizer = torch.optim.AdamW(trainable, lr=1e-2)
    model.train()
    history = []
    for _ in range(5):
        correct, loss_sum = 0, 0.0
        for batch in batches:
            losses = model(batch)
            losses.total.backward()
            optimizer.step()
            optimizer.zero_grad()
            correct += losses.correct
            loss_sum += losses.cls_sum
        history.append((loss_sum / 32, correct / 32))
    assert history[-1][0] < history[0][0] * 0.5, history
    assert history[-1][1] >= 0.85, history  # chance is 0.5
    held_out = collate([fixture_sample("mmsd", i, "val", video=None, audio=None) for i in range(32, 48)])
    model.eval()
    with torch.no_grad():
        assert model(held_out).correct >= 12  # 75% of unseen samples


def test_save_load_gives_identical_logits(tiny, fixtures, tmp_path):
    from hba_core.model.checkpoint import load_checkpoint, merge_lora, run_config, save_checkpoint

    model, processor = tiny
    with torch.no_grad():  # make LoRA and the LM head non-trivial so the test can fail
        for name, p in model.named_parameters():
            if "lora_B" in name or name.startswith("heads."):
                p.add_(torch.randn_like(p) * 0.05)
        model.lm_head().weight.add_(0.01)
    config = run_config(
        tool="hba-sft",
        stage="joint",
        base_model=str(fixtures.omni),
        init=None,
        label_space=model.label_space,
        datasets=["mmsd"],
        options={"lora_r": 32},
        seed=0,
    )
    save_checkpoint(model, tmp_path / "ckpt", config, processor=processor, lm_head_trained=True)
    assert {
        "adapter_config.json",
        "adapter_model.safetensors",
        "heads.safetensors",
        "lm_head.safetensors",
        "config.json",
        "README.md",
    } <= {p.name for p in (tmp_path / "ckpt").iterdir()}
    loaded, _ = load_checkpoint(tmp_path / "ckpt")
    batch = _collator(processor, fixtures)(_samples(fixtures, "text_audio")[:2])
    model.eval()
    with torch.no_grad():
        from hba_core.model.omnisapiens import pooled_penultimate

        a_pooled, a_out = pooled_penultimate(model.thinker, batch)
        b_pooled, b_out = pooled_penultimate(loaded.thinker, batch)
        a_heads = model.head_logits(a_pooled, batch.tasks)
        b_heads = loaded.head_logits(b_pooled, batch.tasks)
    assert torch.equal(a_out.logits, b_out.logits)
    for task in a_heads:
        assert torch.equal(a_heads[task][1], b_heads[task][1])
    merged = merge_lora(loaded)
    with torch.no_grad():
        m_out = merged(**batch.inputs)
    assert torch.allclose(m_out.logits, a_out.logits, atol=1e-4)

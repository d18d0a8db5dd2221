"""hba's side of three defects of the reference trainers (docs/reference.md, "Defects hba does not share").

Each test checks the behaviour the reference gets wrong, on the tiny random Qwen2.5-Omni:

- the reference's classifier/QA/BAM trainers call the model with ``input_ids`` and ``attention_mask``
  only, so the backbone never sees a frame or a mel bin; hba's forward hands the Thinker the processor's
  video and audio tensors;
- the reference's QA teacher forcing copies the first ``prompt_len`` positions of a left-padded row, so
  the context is padding; in hba each free-text row is its whole prompt followed by its target;
- the reference's cosine horizon counts micro-batches while the scheduler moves once per optimizer
  update, so the LR barely leaves its peak; hba's schedule reaches 0 at the last optimizer step.
"""

from __future__ import annotations

import json
import math

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")


@pytest.fixture(scope="module")
def tiny(fixtures):
    from hba_core.model.backbone import add_lora, load_processor, load_thinker
    from hba_core.model.heads import default_label_space
    from hba_core.model.omnisapiens import OmniSapiens

    torch.manual_seed(0)
    model = OmniSapiens(add_lora(load_thinker(str(fixtures.omni))), default_label_space())
    return model, load_processor(str(fixtures.omni))


def _samples(fixtures, dataset):
    from hba_core.samples import iter_samples

    return [s for _, s in iter_samples(fixtures.atlas) if s["dataset"] == dataset]


def _collate(processor, fixtures, rows):
    from hba_core.model.collate import Collator, MediaSettings

    return Collator(processor, MediaSettings(data_root=str(fixtures.data)), targets=True)(rows)


def test_the_sft_forward_hands_video_and_audio_to_the_thinker(tiny, fixtures):
    model, processor = tiny
    batch = _collate(processor, fixtures, _samples(fixtures, "meld_emotion")[:2])
    assert not batch.skipped
    seen: dict[str, object] = {}

    def record(_module, _args, kwargs):
        seen.update(kwargs)

    handle = model.thinker.register_forward_pre_hook(record, with_kwargs=True)
    try:
        with torch.no_grad():
            model(batch)
    finally:
        handle.remove()
    # The tensors the reference drops (its trainers pass input_ids / attention_mask / domain_ids only).
    for key in ("pixel_values_videos", "video_grid_thw", "input_features", "feature_attention_mask"):
        assert key in seen, f"{key} never reached the Thinker"
        assert torch.equal(seen[key], batch.inputs[key])
    assert seen["pixel_values_videos"].numel() > 0 and seen["input_features"].numel() > 0


def test_a_left_padded_free_text_row_keeps_its_whole_prompt_before_the_target(tiny, fixtures):
    _, processor = tiny
    # Two video + audio prompts of different lengths, so the shorter row is left-padded in the batch.
    rows = [dict(s) for s in _samples(fixtures, "intentqa")[:2]]
    rows[1]["problem"] = rows[1]["problem"] + " Think about the whole scene, the faces and the voices first."
    batch = _collate(processor, fixtures, rows)
    ids, mask, labels = batch.inputs["input_ids"], batch.inputs["attention_mask"], batch.lm_labels
    padded_rows = 0
    for i, row in enumerate(rows):
        alone = _collate(processor, fixtures, [row])  # a batch of one has no padding at all
        n = int(mask[i].sum())
        padded_rows += n < ids.shape[1]
        assert mask[i, ids.shape[1] - n :].all() and not mask[i, : ids.shape[1] - n].any()  # padding only on the left
        # The unpadded part is exactly the sample's own prompt + target: no pad token inside the context.
        assert torch.equal(ids[i, -n:], alone.inputs["input_ids"][0])
        assert torch.equal(labels[i, -n:], alone.lm_labels[0])
        target = processor.tokenizer(row["answer"] + processor.tokenizer.eos_token, add_special_tokens=False)
        k = len(target["input_ids"])
        assert labels[i, -k:].tolist() == target["input_ids"]  # the target ends the row ...
        assert (labels[i, :-k] == -100).all()  # ... and nothing before it (prompt, padding) is a label
        assert (ids[i, -n:-k] != processor.tokenizer.pad_token_id).all()  # the context is the prompt
    assert padded_rows == 1


def test_the_lr_schedule_reaches_zero_at_the_last_optimizer_step(fixtures, tmp_path):
    from hba_core.model.train import SftOptions, run_sft

    # 8 text-only training samples, micro-batch 2, effective batch 4: accumulation 2, 2 updates per epoch.
    opts = SftOptions(
        stage="cls",
        samples=str(fixtures.atlas),
        out=str(tmp_path / "run"),
        data_root=str(fixtures.data),
        model=str(fixtures.omni),
        datasets=["mmpsy_depression", "mmpsy_anxiety"],
        lr=1e-3,
        warmup_steps=1,
        epochs=3,
        batch_size=4,
        micro_batch=2,
        workers=0,
        gradient_checkpointing=False,
    )
    summary = run_sft(opts)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    lrs = [r["lr"] for r in records if "loss" in r]
    assert summary["complete"] and summary["steps"] == len(lrs) == 6
    # Logged after update k (1-based): lr * (1 + cos(pi * (k - warmup) / (total - warmup))) / 2, total = updates made.
    expected = [1e-3 * 0.5 * (1 + math.cos(math.pi * (k - 1) / 5)) for k in range(1, 7)]
    assert lrs == pytest.approx(expected, rel=1e-9, abs=1e-15)
    assert lrs[-1] == pytest.approx(0.0, abs=1e-15) and all(a > b for a, b in zip(lrs, lrs[1:]))

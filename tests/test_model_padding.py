"""Batches pad on the left: batched generation and teacher-forcing targets are right for rows of any length."""

import pytest

torch = pytest.importorskip("torch")


def test_batched_generation_equals_one_by_one_and_targets_align(fixtures):
    from hba_core.model.backbone import load_processor, load_thinker
    from hba_core.model.collate import Collator, MediaSettings
    from hba_core.model.omnisapiens import generate
    from hba_core.samples import iter_samples

    thinker = load_thinker(str(fixtures.omni))
    processor = load_processor(str(fixtures.omni))
    assert processor.tokenizer.padding_side == "left"
    texts = [s for _, s in iter_samples(fixtures.atlas) if s["dataset"] == "mmpsy_depression"][:2]
    texts[1] = {**texts[1], "problem": texts[1]["problem"] + " Please think about it very carefully first."}
    collate = Collator(processor, MediaSettings(data_root=str(fixtures.data)), targets=False)
    together = generate(thinker, collate(texts), processor.tokenizer, max_new_tokens=6)
    alone = [generate(thinker, collate([s]), processor.tokenizer, max_new_tokens=6)[0] for s in texts]
    assert together == alone
    qa = [
        {
            "id": f"q{i}",
            "dataset": "intentqa",
            "split": "train",
            "modality_signature": "text",
            "videos": [],
            "audios": [],
            "problem": question,
            "answer": answer,
        }
        for i, (question, answer) in enumerate(
            [
                ("Why did he wave?", "To greet a friend."),
                ("Why did the woman smile at the man so warmly?", "She was pleased."),
            ]
        )
    ]
    batch = Collator(processor, MediaSettings(data_root=str(fixtures.data)), targets=True)(qa)
    assert (batch.inputs["attention_mask"][:, -1] == 1).all()  # every row ends with its target
    assert batch.lm_labels is not None and (batch.lm_labels[:, -1] != -100).all()

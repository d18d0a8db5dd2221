"""hba-sft gen: LoRA trained on the teacher-forced answer tokens of every dataset.

The loss mask is checked on the real tiny Qwen2.5-Omni processor: the labelled positions are exactly the
answer and its end-of-turn token (never the prompt, the padding or anything after the end), and the
shifted loss predicts the first answer token from the last prompt token (the reference's mask is off by
one: docs/reference.md, "The generative SFT loss mask is off by one").
"""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from click.testing import CliRunner  # noqa: E402

IGNORE = -100
TEXT_CLS = ["mmpsy_depression", "mmpsy_anxiety"]  # text-only classification datasets: fast on CPU


@pytest.fixture(scope="module")
def processor(fixtures):
    from hba_core.model.backbone import load_processor

    return load_processor(str(fixtures.omni))


def _rows():
    """Text-only samples with different prompt and answer lengths: two label texts and two free-text answers."""
    return [
        {
            "id": "a",
            "dataset": "mmpsy_depression",
            "problem": "Q? Answer with one of the following: no depression, depression",
            "answer": "no depression",
            "class_label": "no depression",
            "modality_signature": "text",
        },
        {
            "id": "b",
            "dataset": "mmpsy_anxiety",
            "problem": "A much longer transcript, so that this row's prompt is many tokens longer than the "
            "first one's. What is the anxiety label? Answer with one of the following: no anxiety, anxiety",
            "answer": "anxiety",
            "class_label": "anxiety",
            "modality_signature": "text",
        },
        {
            "id": "c",
            "dataset": "siq2",
            "problem": "Why?",
            "answer": "Because she is pleased to see her old friend again after many years.",
            "modality_signature": "text",
        },
        {"id": "d", "dataset": "siq2", "problem": "Who laughs?", "answer": "The man.", "modality_signature": "text"},
    ]


def _collate(processor, fixtures, rows, **kwargs):
    from hba_core.model.collate import Collator, MediaSettings

    return Collator(processor, MediaSettings(data_root=str(fixtures.data)), targets=True, **kwargs)(rows)


def _prompt_text(processor, row):
    from hba_core.model.collate import sample_messages

    messages = sample_messages(row["problem"], interleave=False)
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def _check_row(tok, ids, mask, labels, answer, prompt):
    """One row's labels: the answer + <|im_end|>, ending at the row's last real token; the prompt before them."""
    real = mask.nonzero().flatten()
    first, last = int(real[0]), int(real[-1])
    labelled = (labels != IGNORE).nonzero().flatten()
    start = int(labelled[0])
    assert labelled.tolist() == list(range(start, last + 1)), "one run of labels, ending at the last real token"
    assert torch.equal(labels[labelled], ids[labelled]), "labels are the tokens themselves (the loss shifts)"
    assert tok.decode(ids[labelled]) == answer + "<|im_end|>"
    assert int(ids[last]) == tok.convert_tokens_to_ids("<|im_end|>") == tok.eos_token_id
    # everything before the labels is the prompt, exactly, ending with the generation prompt
    assert tok.decode(ids[first:start]) == prompt and prompt.endswith("<|im_start|>assistant\n")
    assert (labels[mask == 0] == IGNORE).all(), "no padding is labelled"
    assert (labels[last + 1 :] == IGNORE).all(), "nothing after the end token"


def test_gen_labels_are_exactly_the_answer_and_its_end_token(processor, fixtures):
    """The collator's batch (the Omni processor pads on the left) of four prompt and answer lengths."""
    rows = _rows()
    batch = _collate(processor, fixtures, rows, every_answer=True)
    ids, mask, labels = batch.inputs["input_ids"], batch.inputs["attention_mask"], batch.lm_labels
    assert (mask[:, 0] == 0).any() and (mask[:, -1] == 1).all(), "rows of different lengths, padded on the left"
    for r, row in enumerate(rows):
        _check_row(processor.tokenizer, ids[r], mask[r], labels[r], row["answer"], _prompt_text(processor, row))


def test_target_labels_with_right_padding(processor):
    """target_labels finds each row's end from the attention mask, so right padding (a causal LM tokenizer's
    default) labels the same tokens."""
    from hba_core.model.collate import answer_target, target_labels

    tok = processor.tokenizer
    rows = _rows()
    prompts = [_prompt_text(processor, row) for row in rows]
    targets = [answer_target(row, tok.eos_token) for row in rows]
    encoded = tok([p + t for p, t in zip(prompts, targets)], padding=True, padding_side="right", return_tensors="pt")
    ids, mask = encoded["input_ids"], encoded["attention_mask"]
    assert (mask[:, -1] == 0).any(), "padded on the right"
    labels = target_labels(ids, mask, targets, tok)
    for r, row in enumerate(rows):
        _check_row(tok, ids[r], mask[r], labels[r], row["answer"], prompts[r])
    none = target_labels(ids, mask, [None, *targets[1:]], tok)
    assert (none[0] == IGNORE).all() and torch.equal(none[1:], labels[1:])


def test_qa_and_joint_label_only_free_text_answers(processor, fixtures):
    """Without every_answer (qa, joint) classification rows get no LM labels: their heads learn them."""
    rows = _rows()
    batch = _collate(processor, fixtures, rows)
    for r, row in enumerate(rows):
        labelled = batch.lm_labels[r][batch.lm_labels[r] != IGNORE]
        if row["dataset"] == "siq2":
            assert processor.tokenizer.decode(labelled) == row["answer"] + "<|im_end|>"
        else:
            assert labelled.numel() == 0


def test_gen_labels_on_media_samples(processor, fixtures):
    """The same on the fixture's audio samples (placeholders expanded by the processor) and video + audio."""
    from hba_core.samples import iter_samples

    atlas = [s for _, s in iter_samples(fixtures.atlas) if s["split"] == "train"]
    for group in ([s for s in atlas if s["dataset"] == "cremad"][:2], [s for s in atlas if s["dataset"] == "siq2"][:2]):
        batch = _collate(processor, fixtures, group, every_answer=True)
        for r, row in enumerate(group):
            labelled = batch.lm_labels[r] != IGNORE
            assert processor.tokenizer.decode(batch.inputs["input_ids"][r, labelled]) == row["answer"] + "<|im_end|>"
            assert int(labelled.nonzero()[-1]) == int(batch.inputs["attention_mask"][r].nonzero()[-1])


def test_shifted_loss_predicts_the_first_answer_token_from_the_last_prompt_token():
    """Hand-computed CE on a tiny example: position t's logits score token t+1, over the target tokens only."""
    from hba_core.model.omnisapiens import lm_loss_sum

    torch.manual_seed(0)
    logits = torch.randn(1, 6, 5)  # (B, T, V): 3 prompt tokens, 2 answer tokens, 1 end token
    tokens = torch.tensor([[4, 0, 3, 1, 2, 4]])
    labels = torch.tensor([[IGNORE, IGNORE, IGNORE, 1, 2, 4]])
    total, count = lm_loss_sum(logits, labels)
    logp = torch.log_softmax(logits[0], -1)
    by_hand = -(logp[2, 1] + logp[3, 2] + logp[4, 4])  # last prompt token -> first answer token, ... -> end
    assert count == 3 and total.item() == pytest.approx(by_hand.item(), rel=1e-6)
    off_by_one = -(logp[1, 3] + logp[2, 1] + logp[3, 2])  # the reference's positions: prompt in, end token out
    assert total.item() != pytest.approx(off_by_one.item(), rel=1e-3)
    assert tokens[0, 3:].tolist() == labels[0, 3:].tolist()


def test_lm_loss_on_a_real_batch_counts_answer_tokens_plus_end(processor, fixtures):
    """On the tiny Thinker: count = answer tokens + 1 (the end token), and the sum is the CE of each target
    token given everything before it, the first one given the prompt's last token."""
    from hba_core.model.backbone import load_thinker
    from hba_core.model.omnisapiens import lm_loss_sum

    tok = processor.tokenizer
    rows = _rows()
    batch = _collate(processor, fixtures, rows, every_answer=True)
    thinker = load_thinker(str(fixtures.omni)).eval()
    with torch.no_grad():
        logits = thinker(**batch.inputs, use_cache=False).logits  # (B, T, V)
    total, count = lm_loss_sum(logits, batch.lm_labels)
    assert count == sum(len(tok(row["answer"], add_special_tokens=False)["input_ids"]) + 1 for row in rows)
    by_hand = 0.0  # from the answers alone: their tokens + <|im_end|> end each row; each is scored from t - 1
    for r, row in enumerate(rows):
        target = tok(row["answer"] + "<|im_end|>", add_special_tokens=False)["input_ids"]
        end = int(batch.inputs["attention_mask"][r].nonzero()[-1]) + 1
        for t, token in zip(range(end - len(target), end), target):
            by_hand -= float(torch.log_softmax(logits[r, t - 1].float(), -1)[token])
    assert total.item() == pytest.approx(by_hand, rel=1e-5)


def test_reference_mask_is_off_by_one_and_ours_is_not(processor, fixtures):
    """The reference (sft_parquet_dataset.py:494-497, sft_trainer.py:175) trains tokens prompt_len-1 ..
    total-2: the last prompt token in, the end token out. Ours: the answer tokens and the end token."""
    tok = processor.tokenizer
    rows = _rows()
    batch = _collate(processor, fixtures, rows, every_answer=True)
    for r, row in enumerate(rows):
        real = batch.inputs["attention_mask"][r].bool()
        ids = batch.inputs["input_ids"][r][real]  # the row unpadded (the reference pads on the right)
        ours = ids[batch.lm_labels[r][real] != IGNORE].tolist()
        total = len(ids)
        prompt_len = len(tok(_prompt_text(processor, row), add_special_tokens=False)["input_ids"])
        loss_mask = torch.ones(total, dtype=torch.long)
        loss_mask[: prompt_len - 1] = 0  # :494
        loss_mask[total - 1] = 0  # :497
        reference = ids[1:][loss_mask[1:].bool()].tolist()  # :175 aligns loss_mask[:, 1:] with input_ids[:, 1:]
        assert tok.decode(reference) == "\n" + row["answer"]  # the newline after "assistant", no <|im_end|>
        assert ours == reference[1:] + [tok.eos_token_id]


def test_gen_trains_only_lora(fixtures):
    from hba_core.model.sft_setup import SftOptions, build_model, set_trainable

    model, _ = build_model(SftOptions(stage="gen", samples="-", out="-", model=str(fixtures.omni)))
    trainable = set(map(id, set_trainable(model, "gen")))
    names = [n for n, p in model.named_parameters() if id(p) in trainable]
    assert names and all("lora_" in n for n in names)
    assert not model.lm_head().weight.requires_grad
    assert not any(p.requires_grad for p in model.heads.parameters())


def test_gen_command_is_listed_with_an_example():
    from hba_tools.sft import main as sft

    listed = CliRunner().invoke(sft, ["--help"])
    assert listed.exit_code == 0 and "gen " in listed.output
    help_text = CliRunner().invoke(sft, ["gen", "--help"], prog_name="hba-sft").output
    assert "Example: hba-sft gen atlas.jsonl" in help_text and "--lora-r" in help_text


def _smoke(fixtures, out, *extra):
    return [
        str(fixtures.atlas),
        "--data-root",
        str(fixtures.data),
        "-o",
        str(out),
        "--micro-batch",
        "2",
        "--batch-size",
        "2",
        "--warmup-steps",
        "1",
        "--lr",
        "1e-3",
        "--workers",
        "0",
        "--no-gradient-checkpointing",
        "--fps",
        "1",
        "--max-frames",
        "2",
        *extra,
    ]


def _test_split(fixtures, path, datasets):
    rows = [json.loads(line) for line in fixtures.atlas.read_text().splitlines()]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows if r["split"] == "test" and r["dataset"] in datasets))
    return sum(1 for r in rows if r["split"] == "test" and r["dataset"] in datasets)


def test_gen_run_then_predict_generate(fixtures, tmp_path):
    """hba-sft gen on classification (label text) and free-text samples, then hba-predict --mode generate."""
    from safetensors.torch import load_file

    from hba_core import schemas
    from hba_core.model.sft_setup import SftOptions, build_model
    from hba_tools.predict import main as predict
    from hba_tools.sft import main as sft

    datasets = [*TEXT_CLS, "siq2"]
    runner = CliRunner()
    result = runner.invoke(
        sft,
        [
            "gen",
            *_smoke(
                fixtures,
                tmp_path / "gen",
                "--model",
                str(fixtures.omni),
                "--datasets",
                ",".join(datasets),
                "--epochs",
                "1",
            ),
        ],
    )
    assert result.exit_code == 0, result.output
    best = tmp_path / "gen" / "best"
    assert result.stdout.strip().endswith(str(best))
    config = json.loads((best / "config.json").read_text())
    assert config["stage"] == "gen" and config["lm_head_trained"] is False
    assert not (best / "lm_head.safetensors").exists()
    assert {f"{d}/lm_ce" for d in datasets} <= set(config["metrics"]), "validation CE over every dataset"
    summary = json.loads((tmp_path / "gen" / "summary.json").read_text())
    assert summary["best_val_ce"] == config["metrics"]["ce"] and 0 < summary["best_val_ce"] < 20  # LM CE only
    records = [json.loads(line) for line in (tmp_path / "gen" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert len(losses) == 6 and all(0 < v < 20 for v in losses)  # 12 train samples / micro-batch 2
    # LoRA learnt; the heads are the fresh model's, bit for bit (gen never trains them)
    fresh, _ = build_model(SftOptions(stage="gen", samples="-", out="-", model=str(fixtures.omni)))
    heads = load_file(str(best / "heads.safetensors"))
    assert all(torch.equal(heads[k], v) for k, v in fresh.heads.heads.state_dict().items())
    lora_b = [v for k, v in load_file(str(best / "adapter_model.safetensors")).items() if "lora_B" in k]
    assert lora_b and any(v.abs().sum() > 0 for v in lora_b)  # lora_B starts at 0

    test = tmp_path / "test.jsonl"
    n = _test_split(fixtures, test, datasets)
    out = tmp_path / "preds.jsonl"
    args = ["--model", str(best), "--samples", str(test), "--data-root", str(fixtures.data), "--out", str(out)]
    result = runner.invoke(predict, [*args, "--mode", "generate", "--max-new-tokens", "4", "--workers", "0"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == n and len({r["id"] for r in rows}) == n
    assert all(not schemas.errors(r, "prediction") for r in rows)
    assert all(r["mode"] == "generate" and isinstance(r["prediction"], str) and "probs" not in r for r in rows)
    # its heads are the random initialisation: heads mode is refused, and generate is the default
    result = runner.invoke(predict, [*args[:-1], str(tmp_path / "heads.jsonl"), "--mode", "heads"])
    assert result.exit_code == 1 and "task heads were never trained" in result.output
    default = tmp_path / "default.jsonl"
    result = runner.invoke(predict, [*args[:-1], str(default), "--max-new-tokens", "4", "--workers", "0"])
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["mode"] for line in default.read_text().splitlines()] == ["generate"] * n


@pytest.mark.parametrize(
    "name,end", [("tiny-causal-lm", "<|im_end|>"), ("tiny-qwen2_5_vl", "<|im_end|>"), ("tiny-gemma3", "<end_of_turn>")]
)
def test_generic_collator_labels_the_answer_and_the_end_of_turn(name, end, baselines, fixtures):
    """Other backbones' collator: the same mask, with the family's own end-of-turn token (Gemma's is not EOS)."""
    from hba_core.model.collate import MediaSettings
    from hba_core.model.generic import GenericCollator, load_generic
    from hba_core.model.source import locate

    source = locate(str(baselines[name]))
    gm = load_generic(source.load_from, source.config, name=name, dtype="float32", device=None)
    rows = _rows()
    settings = MediaSettings(data_root=str(fixtures.data))
    batch = GenericCollator(gm, settings, targets=True, every_answer=True)(rows)
    prompt_only = GenericCollator(gm, settings)  # what hba-predict feeds: the prompt, generation prompt included
    ids, mask, labels = batch.inputs["input_ids"], batch.inputs["attention_mask"], batch.lm_labels
    assert (mask == 0).any()
    for r, row in enumerate(rows):
        real = mask[r].nonzero().flatten()
        labelled = (labels[r] != IGNORE).nonzero().flatten()
        start, last = int(labelled[0]), int(real[-1])
        assert labelled.tolist() == list(range(start, last + 1))
        tok = gm.tokenizer
        assert ids[r, labelled].tolist() == tok(row["answer"] + end, add_special_tokens=False)["input_ids"]
        assert tok.decode(ids[r, labelled]).endswith(end)
        if name != "tiny-gemma3":  # the tiny Gemma vocabulary has no space piece: it decodes "no<unk>depression"
            assert tok.decode(ids[r, labelled]) == row["answer"] + end
        prompt = prompt_only([row]).inputs["input_ids"][0]
        assert torch.equal(ids[r, int(real[0]) : start], prompt), "the labels start right after the prompt"
        assert (labels[r, mask[r] == 0] == IGNORE).all()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tiny-causal-lm", "tiny-qwen2_5_vl"])
def test_gen_on_other_backbones(name, baselines, fixtures, tmp_path):
    """hba-sft gen on a non-Omni backbone (its generic collator's lm_labels), then hba-predict --mode generate."""
    from hba_tools.predict import main as predict
    from hba_tools.sft import main as sft

    runner = CliRunner()
    result = runner.invoke(
        sft, ["gen", *_smoke(fixtures, tmp_path / "gen", "--model", str(baselines[name]), "--datasets", "cremad")]
    )
    assert result.exit_code == 0, result.output
    best = tmp_path / "gen" / "best"
    records = [json.loads(line) for line in (tmp_path / "gen" / "metrics.jsonl").read_text().splitlines()]
    assert [r for r in records if "loss" in r] and any("val/cremad/lm_ce" in r for r in records)
    test = tmp_path / "test.jsonl"
    n = _test_split(fixtures, test, {"cremad"})
    out = tmp_path / "preds.jsonl"
    args = ["--model", str(best), "--samples", str(test), "--data-root", str(fixtures.data), "--out", str(out)]
    result = runner.invoke(predict, [*args, "--mode", "generate", "--max-new-tokens", "4", "--workers", "0"])
    assert result.exit_code == 0, result.output
    assert len(out.read_text().splitlines()) == n

"""hba-sft cls/qa and heads prediction on every backbone family (issue 14 item 2), and the cls forward stopping at
the penultimate layer (issue 18 item 4): same loss and gradients as the full forward, far less work."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from hba_core import registry  # noqa: E402
from hba_core.jsonl import iter_jsonl, write_jsonl  # noqa: E402
from hba_core.model.collate import IGNORE_INDEX  # noqa: E402

BASELINES = ("tiny-causal-lm", "tiny-gemma3", "tiny-qwen2_5_vl")
CLS_DATASET = "mosei_senti"  # video + audio: every substitution kind a baseline makes shows up
SUBSTITUTED = {  # what each baseline gets instead of mosei_senti's video and audio
    "tiny-causal-lm": {"video->dropped", "audio->transcript"},
    "tiny-gemma3": {"video->frames", "audio->transcript"},
    "tiny-qwen2_5_vl": {"audio->transcript"},  # takes video natively
}


def _rows(fixtures, dataset=None, split=None):
    return [
        r
        for _, r in iter_jsonl(fixtures.atlas)
        if (dataset is None or r["dataset"] == dataset) and (split is None or r["split"] == split)
    ]


def _model_path(name, fixtures, baselines):
    return fixtures.omni if name == "omni" else baselines[name]


def _build(name, fixtures, baselines, stage="cls", **extra):
    from hba_core.model.sft_setup import SftOptions, build_model, make_collator

    opts = SftOptions(
        stage=stage,
        samples="-",
        out="-",
        data_root=str(fixtures.data),
        model=str(_model_path(name, fixtures, baselines)),
        max_frames=4,
        lora_r=4,
        lora_alpha=8,
        **extra,
    )
    model, processor = build_model(opts)
    return model, processor, make_collator(model, processor, opts.media(), every_answer=False)


@pytest.mark.parametrize("name", ["omni", *BASELINES])
def test_lora_goes_on_the_llm_projections_only(name, fixtures, baselines):
    model, _, _ = _build(name, fixtures, baselines)
    base = model.thinker.get_base_model()
    decoder = base.get_decoder()
    prefix = next(n for n, m in base.named_modules() if m is decoder)
    wrapped = [n for n, m in base.named_modules() if hasattr(m, "lora_A")]
    n_layers = len(decoder.layers)
    assert len(wrapped) == 7 * n_layers  # q k v o gate up down in every decoder layer
    assert all(n.startswith(prefix + ".layers.") for n in wrapped), wrapped
    # the encoders' own projections (vision blocks' MLPs, SigLIP's q/k/v, the audio tower) stay plain
    encoders = [n for n, _ in base.named_modules() if ("visual" in n or "vision" in n or "audio" in n)]
    assert not any(n in wrapped for n in encoders)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or n.startswith("heads.") for n in trainable)


def _grads(model):
    return {
        n: None if p.grad is None else p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad
    }


@pytest.mark.parametrize("checkpointing", [False, True], ids=["plain", "grad-checkpointing"])
@pytest.mark.parametrize("name", ["omni", *BASELINES])
def test_cls_forward_stops_early_with_the_full_forwards_loss_and_grads(name, checkpointing, fixtures, baselines):
    """cls (lm=False) runs to the penultimate layer only; the full forward's last layer and logits get no
    gradient from the heads' loss, so loss and every gradient agree (rtol 1e-5), with checkpointing too."""
    from hba_core.model.sft_setup import set_trainable

    model, _, collate = _build(name, fixtures, baselines, lora_dropout=0.0)
    torch.manual_seed(1)
    for n, p in model.thinker.named_parameters():
        if "lora_B" in n:  # B starts at 0 (then A gets no gradient): make every LoRA matrix matter
            p.data.normal_(0, 0.05)
    set_trainable(model, "cls")
    if checkpointing:
        model.thinker.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    batch = collate(_rows(fixtures, CLS_DATASET, "train")[:2])
    assert len(batch) == 2 and batch.lm_labels is None

    ran = []  # which of the last decoder layer and the LM head ran
    hooks = [
        model.thinker.get_decoder().layers[-1].register_forward_hook(lambda *_: ran.append("last layer")),
        model.lm_head().register_forward_hook(lambda *_: ran.append("lm head")),
    ]
    full = model(batch, cls=True, lm=True)  # no lm_labels: the heads' loss through the full forward
    assert ran == ["last layer", "lm head"]
    full.total.backward()
    want = _grads(model)
    model.zero_grad(set_to_none=True)
    early = model(batch, cls=True, lm=False)
    early.total.backward()
    for hook in hooks:
        hook.remove()
    assert ran == ["last layer", "lm head"]  # the early path ran neither
    got = _grads(model)
    assert float(early.total.detach()) == pytest.approx(float(full.total.detach()), rel=1e-5)
    assert early.predicted == full.predicted
    last = len(model.thinker.get_decoder().layers) - 1
    for n, g in want.items():
        if f"layers.{last}." in n:  # the last layer only feeds the logits: no gradient on either path
            assert g is None and got[n] is None, n
        elif "lora_" in n or f"heads.{batch.tasks[0]}." in n:  # every other LoRA matrix and the batch's head
            assert g is not None and got[n] is not None, n
            torch.testing.assert_close(got[n], g, rtol=1e-5, atol=1e-7, msg=n)
        else:  # the other tasks' heads
            assert g is None and got[n] is None, n


@pytest.mark.parametrize("name", BASELINES)
def test_generic_collator_labels_and_targets_match_the_omni_collator(name, fixtures, baselines):
    """label_index / tasks / datasets as the Omni Collator gives them; lm_labels exactly on the answer's tokens
    and the backbone's end-of-turn token (Gemma: <end_of_turn>), the prompt and padding IGNORE_INDEX."""
    from hba_core.model.backbone import load_processor
    from hba_core.model.collate import Collator
    from hba_core.model.generic import end_of_turn

    _, processor, collate = _build(name, fixtures, baselines, stage="joint")
    omni = Collator(load_processor(str(fixtures.omni)), collate.settings, targets=True)
    # rows of different prompt and answer lengths in one (left-padded) batch, a classification row too
    rows = [*_rows(fixtures, "siq2", "train")[:2], _rows(fixtures, "intentqa", "train")[0]]
    cls_rows = _rows(fixtures, CLS_DATASET, "train")[:2]
    for group in (rows[:2], [rows[0], rows[2]], cls_rows):
        got, want = collate(group), omni(group)
        assert got.ids == want.ids and got.datasets == want.datasets and got.tasks == want.tasks
        assert torch.equal(got.label_index, want.label_index)
        assert (got.lm_labels is None) == (want.lm_labels is None)
    end = end_of_turn(processor, plain_strings=name == "tiny-causal-lm")
    assert end == ("<end_of_turn>" if name == "tiny-gemma3" else "<|im_end|>")
    tokenizer = collate.gm.tokenizer
    pair = [rows[0], rows[2]]
    batch = collate(pair)
    ids, labels, mask = batch.inputs["input_ids"], batch.lm_labels, batch.inputs["attention_mask"]
    assert mask[0].tolist() != mask[1].tolist()  # the rows differ in length: one of them is padded
    for row, sample in enumerate(pair):
        target = tokenizer(sample["answer"] + end, add_special_tokens=False)["input_ids"]
        on = (labels[row] != IGNORE_INDEX).nonzero().flatten()
        assert len(on) == len(target)
        assert on.tolist() == list(
            range(int(mask[row].nonzero()[-1]) - len(target) + 1, int(mask[row].nonzero()[-1]) + 1)
        )
        assert labels[row, on].tolist() == target == ids[row, on].tolist()
        assert tokenizer.convert_ids_to_tokens(target[-1]) == end
    # the Omni collator's mask has the same shape: answer + <|im_end|>, nothing else
    want = omni(pair)
    for row, sample in enumerate(pair):
        omni_on = want.lm_labels[row][want.lm_labels[row] != IGNORE_INDEX]
        assert omni.processor.tokenizer.decode(omni_on) == sample["answer"] + "<|im_end|>"


def _sft(name, fixtures, baselines, tmp_path, stage="cls", datasets=(CLS_DATASET,), init=None):
    """``stage`` a few steps: 4 train samples a dataset, micro-batch 2 = one epoch of 2 steps a dataset, then
    the validation that writes RUN/best/."""
    from hba_core.model.train import SftOptions, run_sft

    chosen = [r for r in _rows(fixtures) if r["dataset"] in datasets and r["split"] in ("train", "val")]
    samples = tmp_path / f"{stage}-samples.jsonl"
    write_jsonl(samples, chosen)
    return run_sft(
        SftOptions(
            stage=stage,
            samples=str(samples),
            out=str(tmp_path / ("run" if init is None else stage)),
            data_root=str(fixtures.data),
            model=str(baselines[name]),
            init=init,
            micro_batch=2,
            batch_size=2,
            epochs=1,
            warmup_steps=1,
            lr=1e-3,
            workers=0,
            max_frames=4,
            lora_r=4,
            lora_alpha=8,
        )
    )


@pytest.mark.parametrize("name", BASELINES)
def test_cls_on_each_backbone_then_heads_prediction(name, fixtures, baselines, tmp_path, capsys):
    from hba_core.bam.backbone import LazyBackbone
    from hba_core.errors import InputError
    from hba_core.model import checkpoint as ckpt
    from hba_core.model.collate import MediaSettings
    from hba_core.predict import load_predictor, predict_file
    from hba_core.rl.policy import _load_init

    summary = _sft(name, fixtures, baselines, tmp_path)
    adapter = "causal_lm" if name == "tiny-causal-lm" else "image_text_to_text"
    assert summary["steps"] == 2 and summary["best"] is not None and summary["adapter"] == adapter
    assert set(summary["substitutions"].get(CLS_DATASET, {})) == SUBSTITUTED[name]
    assert all(n == 4 for n in summary["substitutions"][CLS_DATASET].values())  # 4 training samples, 1 each
    assert f"modality substitutions ({summary['adapter']} backbone)" in capsys.readouterr().err
    best = tmp_path / "run" / "best"
    config = json.loads((best / "config.json").read_text())
    assert config["adapter"] == summary["adapter"] and config["stage"] == "cls"

    model, _ = ckpt.load_checkpoint(best)
    assert model.backbone.adapter == summary["adapter"]
    for tool, load in (("hba-bam", LazyBackbone), ("hba-grpo", lambda path: _load_init(path, "float32"))):
        with pytest.raises(
            InputError, match=f"{tool} needs a Qwen2.5-Omni checkpoint; this one was trained on a {adapter}"
        ):
            load(str(best))  # the Thinker-only tools refuse it in one line, before any weights
    trained = {n: p for n, p in model.named_parameters() if "lora_B" in n}
    assert trained and any(float(p.abs().sum()) > 0 for p in trained.values())  # the LoRA it trained came back

    test = [*_rows(fixtures, CLS_DATASET, "test"), _rows(fixtures, "siq2", "test")[0]]  # + a free-text row
    samples = tmp_path / "test.jsonl"
    write_jsonl(samples, test)
    predictor = load_predictor(str(best))
    assert predictor.adapter == summary["adapter"]
    # generation (the free-text rows) stops where hba-sft's targets end: Gemma's <end_of_turn> is not its EOS
    end = predictor.tokenizer.convert_tokens_to_ids("<end_of_turn>" if name == "tiny-gemma3" else "<|im_end|>")
    assert predictor.stop_ids == sorted({predictor.tokenizer.eos_token_id, end})
    out = tmp_path / "pred.jsonl"
    run = predict_file(
        predictor,
        samples,
        out,
        media=MediaSettings(data_root=str(fixtures.data), max_frames=4),
        mode="heads",
        batch_size=2,
        max_new_tokens=3,
        workers=0,
    )
    rows = {r["id"]: r for _, r in iter_jsonl(out)}
    assert sorted(rows) == sorted(r["id"] for r in test) and run["written"] == len(test)
    labels = set(registry.dataset(CLS_DATASET).labels)
    for sample in test:
        row = rows[sample["id"]]
        if sample["dataset"] == CLS_DATASET:
            assert row["prediction"] in labels and set(row["probs"]) >= labels
            assert sum(row["probs"].values()) == pytest.approx(1.0, abs=1e-5)
        else:
            assert "probs" not in row and isinstance(row["prediction"], str)  # generated by the LM head
    assert set(run["substitutions"][CLS_DATASET]) == SUBSTITUTED[name]


def test_joint_on_a_causal_lm_from_its_cls_checkpoint_trains_and_reloads_the_lm_head(fixtures, baselines, tmp_path):
    from safetensors.torch import load_file

    from hba_core.model import checkpoint as ckpt

    cls = _sft("tiny-causal-lm", fixtures, baselines, tmp_path, datasets=("mmpsy_depression",))
    summary = _sft(
        "tiny-causal-lm", fixtures, baselines, tmp_path, "joint", ("mmpsy_depression", "siq2"), init=cls["best"]
    )
    assert summary["best"] is not None and summary["adapter"] == "causal_lm"
    best = tmp_path / "joint" / "best"
    assert json.loads((best / "config.json").read_text())["init"] == cls["best"]
    saved = load_file(str(best / "lm_head.safetensors"))
    model, _ = ckpt.load_checkpoint(best)
    torch.testing.assert_close(model.lm_head().weight, saved["weight"])
    metrics = json.loads((best / "config.json").read_text())["metrics"]
    assert "siq2/lm_ce" in metrics and "mmpsy_depression/ce" in metrics


ZERO3_SCRIPT = r"""
import json, os, socket, sys
import torch
with socket.socket() as free:  # another job may hold the default port
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
torch.set_num_threads(1)
import deepspeed
from deepspeed.runtime.zero import parameter_offload
from deepspeed.runtime.zero.partition_parameters import ZeroParamStatus
from hba_core.model.sft_setup import SftOptions, build_model, make_collator, set_trainable
from hba_core.training.deepspeed import deepspeed_config

data, omni = sys.argv[1], sys.argv[2]
deepspeed.init_distributed(dist_backend="gloo")
rows = [json.loads(line) for line in open(os.path.join(data, "atlas.jsonl"))]
rows = [r for r in rows if r["dataset"] in ("mmpsy_depression", "cremad") and r["split"] == "train"][:6]


def run(lm):
    opts = SftOptions(stage="cls", samples="-", out="-", data_root=data, model=omni, lora_dropout=0.0, max_frames=2)
    model, processor = build_model(opts)
    torch.manual_seed(1)
    for name, p in model.thinker.named_parameters():
        if "lora_B" in name:
            p.data.normal_(0, 0.05)
    trainable = set_trainable(model, "cls")
    collate = make_collator(model, processor, opts.media(), every_answer=False)
    config = deepspeed_config("zero3", micro_batch=2, accumulation=1, max_grad_norm=1.0, bf16=False)
    config["zero_optimization"]["stage3_param_persistence_threshold"] = 0  # every parameter partitioned
    engine, *_ = deepspeed.initialize(model=model, optimizer=torch.optim.AdamW(trainable, lr=1e-3), config=config)
    depth = len(parameter_offload.FWD_MODULE_STACK)
    out = {"loss": [], "stack": [], "gathered": []}
    for step in range(3):
        losses = engine(collate(rows[2 * step : 2 * step + 2]), cls=True, lm=lm)
        engine.backward(losses.total)
        engine.step()
        out["loss"].append(float(losses.total.detach()))
        out["stack"].append(len(parameter_offload.FWD_MODULE_STACK) - depth)
        out["gathered"].append(sum(p.ds_status != ZeroParamStatus.NOT_AVAILABLE for p in model.parameters()))
    return out


print("RESULT " + json.dumps({"full": run(True), "early": run(False)}))
"""


@pytest.mark.slow
def test_early_stop_under_zero3_leaves_nothing_gathered(fixtures):
    """One-process ZeRO-3 (gloo, every parameter partitioned): the cls forward that stops early trains exactly as
    the full forward, leaves no parameter gathered after a step and DeepSpeed's module stack as it found it."""
    import os
    import subprocess
    import sys

    pytest.importorskip("deepspeed")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [sys.executable, "-c", ZERO3_SCRIPT, str(fixtures.data), str(fixtures.omni)],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads(next(line for line in run.stdout.splitlines() if line.startswith("RESULT "))[7:])
    full, early = result["full"], result["early"]
    assert early["loss"] == pytest.approx(full["loss"], rel=1e-5)
    assert early["gathered"] == full["gathered"] == [0, 0, 0]
    assert early["stack"] == full["stack"] == [0, 0, 0]

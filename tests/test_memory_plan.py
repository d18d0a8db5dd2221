"""The memory planner (issue 18.3): model states agree with DeepSpeed's own estimators, the 7B counts are
the published model's, one layer's activations agree with what a real layer saves on CPU, and the plan for
the issue's measured runs (cls, micro-batch 2 x 5,000 tokens, 8 GPUs) lands near the measured figures."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from hba_core.errors import InputError  # noqa: E402
from hba_core.training import plan as mp  # noqa: E402

P_7B = 8_931_813_888  # the published Thinker (tests/test_released_models.py checks the config)
LORA_7B = 80_740_352  # r = 32 on the 7 LLM projections
HEADS_7B = 3584 * 25 + 25  # 25 classes over 7 heads
EMBED_7B = 152_064 * 3584  # the largest module: embed_tokens (= lm_head)


@pytest.fixture(scope="module")
def cls_counts():
    """Counts of the 7B cls run per (dtype, zero): the layer's saved bytes depend on both (LoRA's dtype)."""
    config = mp.thinker_config(None)
    return {
        (dtype, zero): mp.count_model(config, "cls", dtype=dtype, zero=zero, lora_r=32)
        for dtype in ("bfloat16", "float32")
        for zero in (2, 3)
    }


# ------------------------------------------------------------------ model states vs DeepSpeed


@pytest.mark.parametrize("gpus", [1, 8])
def test_all_trainable_model_states_are_deepspeeds_estimates(gpus):
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

    ours2 = sum(mp.model_states(P_7B, P_7B, dtype="bfloat16", zero=2, gpus=gpus))
    _, theirs2 = estimate_zero2_model_states_mem_needs(P_7B, num_gpus_per_node=gpus, cpu_offload=False)
    ours3 = sum(
        mp.model_states(
            P_7B, P_7B, dtype="bfloat16", zero=3, gpus=gpus, largest_module=EMBED_7B, largest_trainable=True
        )
    )
    _, theirs3, _ = estimate_zero3_model_states_mem_needs(
        P_7B, EMBED_7B, num_gpus_per_node=gpus, cpu_offload=False, cpu_offload_params=False
    )
    assert abs(ours2 - theirs2) <= 4 and abs(ours3 - theirs3) <= 4  # integer division per part


def test_only_the_trainable_part_has_gradients_and_optimizer_state():
    frozen_run = mp.model_states(P_7B, LORA_7B, dtype="bfloat16", zero=2, gpus=8)
    assert frozen_run == (2 * P_7B, 6 * LORA_7B // 8, 12 * LORA_7B // 8)
    z3 = mp.model_states(P_7B, LORA_7B, dtype="float32", zero=3, gpus=8, largest_module=EMBED_7B)
    assert z3 == (4 * P_7B // 8 + 4 * EMBED_7B, 4 * LORA_7B // 8, 12 * LORA_7B // 8)  # frozen embedding: no grad
    # without DeepSpeed the LoRA weights are fp32 (peft) and AdamW keeps two fp32 states
    assert mp.model_states(P_7B, LORA_7B, dtype="bfloat16", zero=0, gpus=1) == (
        2 * (P_7B - LORA_7B) + 4 * LORA_7B,
        4 * LORA_7B,
        8 * LORA_7B,
    )


def test_bucket_defaults_are_deepspeeds():
    from deepspeed.runtime.zero.config import DeepSpeedZeroConfig

    defaults = DeepSpeedZeroConfig()
    assert mp.DEEPSPEED_DEFAULTS == {
        "reduce_bucket_size": defaults.reduce_bucket_size,
        "stage3_prefetch_bucket_size": defaults.prefetch_bucket_size,
        "overlap_comm": bool(defaults.overlap_comm),
    }
    # the shipped zero2.json: 2e8-element buckets, double-buffered (overlap_comm)
    assert mp.deepspeed_buffers(2, "bfloat16", ddp=False, grads=0) == 2 * 2 * 200_000_000


# ------------------------------------------------------------------ counts on the meta device


def test_7b_cls_counts_are_the_published_models(cls_counts):
    c = cls_counts[("bfloat16", 2)]
    assert c.total == P_7B + LORA_7B + HEADS_7B and c.trainable == LORA_7B + HEADS_7B
    assert c.largest_module == EMBED_7B and not c.largest_trainable
    assert (c.layers, c.hidden, c.vocab, c.kv_width) == (28, 3584, 152_064, 4 * 128)


def test_grpo_full_fine_tuning_trains_the_decoder_not_the_encoders():
    c = mp.count_model(mp.thinker_config(None), "grpo", dtype="bfloat16", zero=2, lora_r=0)
    config = mp.thinker_config(None)
    with torch.device("meta"):
        from transformers import Qwen2_5OmniThinkerForConditionalGeneration

        thinker = Qwen2_5OmniThinkerForConditionalGeneration._from_config(config)
    encoders = sum(p.numel() for p in thinker.model.audio_tower.parameters()) + sum(
        p.numel() for p in thinker.model.visual.parameters()
    )
    assert c.total == P_7B and c.trainable == P_7B - encoders and c.largest_trainable
    lora = mp.count_model(config, "grpo", dtype="bfloat16", zero=2, lora_r=32)
    assert lora.trainable == LORA_7B and not lora.largest_trainable  # hba-grpo --lora: the adapter alone


def _real_layer_saved_bytes_per_token(model_dir, tokens: int = 48) -> int:
    """What layer 0 of the tiny Omni (real weights, LoRA trained, CPU) saves for backward, per token."""
    from hba_core.model.backbone import add_lora, load_thinker

    thinker = add_lora(load_thinker(str(model_dir), dtype="float32"))
    for name, p in thinker.named_parameters():
        p.requires_grad_("lora_" in name)
    thinker.train()
    text = thinker.get_decoder()
    params = {p.untyped_storage().data_ptr() for p in thinker.parameters()}
    hidden = text.config.hidden_size
    embeds = torch.randn(1, tokens, hidden, requires_grad=True)  # (B, T, H)
    positions = torch.arange(tokens)[None, None].expand(3, 1, tokens)
    saved: dict[int, int] = {}

    def pack(t):
        s = t.untyped_storage()
        if s.data_ptr() not in params:
            saved[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        text.layers[0](
            embeds, position_embeddings=text.rotary_emb(embeds, positions), attention_mask=None, position_ids=positions
        )
    return sum(saved.values()) // tokens


@pytest.mark.filterwarnings("ignore::FutureWarning")  # transformers, inside peft
def test_layer_activations_match_a_real_layer_on_cpu(fixtures):
    counted = mp.count_model(mp.thinker_config(str(fixtures.omni)), "cls", dtype="float32", zero=0, lora_r=32)
    real = _real_layer_saved_bytes_per_token(fixtures.omni)
    # equal today (torch's CPU flash kernel saves what the stand-in saves); 5 % for kernels that differ
    assert abs(counted.layer_bytes_per_token - real) / real < 0.05, (counted.layer_bytes_per_token, real)


# ------------------------------------------------------------------ the plan


ISSUE_GB = {("bfloat16", 2): 24, ("bfloat16", 3): 10, ("float32", 2): 49, ("float32", 3): 20}


@pytest.mark.parametrize("dtype,zero", list(ISSUE_GB))
def test_issue_measured_runs_are_planned_within_15_percent(cls_counts, dtype, zero):
    plan = mp.plan_memory(
        "cls", dtype=dtype, zero=zero, micro_batch=2, seq_len=5000, gpus=8, counts=cls_counts[(dtype, zero)]
    )
    assert plan.logits == 0 and plan.kv_cache == 0  # heads only: no logits
    assert abs(plan.total / 1e9 - ISSUE_GB[(dtype, zero)]) / ISSUE_GB[(dtype, zero)] < 0.15, plan


def test_checkpointing_sharding_and_logits_move_the_right_parts(cls_counts):
    c = cls_counts[("bfloat16", 2)]
    on = mp.plan_memory("cls", zero=2, micro_batch=2, seq_len=5000, gpus=8, counts=c)
    off = mp.plan_memory("cls", zero=2, micro_batch=2, seq_len=5000, gpus=8, counts=c, gradient_checkpointing=False)
    hidden = 2 * 5000 * 3584 * 2  # one (B, T, H) bf16 hidden state
    assert on.activations == 27 * hidden + 2 * 5000 * c.layer_bytes_per_token  # 27 = 28 layers - the last
    assert off.activations == 27 * 2 * 5000 * c.layer_bytes_per_token > on.activations
    four = mp.plan_memory("cls", zero=2, micro_batch=2, seq_len=5000, gpus=4, counts=c)
    assert four.params == on.params and abs(four.optimizer - 2 * on.optimizer) <= 1  # ZeRO-2 shards states
    gen = mp.plan_memory("gen", zero=2, micro_batch=2, seq_len=5000, gpus=8, counts=c)
    assert gen.logits == 2 * 5000 * 152_064 * (2 + 4 + 4)  # bf16 logits, fp32 copy, fp32 log-softmax
    assert gen.activations - on.activations == hidden  # the last layer runs too


def test_refusals_name_the_flag():
    with pytest.raises(InputError, match="--zero: hba-grpo runs with ZeRO stage 2 at most"):
        mp.plan_memory("grpo", zero=3, gpus=8)
    with pytest.raises(InputError, match="--model: no config.json at 'nowhere'"):
        mp.thinker_config("nowhere")
    with pytest.raises(Exception, match="unknown stage 'clss'. Did you mean 'cls'"):
        mp.plan_memory("clss")


def test_command_prints_the_table_and_the_fit_line(fixtures, capsys):
    args = ["--stage", "joint", "--zero", "3", "--micro-batch", "1", "--seq-len", "512", "--gpus", "2"]
    assert mp.main([*args, "--model", str(fixtures.omni), "--gpu-memory", "0.001"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("hba-sft joint: bfloat16, ZeRO-3, micro-batch 1 x 512 tokens, 2 GPU(s)")
    assert "\nlogits " in out and out.rstrip().endswith("does not fit 2 x GPU (0.0 GiB)")
    assert mp.main([*args, "--model", str(fixtures.omni), "--gpu-memory", "80"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("fits 2 x GPU (80.0 GiB)")
    assert mp.main(["--stage", "grpo", "--zero", "3"]) == 2
    assert capsys.readouterr().err == "error: --zero: hba-grpo runs with ZeRO stage 2 at most, not 3\n"


def test_the_tools_options_plan_their_runs(fixtures, checkpoint, tmp_path):
    from hba_core.model.sft_options import sft_options
    from hba_core.rl.config import GrpoConfig

    ds = tmp_path / "ds.json"
    ds.write_text('{"zero_optimization": {"stage": 1, "reduce_bucket_size": 1000}}')
    opts = sft_options("joint", "s.jsonl", "runs/j", model=str(fixtures.omni), deepspeed=str(ds), dtype="bfloat16")
    plan = mp.plan_sft(opts, seq_len=512, gpus=2)
    assert (plan.stage, plan.zero, plan.dtype, plan.micro_batch, plan.lora_r) == ("joint", 1, "bfloat16", 2, 32)
    assert plan.buffers == 2 * 1000 and plan.grads == 2 * plan.trainable_params + 4 * plan.trainable_params // 2
    # --init: an hba checkpoint is planned with its base model (the tiny Omni here)
    from_init = mp.plan_sft(sft_options("qa", "s.jsonl", "runs/q", init=str(checkpoint)), seq_len=512, gpus=1)
    assert from_init.total_params == mp.plan_sft(opts, seq_len=512, gpus=1).total_params
    rl = GrpoConfig(init=str(fixtures.omni), train="t.jsonl", out="runs/rl", dtype="float32", deepspeed="zero2")
    g = mp.plan_grpo(rl, gpus=8)
    assert (g.zero, g.seq_len, g.lora_r, g.trainable_params < g.total_params) == (2, 4096 + 4096, 0, True)
    assert g.kv_cache > 64 * 5 * 8192  # the whole generate call: rollout batch x group size rows


# ------------------------------------------------------------------ --plan on the tools


def _cli(main, args):
    from click.testing import CliRunner

    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return result.output


def test_hba_sft_plan_prints_the_plan_and_loads_nothing(tmp_path):
    from hba_tools.sft import main as sft

    out = tmp_path / "run"
    args = ["cls", str(tmp_path / "absent.jsonl"), "-o", str(out), "--plan", "--plan-gpus", "8"]
    text = _cli(sft, [*args, "--dtype", "bfloat16", "--plan-tokens", "5000", "--gpu-memory", "80"])
    # 8 processes without --deepspeed run under ZeRO-2 (as hba-sft does); the issue's measured ~24 GB
    assert "ZeRO-2, micro-batch 2 x 5000 tokens, 8 GPU(s)" in text and "fits 8 x GPU (80.0 GiB)" in text
    expected = mp.plan_memory("cls", dtype="bfloat16", zero=2, micro_batch=2, seq_len=5000, gpus=8)
    total = next(line.split()[-1] for line in text.splitlines() if line.startswith("total"))
    assert total == f"{expected.total / 2**30:.2f}"
    assert not out.exists()  # nothing was trained, not even the run directory made
    one = _cli(sft, ["qa", "x.jsonl", "-o", str(out), "--plan", "--plan-gpus", "1", "--gpu-memory", "10"])
    assert "ZeRO-0" in one and "does not fit 1 x GPU (10.0 GiB)" in one


def test_hba_grpo_and_hba_bam_plan(tmp_path, checkpoint):
    from hba_tools.bam import main as bam
    from hba_tools.grpo import main as grpo

    text = _cli(grpo, ["--init", "Qwen/Qwen2.5-Omni-7B", "--train", "t.jsonl", "--out", str(tmp_path / "rl"),
                       "--plan", "--plan-gpus", "8", "--max-new-tokens", "256", "--gpu-memory", "80"])  # fmt: skip
    assert "hba-grpo:" in text and "kv cache (rollout)" in text and "8 GPU(s)" in text
    store = tmp_path / "store.zarr"
    store.mkdir()
    args = ["--init", str(checkpoint), "--samples", "s.jsonl", "--store", str(store), "--plan", "--gpu-memory", "24"]
    cls = _cli(bam, [*args, "--datasets", "mmsd"])
    free_text = _cli(bam, [*args, "--datasets", "mimeqa"])
    assert cls.startswith("hba-bam") and "logits           0.00" in cls  # heads only: stops before the LM head
    assert "logits           0.00" not in free_text  # a free-text dataset trains through the LM head
    assert "fits 1 x GPU (24.0 GiB)" in cls

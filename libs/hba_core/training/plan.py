"""The memory planner: the per-GPU memory of a run, computed before any weight exists (issue 18.3).

A run's memory is its *model states* (weights, gradients, optimizer state, DeepSpeed's buffers), its
*activations* (what autograd keeps for the backward pass) and, for stages with an LM loss, its *logits*.
Everything is counted on the meta device from the real configuration (default: the published
Qwen2.5-Omni-7B Thinker, :mod:`hba_core.model.configs`), with the run's LoRA and trainable set:

- **Model states** follow DeepSpeed's estimators (``estimate_zero2_model_states_mem_needs``,
  ``estimate_zero3_model_states_mem_needs``, no offload), which assume every parameter is trained with
  Adam and fp32 master weights. Here only the trainable part ``T`` of the ``P`` parameters has gradients
  and optimizer state; with ``w`` bytes per weight (2 bf16, 4 fp32) and ``N`` GPUs:

  ======  ========================  ======================  ===================
  ZeRO    params                    grads                   optimizer
  ======  ========================  ======================  ===================
  0       w (P - T) + 4 T (*)       4 T                     8 T (Adam m, v)
  1       w P                       w T + 4 T / N           12 T / N
  2       w P                       (w + 4) T / N           12 T / N (master, m, v)
  3       w P / N + gathered (**)   4 T / N                 12 T / N
  ======  ========================  ======================  ===================

  (*) without DeepSpeed, peft keeps LoRA weights (and hba its heads) in fp32, so trainable weights are
  fp32 and AdamW's state too. (**) the largest module's weights gathered whole (``w L``, and its
  gradients ``w L`` if trained: DeepSpeed's ``4 L`` in bf16). With ``T = P`` and bf16 the sums are
  DeepSpeed's own (``2P + 18P/N``; ``18P/N + 4L``): ``tests/test_memory_plan.py`` checks it against them.
  Buffers are DeepSpeed's gradient buckets, read from the shipped ``configs/zero{2,3}.json``:
  ZeRO-2 ``reduce_bucket_size`` x w, twice with ``overlap_comm``; ZeRO-3 ``reduce_bucket_size`` +
  ``stage3_prefetch_bucket_size`` (x w); DDP (ZeRO 0 on several GPUs) a second copy of the gradients.
- **Activations**: what one decoder layer saves for backward per token, measured on the meta device
  (:mod:`hba_core.training.meta_counts`). With gradient checkpointing each layer keeps only its input
  (B x T x hidden x w) and the backward recomputes one layer at a time; without it every layer keeps
  everything. Heads-only stages (cls, bam) stop at the penultimate layer: L - 1 layers and no logits.
- **Logits** (stages with an LM loss): B x T x V at the weight dtype from the LM head, its fp32 copy
  (bf16 only) and the fp32 log-softmax the cross-entropy keeps for backward.
- **KV cache** (grpo's rollouts, a separate phase): rows x T x layers x 2 x kv-heads x head-dim x w; the
  total takes the larger of training and rollout.

Not counted: the frozen audio/vision encoders' forward (transient, nothing is kept for backward), CUDA
context and allocator fragmentation (≈ 1-2 GiB a GPU, see docs/plan.md), ZeRO-3's persistent small
parameters.

>>> plan = plan_memory("cls", dtype="bfloat16", zero=2, micro_batch=2, seq_len=5000, gpus=8)  # 7B, ~1 s
>>> round(plan.total / 1e9, 1), round(plan.params / 1e9, 1), plan.logits  # GB: the issue measured ~24
(24.2, 18.0, 0)
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from typing import Any

from hba_core.errors import InputError, UnknownNameError
from hba_core.training.meta_counts import STAGES, ModelCounts, count_model, thinker_config
from hba_core.training.plan_report import format_plan, plan_dict, visible_gpus

WEIGHT_BYTES = {"float32": 4, "bfloat16": 2}
# DeepSpeed's defaults for keys the shipped configs leave out (DeepSpeedZeroConfig; checked in a test).
DEEPSPEED_DEFAULTS = {
    "reduce_bucket_size": 500_000_000,
    "stage3_prefetch_bucket_size": 50_000_000,
    "overlap_comm": False,
}


@dataclass(frozen=True)
class MemoryPlan:
    """Per-GPU bytes of a run, by part; ``total`` is what one GPU needs at its peak."""

    stage: str
    dtype: str
    zero: int
    micro_batch: int
    seq_len: int
    gpus: int
    gradient_checkpointing: bool
    lora_r: int
    total_params: int
    trainable_params: int
    params: int
    grads: int
    optimizer: int
    buffers: int
    activations: int
    logits: int
    kv_cache: int = 0

    @property
    def model_states(self) -> int:
        return self.params + self.grads + self.optimizer + self.buffers

    @property
    def total(self) -> int:
        return self.model_states + max(self.activations + self.logits, self.kv_cache)


# ------------------------------------------------------------------ model states


def model_states(
    total: int,
    trainable: int,
    *,
    dtype: str,
    zero: int,
    gpus: int,
    largest_module: int = 0,
    largest_trainable: bool = False,
    trainable_fp32: int | None = None,
) -> tuple[int, int, int]:
    """(params, grads, optimizer) bytes per GPU for ``trainable`` of ``total`` parameters (module doc's table).

    >>> model_states(10**9, 10**9, dtype="bfloat16", zero=2, gpus=8)  # DeepSpeed's 2P + 18P/N
    (2000000000, 750000000, 1500000000)
    """
    w = _weight_bytes(dtype)
    frozen = total - trainable
    if zero == 0:
        fp32 = trainable if trainable_fp32 is None else trainable_fp32
        other = trainable - fp32  # trainable weights left at the weight dtype (e.g. qa's LM head)
        return w * frozen + 4 * fp32 + w * other, 4 * fp32 + w * other, 8 * fp32 + 2 * w * other
    if zero == 1:  # optimizer state sharded; the bf16 gradients stay whole
        return w * total, w * trainable + 4 * trainable // gpus, 12 * trainable // gpus
    if zero == 2:
        return w * total, (w + 4) * trainable // gpus, 12 * trainable // gpus
    if zero == 3:
        gathered = w * largest_module * (2 if largest_trainable else 1)
        return w * total // gpus + gathered, 4 * trainable // gpus, 12 * trainable // gpus
    raise InputError("--zero", f"ZeRO stage {zero} is not planned; use 0 (no DeepSpeed), 1, 2 or 3")


def deepspeed_buffers(zero: int, dtype: str, *, ddp: bool, grads: int, config: dict[str, Any] | None = None) -> int:
    """Gradient-bucket bytes of the DeepSpeed ``config`` (default: the shipped ``zero{2,3}``; module doc);
    DDP's gradient copy for ZeRO 0 on several GPUs."""
    from hba_core.training.deepspeed import SHIPPED, load_deepspeed_json

    if zero == 0:
        return grads if ddp else 0
    if config is None:
        config = load_deepspeed_json(f"zero{zero}") if f"zero{zero}" in SHIPPED else {}
    section = {**DEEPSPEED_DEFAULTS, **config.get("zero_optimization", {})}
    w = _weight_bytes(dtype)
    if zero in (1, 2):
        return w * int(section["reduce_bucket_size"]) * (2 if section["overlap_comm"] else 1)
    return w * (int(section["reduce_bucket_size"]) + int(section["stage3_prefetch_bucket_size"]))


# ------------------------------------------------------------------ the plan


def plan_memory(
    stage: str,
    *,
    dtype: str = "bfloat16",
    zero: int | None = None,
    deepspeed: str | None = None,
    micro_batch: int = 2,
    seq_len: int = 4096,
    gpus: int | None = None,
    gradient_checkpointing: bool = True,
    lora_r: int = 32,
    rollout_rows: int | None = None,
    model: str | None = None,
    counts: ModelCounts | None = None,
) -> MemoryPlan:
    """Per-GPU memory of a run (module doc for what is counted).

    ``deepspeed`` (as the tools' ``--deepspeed``: ``zero2``, ``zero3`` or a JSON file) sets the ZeRO stage
    and buckets; without it ``zero`` does (0 = no DeepSpeed, buckets of the shipped config; default 2, and 0
    for hba-bam, which runs without DeepSpeed). ``gpus``
    defaults to the visible CUDA devices (1 without CUDA); ``seq_len`` is tokens per sample (text + audio +
    video, prompt + response); ``rollout_rows`` (grpo) is the rows one generate call decodes (rollout
    batch x group size, default ``micro_batch``); ``lora_r=0`` for grpo is full fine-tuning of the decoder.
    """
    if stage not in STAGES:
        raise UnknownNameError("stage", stage, list(STAGES))
    spec = STAGES[stage]
    ds_config = None
    if deepspeed is not None:
        from hba_core.training.deepspeed import load_deepspeed_json, zero_stage

        ds_config = load_deepspeed_json(deepspeed)
        zero = zero_stage(ds_config)
    elif zero is None:
        zero = min(2, spec.zero_max)
    _weight_bytes(dtype)
    if zero > spec.zero_max:
        raise InputError("--zero", f"{spec.tool} runs with ZeRO stage {spec.zero_max} at most, not {zero}")
    if micro_batch < 1 or seq_len < 1:
        raise InputError("--micro-batch/--seq-len", "both must be at least 1")
    if stage in ("cls", "joint", "gen") and lora_r < 1:
        raise InputError("--lora-r", f"{spec.tool} trains LoRA: give a rank of at least 1")
    gpus = gpus if gpus is not None else visible_gpus()
    if gpus < 1:
        raise InputError("--gpus", "at least 1")
    if stage == "grpo" and lora_r == 0 and zero == 0 and dtype != "float32":
        raise InputError("--dtype", "hba-grpo full fine-tuning without DeepSpeed needs float32 (fp32 master weights)")
    c = counts or count_model(thinker_config(model), stage, dtype=dtype, zero=zero, lora_r=lora_r)
    w = _weight_bytes(dtype)
    params, grads, optimizer = model_states(
        c.total,
        c.trainable,
        dtype=dtype,
        zero=zero,
        gpus=gpus,
        largest_module=c.largest_module,
        largest_trainable=c.largest_trainable,
        trainable_fp32=c.trainable_fp32,
    )
    tokens = micro_batch * seq_len
    hidden_bytes = tokens * c.hidden * w  # one (B, T, H) hidden state
    layer_bytes = tokens * c.layer_bytes_per_token  # one layer's saved tensors
    run_layers = c.layers - 1 if spec.penultimate else c.layers
    if spec.backward_layers == "all":
        activations = run_layers * hidden_bytes + layer_bytes if gradient_checkpointing else run_layers * layer_bytes
    elif spec.backward_layers == "last":  # bam-qa: gradients reach Δh through the last layer only
        activations = layer_bytes + 2 * hidden_bytes
    else:  # forward only: qa keeps every hidden state (output_hidden_states), plus one MLP's working set
        kept = (c.layers + 1) * hidden_bytes if stage == "qa" else 2 * hidden_bytes
        activations = kept + tokens * 3 * c.intermediate * w  # gate, up and their product (B, T, I)
    logits = tokens * c.vocab * (w + (4 if w != 4 else 0) + 4) if spec.logits else 0
    kv_cache = 0
    if stage == "grpo":
        rows = rollout_rows or micro_batch
        kv_cache = rows * seq_len * c.layers * 2 * c.kv_width * w + rows * c.vocab * 4  # + one step's logits
    return MemoryPlan(
        stage=stage,
        dtype=dtype,
        zero=zero,
        micro_batch=micro_batch,
        seq_len=seq_len,
        gpus=gpus,
        gradient_checkpointing=gradient_checkpointing,
        lora_r=lora_r,
        total_params=c.total,
        trainable_params=c.trainable,
        params=params,
        grads=grads,
        optimizer=optimizer,
        # hba-bam is one process: no DDP
        buffers=deepspeed_buffers(zero, dtype, ddp=gpus > 1 and spec.zero_max > 0, grads=grads, config=ds_config),
        activations=activations,
        logits=logits,
        kv_cache=kv_cache,
    )


def plan_sft(opts: Any, *, seq_len: int, gpus: int | None = None) -> MemoryPlan:
    """The plan of an hba-sft run from its :class:`~hba_core.model.sft_setup.SftOptions` (``--init``: the
    checkpoint's base model). ``seq_len``: tokens per sample, which the options do not fix."""
    gpus = gpus if gpus is not None else visible_gpus()
    return plan_memory(
        opts.stage,
        dtype=opts.dtype,
        zero=0 if gpus == 1 else 2,  # hba-sft runs every multi-process run under DeepSpeed, ZeRO-2 by default
        deepspeed=opts.deepspeed,
        micro_batch=opts.micro_batch,
        seq_len=seq_len,
        gpus=gpus,
        gradient_checkpointing=opts.gradient_checkpointing,
        lora_r=opts.lora_r,
        model=opts.init or opts.model,
    )


def plan_bam(job: Any, *, seq_len: int) -> MemoryPlan:
    """The plan of an hba-bam run from its :class:`~hba_core.bam.job.BamJob`: one process without DeepSpeed,
    the checkpoint's float32 weights, the backbone pass at ``job.batch_size``; a free-text dataset trains
    through the last layer and the LM head (``bam-qa``)."""
    from hba_core import registry

    free_text = any(registry.dataset(name).is_free_text for name in job.datasets)
    return plan_memory(
        "bam-qa" if free_text else "bam",
        dtype="float32",
        zero=0,
        micro_batch=job.batch_size,
        seq_len=seq_len,
        gpus=1,
        model=job.checkpoint,
    )


def plan_grpo(config: Any, *, gpus: int | None = None) -> MemoryPlan:
    """The plan of an hba-grpo run from its :class:`~hba_core.rl.config.GrpoConfig`: the longest sequence
    (``max_prompt_tokens + max_new_tokens``) and a whole generate call (``rollout_batch x group_size`` rows)."""
    import torch

    auto = "bfloat16" if torch.cuda.is_available() else "float32"  # hba-grpo's --dtype auto
    dtype = config.dtype if config.dtype != "auto" else auto
    return plan_memory(
        "grpo",
        dtype=dtype,
        zero=0,
        deepspeed=config.deepspeed,
        micro_batch=config.micro_batch,
        seq_len=config.max_prompt_tokens + config.max_new_tokens,
        gpus=gpus,
        gradient_checkpointing=config.gradient_checkpointing,
        lora_r=config.lora_r if config.lora else 0,
        rollout_rows=config.rollout_batch * config.group_size,
        model=config.init,
    )


def _weight_bytes(dtype: str) -> int:
    if dtype not in WEIGHT_BYTES:
        raise UnknownNameError("dtype", dtype, list(WEIGHT_BYTES))
    return WEIGHT_BYTES[dtype]


# ------------------------------------------------------------------ python -m hba_core.training.plan


def main(argv: list[str] | None = None) -> int:
    """``python -m hba_core.training.plan --stage cls --zero 2 --micro-batch 2 --seq-len 5000 --gpus 8``"""
    parser = argparse.ArgumentParser(prog="python -m hba_core.training.plan", description=__doc__.split("\n")[0])
    parser.add_argument("--stage", required=True, choices=list(STAGES))
    parser.add_argument("--dtype", default="bfloat16", choices=list(WEIGHT_BYTES))
    parser.add_argument(
        "--zero", type=int, default=None, choices=(0, 1, 2, 3), help="0 = no DeepSpeed; default 2 (bam: 0)"
    )
    parser.add_argument("--deepspeed", default=None, help="zero2, zero3 or a DeepSpeed JSON (sets the stage)")
    parser.add_argument("--micro-batch", type=int, default=2)
    parser.add_argument("--seq-len", type=int, default=4096, help="tokens per sample (text + audio + video)")
    parser.add_argument("--gpus", type=int, default=None, help="default: the visible CUDA devices (1 without)")
    parser.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--lora-r", type=int, default=32, help="LoRA rank (grpo: 0 = full fine-tuning)")
    parser.add_argument("--rollout-rows", type=int, default=None, help="grpo: rows per generate call")
    parser.add_argument("--model", default=None, help="local model dir or config.json (default: published 7B)")
    parser.add_argument("--gpu-memory", type=float, default=None, help="GiB per GPU to check against")
    parser.add_argument("--json", action="store_true", help="print the plan as one JSON object")
    args = parser.parse_args(argv)
    try:
        plan = plan_memory(
            args.stage,
            dtype=args.dtype,
            zero=args.zero,
            deepspeed=args.deepspeed,
            micro_batch=args.micro_batch,
            seq_len=args.seq_len,
            gpus=args.gpus,
            gradient_checkpointing=args.gradient_checkpointing,
            lora_r=args.lora_r,
            rollout_rows=args.rollout_rows,
            model=args.model,
        )
    except (InputError, UnknownNameError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(plan_dict(plan)) if args.json else format_plan(plan, gpu_memory=args.gpu_memory))
    return 0


if __name__ == "__main__":
    sys.exit(main())

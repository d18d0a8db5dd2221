"""The options of a GRPO run, App. C.2 defaults: one dataclass = Python API + ``hba-grpo`` flags + docs.

Each field's ``help`` is its ``--flag`` help text; ``hba-grpo --help`` lists them all.

>>> GrpoConfig(init="m", train="t.jsonl", out="runs/rl").group_size
5
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hba_core.options import option as _opt  # a field with its CLI help


@dataclass
class GrpoConfig:
    """Every option of a run; the defaults are the paper's (App. C.2)."""

    init: str = field(metadata={"help": "Qwen2.5-Omni hub id or local directory, or an hba-sft checkpoint"})
    train: str = field(metadata={"help": "training samples (JSONL); every sample needs its gold answer"})
    out: str = field(metadata={"help": "run directory: metrics.jsonl, checkpoints/, final/ (re-run to resume)"})
    val: str | None = _opt(None, "validation samples (JSONL)")
    epochs: int = _opt(10, "passes over the training samples")
    max_steps: int | None = _opt(None, "stop after this many steps in total (default: all epochs)")
    prompts_per_step: int = _opt(256, "prompts per step (C.2 batch size); x group-size responses")
    group_size: int = _opt(5, "responses sampled per prompt (Table 20: 2, 5, 20)")
    mini_batch: int = _opt(128, "PPO mini-batch in prompts: prompts-per-step / mini-batch updates per epoch")
    micro_batch: int = _opt(2, "responses per forward/backward per process (memory)")
    rollout_batch: int = _opt(64, "prompts per generate call (x group-size rows; memory vs speed)")
    ppo_epochs: int = _opt(1, "passes over each step's responses")
    lr: float = _opt(5e-7, "AdamW learning rate")
    weight_decay: float = _opt(0.0, "AdamW weight decay")
    max_grad_norm: float = _opt(1.0, "gradient clipping norm")
    clip_eps: float = _opt(0.2, "clip range epsilon of the surrogate (Eq. 2)")
    beta: float = _opt(0.0, "KL weight against the frozen initial policy (paper: 0)")
    estimator: str = _opt(
        "grpo",
        "advantage estimator: grpo (group-normalised), rloo (leave-one-out) or harpo (OmniSapiens 2.0: GRPO "
        "rebalanced across tasks and prompts, its EMA state checkpointed)",
    )
    adv_eps: float = _opt(1e-6, "epsilon of the GRPO advantage denominator (Eq. 1)")
    max_prompt_tokens: int = _opt(4096, "longer prompts are an error naming the sample (never cut)")
    max_new_tokens: int = _opt(4096, "maximum response length")
    engine: str = _opt("hf", "rollout engine: hf (transformers generate) or vllm (optional extra, GPU, text prompts)")
    temperature: float = _opt(1.0, "rollout sampling temperature")
    top_p: float = _opt(1.0, "rollout nucleus sampling threshold")
    template: str | None = _opt(
        None,
        "prompt template: think (default: the <think> + boxed instruction of App. B.2), no_thinking (answer "
        "directly in a box; the format reward then gives at most 0.5), or a file with a {problem} placeholder "
        "(literal braces doubled: \\boxed{{ }})",
    )
    data_root: str | None = _opt(None, "media paths are relative to this (default: the train file's folder)")
    val_every: int = _opt(5, "validate every N steps")
    val_limit: int | None = _opt(None, "validate on the first N validation samples (default: all)")
    save_every: int = _opt(5, "checkpoint every N steps (and at the end)")
    seed: int = _opt(0, "data order and sampling seed")
    dtype: str = _opt("auto", "weights dtype: auto (bfloat16 on GPU, float32 on CPU), float32, bfloat16")
    lora: bool = _opt(False, "train a LoRA adapter on the LLM instead of all decoder weights")
    lora_r: int = _opt(32, "LoRA rank (higher = more capacity and memory)")
    lora_alpha: int = _opt(64, "LoRA alpha (scale = alpha / r)")
    gradient_checkpointing: bool = _opt(False, "recompute activations in backward (needed for 7B at 4k tokens)")
    deepspeed: str | None = _opt(None, "zero2 or a DeepSpeed JSON config, ZeRO stage <= 2 (launch with `deepspeed`)")
    report_to: str = _opt("none", "also log the metrics lines to: none, tensorboard (OUT/tensorboard) or wandb")
    reward: str = _opt(
        "paper",
        "reward by name (registry.toml [rewards]): paper (Eq. 5), reference (the reference's human_behaviour.py) "
        "or harpo (its human_behaviour_harpo.py: 0.8 acc or similarity + 0.2 format + overlong penalty)",
    )
    reward_weights: dict[str, float] = field(
        default_factory=dict,
        metadata={
            "help": "override Eq. 5 weights, e.g. similarity=0 (keys: accuracy, format, similarity; --reward paper "
            "only; repeatable)",
            "metavar": "TERM=W",
        },
    )

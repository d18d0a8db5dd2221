"""SFT setup pieces: the run's options (App. C.2 defaults), which samples a stage trains on, which
parameters it trains, the cosine schedule, and the model it starts from. :mod:`hba_core.model.train` runs them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from hba_core import registry
from hba_core.errors import InputError
from hba_core.model import checkpoint as ckpt
from hba_core.model.backbone import LoraSettings, add_lora, load_processor, load_thinker
from hba_core.model.collate import MediaSettings
from hba_core.model.heads import default_label_space
from hba_core.model.omnisapiens import OmniSapiens
from hba_core.sample_checks import require_sample, where_of
from hba_core.samples import iter_samples

STAGES = ("cls", "qa", "joint")


@dataclass
class SftOptions:
    """Every hyper-parameter of an SFT run (App. C.2 defaults); one object = API + CLI + config file."""

    stage: str  # cls | qa | joint
    samples: str  # JSONL with a 'split' field (train / val)
    out: str  # run directory
    data_root: str = "."
    model: str = "Qwen/Qwen2.5-Omni-7B"
    init: str | None = None  # continue from an hba checkpoint
    datasets: list[str] | None = None
    exclude: list[str] = field(default_factory=list)
    lr: float = 1e-4
    warmup_steps: int = 50
    epochs: float = 5
    batch_size: int = 512  # effective batch = micro_batch x processes x accumulation
    micro_batch: int = 2
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    dtype: str = "float32"  # float32 (as in the paper) or bfloat16 (several times faster on GPUs)
    gradient_checkpointing: bool = True
    lora_r: int = 32
    lora_alpha: int = 64
    lora_dropout: float = 0.05
    fps: float = 2.0
    max_frames: int = 32
    max_pixels: int = 256 * 28 * 28
    max_audio_seconds: float = 30.0
    workers: int = 2
    seed: int = 0
    save_every: int = 50  # optimizer steps between resumable states in RUN/last/
    eval_every: int = 0  # optimizer steps between validations; 0 = at the end of each epoch
    max_steps: int | None = None  # stop after this many optimizer steps (smoke runs); resumable
    deepspeed: str | None = None  # zero2 | zero3 | path to a DeepSpeed JSON config
    resume: bool = False
    report_to: str = "none"  # none | tensorboard | wandb

    def media(self) -> MediaSettings:
        return MediaSettings(
            data_root=self.data_root,
            fps=self.fps,
            max_frames=self.max_frames,
            max_pixels=self.max_pixels,
            max_audio_seconds=self.max_audio_seconds,
        )


# ------------------------------------------------------------------ setup pieces


def select_samples(
    path: str,
    stage: str,
    datasets: list[str] | None,
    exclude: list[str],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train, val) samples of the stage's datasets: classification for cls, free text for qa, both for joint."""
    for name in [*(datasets or []), *exclude]:
        registry.dataset(name)  # unknown names fail with the valid ones
    train, val = [], []
    for line, sample in iter_samples(path, media=True):
        ds = registry.dataset(require_sample(sample, where_of(path, line, sample))["dataset"])
        if datasets and ds.name not in datasets or ds.name in exclude:
            continue
        if stage == "cls" and ds.is_free_text or stage == "qa" and not ds.is_free_text:
            continue
        split = sample.get("split")
        if split is None:
            raise InputError(
                f"{path}:{line}",
                f"sample {sample['id']} has no 'split' field; hba-sft reads train "
                "and val samples from one file with split = train / val / test",
            )
        (train if split == "train" else val if split in ("val", "validation") else []).append(sample)
    if not val:
        raise InputError(
            path,
            f"no validation samples (split 'val') for stage {stage}: the best checkpoint is "
            "chosen by validation cross-entropy",
        )
    if not train:
        raise InputError(
            path,
            f"no training samples for stage {stage} (split 'train', datasets "
            f"{datasets or 'all'} minus {exclude or 'none'})",
        )
    return train, val


def set_trainable(model: OmniSapiens, stage: str) -> list[torch.nn.Parameter]:
    """Freeze all but what the stage trains: LoRA + heads (cls), LM head (qa), all three (joint)."""
    for name, p in model.named_parameters():
        lora = "lora_" in name
        p.requires_grad = stage in ("cls", "joint") and (lora or name.startswith("heads."))
    if stage in ("qa", "joint"):
        model.lm_head().weight.requires_grad = True
    return [p for p in model.parameters() if p.requires_grad]


def cosine_schedule(optimizer: torch.optim.Optimizer, warmup: int, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 0 at ``total``."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def build_model(opts: SftOptions) -> tuple[OmniSapiens, Any]:
    """(model, processor): from ``opts.init`` (an hba checkpoint) or a fresh LoRA + heads on ``opts.model``."""
    if opts.init:
        model, config = ckpt.load_checkpoint(opts.init, dtype=opts.dtype, trainable=True, base_model=None)
        return model, ckpt.load_checkpoint_processor(opts.init, config)
    thinker = load_thinker(opts.model, dtype=opts.dtype)
    torch.manual_seed(opts.seed)  # heads initialise identically on every rank and every run
    thinker = add_lora(thinker, LoraSettings(opts.lora_r, opts.lora_alpha, opts.lora_dropout))
    return OmniSapiens(thinker, default_label_space()), load_processor(opts.model)

"""SFT setup pieces: which samples a stage trains on, which parameters it trains, the cosine schedule, and
the model it starts from. :mod:`hba_core.model.train` runs them; the run's options (App. C.2 defaults) are
:mod:`hba_core.model.sft_options` (re-exported here).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from hba_core import registry
from hba_core.errors import InputError
from hba_core.media_settings import MediaSettings
from hba_core.model import checkpoint as ckpt
from hba_core.model.backbone import LoraSettings, add_lora, load_processor, load_thinker
from hba_core.model.backbones import backbone_for
from hba_core.model.collate import Collator
from hba_core.model.generic import GenericCollator, GenericModel, load_generic
from hba_core.model.heads import default_label_space
from hba_core.model.omnisapiens import OmniSapiens
from hba_core.model.sft_options import STAGES, SftOptions, sft_options  # noqa: F401 (re-exported)
from hba_core.model.source import locate
from hba_core.sample_checks import require_sample, where_of
from hba_core.samples import iter_samples

# ------------------------------------------------------------------ setup pieces


def select_samples(
    path: str,
    stage: str,
    datasets: list[str] | None,
    exclude: list[str],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train, val) samples of the stage's datasets: classification for cls, free text for qa, all for joint/gen."""
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
    """Freeze all but what the stage trains: LoRA + heads (cls), LM head (qa), all three (joint), LoRA (gen)."""
    for name, p in model.named_parameters():
        lora = "lora_" in name
        p.requires_grad = stage in ("cls", "joint") and (lora or name.startswith("heads.")) or stage == "gen" and lora
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
    """(model, processor): from ``opts.init`` (an hba checkpoint) or a fresh LoRA + heads on ``opts.model``.

    The backbone's adapter is chosen from its ``config.json`` (:func:`~hba_core.model.backbones.backbone_for`):
    Qwen2.5-Omni's Thinker, or any other family through :func:`~hba_core.model.generic.load_generic`
    (Qwen2.5-VL, Gemma 3, a causal LM); LoRA goes on its LLM's projections only, its encoders stay frozen.
    """
    if opts.init:
        model, config = ckpt.load_checkpoint(opts.init, dtype=opts.dtype, trainable=True, base_model=None)
        return model, ckpt.load_checkpoint_processor(opts.init, config)
    source = locate(opts.model, flag="--model")
    lora = LoraSettings(opts.lora_r, opts.lora_alpha, opts.lora_dropout)
    if backbone_for(source.config).adapter != "omni_thinker":
        gm = load_generic(source.load_from, source.config, name=opts.model, dtype=opts.dtype, device=None)
        torch.manual_seed(opts.seed)  # LoRA and heads initialise identically on every rank and every run
        return OmniSapiens(add_lora(gm.model, lora), default_label_space(), gm.backbone), gm.processor
    thinker = load_thinker(opts.model, dtype=opts.dtype)
    torch.manual_seed(opts.seed)  # heads initialise identically on every rank and every run
    thinker = add_lora(thinker, lora)
    return OmniSapiens(thinker, default_label_space()), load_processor(opts.model)


def make_collator(
    model: OmniSapiens, processor: Any, media: MediaSettings, *, every_answer: bool
) -> Collator | GenericCollator:
    """The SFT collator of the model's backbone (teacher-forcing targets on): the Omni
    :class:`~hba_core.model.collate.Collator`, or :class:`~hba_core.model.generic.GenericCollator` (same
    labels and targets; media the backbone cannot take are substituted and counted in ``Batch.substitutions``).
    """
    if model.backbone.adapter == "omni_thinker":
        return Collator(processor, media, targets=True, every_answer=every_answer)
    gm = GenericModel(model.backbone.model_type, model.backbone, model.thinker, processor)
    return GenericCollator(gm, media, targets=True, every_answer=every_answer)

"""The options of an SFT run (App. C.2 defaults): one dataclass = Python API + ``hba-sft`` flags + config file.

Each field's ``help`` is its flag's help text (``hba-sft cls --help`` lists them all; the media fields
share :class:`~hba_core.media_settings.MediaSettings`' defaults and help). No torch here: ``--help`` and
config checks run without the ``train`` extra.

>>> sft_options("cls", "atlas.jsonl", "runs/cls", lr=1e-3, epochs=None).lr
0.001
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from hba_core.media_settings import MediaSettings, media_field
from hba_core.options import merge_options
from hba_core.options import option as _opt  # a field with its CLI help

STAGES = ("cls", "qa", "joint", "gen")


@dataclass
class SftOptions:
    """Every hyper-parameter of an SFT run (App. C.2 defaults); one object = API + CLI + config file.

    Each field's ``help`` is its ``hba-sft`` flag's help text (the media fields share MediaSettings').
    """

    stage: str = field(metadata={"help": "cls | qa | joint | gen (the hba-sft subcommand)", "choices": STAGES})
    samples: str = field(metadata={"help": "samples with a 'split' field (train / val): JSONL, shards, a folder"})
    out: str = field(metadata={"help": "run directory"})
    data_root: str = media_field("data_root")
    model: str = _opt("Qwen/Qwen2.5-Omni-7B", "backbone: hub id or local path")
    init: str | None = _opt(None, "continue from an hba checkpoint (e.g. RUN/best of the cls stage)")
    datasets: list[str] | None = _opt(None, "only these datasets (repeatable or comma-separated) [all]")
    exclude: list[str] = _opt([], "leave these datasets out (repeatable or comma-separated)")
    lr: float = _opt(1e-4, "peak learning rate")
    warmup_steps: int = _opt(50, "linear warm-up steps before the cosine decay")
    epochs: float = _opt(5, "epochs")
    batch_size: int = _opt(512, "effective batch = micro-batch x processes x accumulation")
    micro_batch: int = _opt(2, "samples per forward pass and process")
    weight_decay: float = _opt(0.0, "AdamW weight decay")
    max_grad_norm: float = _opt(1.0, "gradient clipping norm")
    dtype: str = _opt(
        "float32",
        "weights/compute precision: float32 (as in the paper) or bfloat16 (several times faster on GPUs)",
        choices=("float32", "bfloat16"),
    )
    gradient_checkpointing: bool = _opt(True, "recompute activations in backward: less memory, ~30% slower")
    lora_r: int = _opt(32, "LoRA rank")
    lora_alpha: int = _opt(64, "LoRA alpha")
    lora_dropout: float = _opt(0.05, "LoRA dropout")
    fps: float = media_field("fps")
    max_frames: int = media_field("max_frames")
    max_pixels: int = media_field("max_pixels")
    min_pixels: int = media_field("min_pixels")
    max_audio_seconds: float = media_field("max_audio_seconds")
    allow_outside_root: bool = media_field("allow_outside_root")
    workers: int = _opt(2, "DataLoader workers decoding media")
    seed: int = _opt(0, "seed of initialisation, data order and dropout")
    save_every: int = _opt(50, "optimizer steps between resumable states in RUN/last/")
    eval_every: int = _opt(0, "optimizer steps between validations; 0 = at the end of each epoch")
    max_steps: int | None = _opt(None, "stop after this many optimizer steps (smoke runs; resumable)")
    deepspeed: str | None = _opt(None, "zero2, zero3 or a DeepSpeed JSON config (multi-process runs default to zero2)")
    resume: bool = _opt(False, "continue RUN from its last saved state")
    report_to: str = _opt("none", "also log metrics there", choices=("none", "tensorboard", "wandb"))

    def media(self) -> MediaSettings:
        return MediaSettings(**{f.name: getattr(self, f.name) for f in fields(MediaSettings)})


def sft_options(stage: str, samples: str, out: str, config_file: str | None = None, **overrides: Any) -> SftOptions:
    """The options of one run: the config file's (JSON or TOML; unknown keys are an error naming the file),
    then ``overrides`` that are not ``None`` (the flags given), then the defaults.

    >>> sft_options("cls", "atlas.jsonl", "runs/cls", lr=1e-3, epochs=None).lr
    0.001
    """
    return merge_options(SftOptions, config_file, {**overrides, "stage": stage, "samples": samples, "out": out})

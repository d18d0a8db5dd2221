"""The policy side of a GRPO run: model (full or LoRA), processor, optimizer, DeepSpeed engine, collator,
rollout engine and reference policy, built from a :class:`~hba_core.rl.config.GrpoConfig`.

Loading and collation are the model core's (:mod:`hba_core.model.backbone`, :mod:`hba_core.model.collate`):
GRPO reads samples and media exactly as SFT and prediction do.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from hba_core.errors import InputError
from hba_core.rl import checkpoint as ckpt
from hba_core.rl.config import GrpoConfig
from hba_core.rl.harpo import HarpoState
from hba_core.rl.rollout import HFGenerateEngine, RolloutEngine, VLLMEngine


class Policy:
    """What the loop holds: the model (or DeepSpeed engine), processor, optimizer, collator, engine."""

    def __init__(self, config: GrpoConfig, *, world_size: int = 1):
        from hba_core.model.backbone import LoraSettings, add_lora, load_lora, load_processor
        from hba_core.model.collate import Collator, MediaSettings

        self.config = config
        cuda = torch.cuda.is_available()
        self.device = torch.device("cuda", torch.cuda.current_device()) if cuda else torch.device("cpu")
        dtype = config.dtype if config.dtype != "auto" else ("bfloat16" if self.device.type == "cuda" else "float32")
        if dtype != "float32" and not (config.lora or config.deepspeed):
            # AdamW on bf16 weights drops every update below bf16's precision (lr 5e-7 updates vanish);
            # DeepSpeed keeps fp32 master weights, peft keeps LoRA weights in fp32.
            raise InputError(
                "--dtype",
                f"full fine-tuning in {dtype} without fp32 master weights loses small "
                "updates; add --deepspeed zero2 or --lora, or use --dtype float32",
            )
        self.processor = load_processor(_processor_source(config.init))
        self.processor.tokenizer.padding_side = "left"  # generation appends on the right
        tok = self.processor.tokenizer
        self.eos_id, self.pad_id = tok.eos_token_id, tok.pad_token_id
        model = _load_init(config.init, dtype)
        self.resume_from = ckpt.latest_checkpoint(Path(config.out))
        self.harpo = HarpoState()  # HARPO's per-task EMAs: saved in every checkpoint, restored on resume
        if config.lora:
            model = (
                load_lora(model, str(self.resume_from / "policy"))
                if self.resume_from
                else add_lora(model, LoraSettings(r=config.lora_r, alpha=config.lora_alpha))
            )
        elif self.resume_from:
            model = _load_init(str(self.resume_from / "policy"), dtype)
        # Rollouts, pi_old and pi_theta must be one network: with dropout (LoRA's 0.05 among others) the
        # ratio pi_theta / pi_old strays from 1 with no update at all, and the clipped loss trains on noise.
        disable_dropout(model)
        for name, p in model.named_parameters():  # the encoders stay frozen: RL trains the decoder
            if ".audio_tower." in f".{name}" or ".visual." in f".{name}":
                p.requires_grad_(False)
        if config.gradient_checkpointing:
            model.gradient_checkpointing_enable()
            model.enable_input_require_grads()
        model.to(self.device).train()
        self.model = model
        self.ref_model = None
        if config.beta > 0 and not config.lora:  # with LoRA the reference is the base (adapter disabled)
            self.ref_model = _load_init(config.init, dtype).to(self.device).eval().requires_grad_(False)
        params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
        self.engine = None
        if config.deepspeed:
            import deepspeed

            ds_config = deepspeed_config(config, world_size)
            self.engine, self.optimizer, _, _ = deepspeed.initialize(
                model=model, optimizer=self.optimizer, config=ds_config
            )
        self.template = load_template(config.template)
        root = config.data_root or str(Path(config.train).resolve().parent)
        self.media = MediaSettings(data_root=root)
        self.collate = Collator(self.processor, self.media, targets=False)  # validation batches
        self.rollout: RolloutEngine
        if config.engine == "hf":
            self.rollout = HFGenerateEngine(
                model,
                eos_token_id=self.eos_id,
                pad_token_id=self.pad_id,
                suppress_token_ids=media_token_ids(self.processor),
            )
        elif config.engine == "vllm":
            if config.lora:
                raise InputError("--engine vllm", "weight sync needs full fine-tuning; drop --lora or use --engine hf")
            try:
                self.rollout = VLLMEngine(config.init, eos_token_id=self.eos_id)
            except ImportError as exc:
                raise InputError("--engine vllm", str(exc)) from None
            self.rollout.sync_weights(model)  # a resumed or LoRA policy differs from the files at config.init
        else:
            raise InputError("--engine", f"unknown rollout engine {config.engine!r}; valid: hf, vllm")

    @property
    def forward_module(self) -> Any:
        return self.engine if self.engine is not None else self.model

    def prompt(self, sample: dict[str, Any]) -> dict[str, Any]:
        """The sample with the reasoning template applied to its ``problem``."""
        return {**sample, "problem": self.template.rstrip("\n").format(problem=sample["problem"])}

    def backward_step(self, loss: torch.Tensor) -> None:
        if self.engine is not None:
            self.engine.backward(loss, scale_wrt_gas=False)
        else:
            loss.backward()

    def optimizer_step(self) -> float:
        """Clip, step, zero; returns the gradient norm."""
        if self.engine is not None:
            self.engine.step()  # unmanaged accumulation: this call is the boundary (reduce + clip + step)
            norm = self.engine.get_global_grad_norm()
            return float(norm) if norm is not None else float("nan")
        params = [p for p in self.model.parameters() if p.requires_grad]
        norm = torch.nn.utils.clip_grad_norm_(params, self.config.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(norm)


TEMPLATES = ("think", "no_thinking")  # rl/templates/<name>.txt


def load_template(name_or_path: str | None) -> str:
    """A prompt template by name (``think``, the default: App. B.2's <think>/\\boxed{} instruction;
    ``no_thinking``: the reference's answer-directly instruction) or from a file; a ``str.format`` string
    with a ``{problem}`` placeholder (literal braces doubled).

    >>> load_template("no_thinking").format(problem="Is the speaker sarcastic?").splitlines()[0]
    'Is the speaker sarcastic?'
    """
    from importlib import resources

    name = name_or_path or "think"
    if name in TEMPLATES:
        text = resources.files("hba_core.rl").joinpath(f"templates/{name}.txt").read_text(encoding="utf-8")
    elif Path(name).is_file():
        text = Path(name).read_text(encoding="utf-8")
    else:
        raise InputError("--template", f"{name!r} is neither a template name ({', '.join(TEMPLATES)}) nor a file")
    if "{problem}" not in text:
        raise InputError(name, "the template has no {problem} placeholder")
    return text.rstrip("\n")


def disable_dropout(model: torch.nn.Module) -> int:
    """Switch off every dropout of ``model`` in place, as torchtune's ``disable_dropout`` does for its GRPO
    recipe; returns how many were on. Covers ``nn.Dropout`` modules (LoRA's ``lora_dropout`` included) and
    the float rates that transformers' attention and encoder layers pass to the functional dropout.

    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.1))
    >>> disable_dropout(net), net[1].p
    (1, 0.0)
    """
    switched = 0
    for module in model.modules():
        if isinstance(module, torch.nn.modules.dropout._DropoutNd):
            switched += module.p > 0
            module.p = 0.0
        for attr in ("dropout", "attention_dropout", "activation_dropout"):
            rate = getattr(module, attr, None)
            if isinstance(rate, float):
                switched += rate > 0
                setattr(module, attr, 0.0)
    return int(switched)


def media_token_ids(processor: Any) -> list[int]:
    """Media placeholder and boundary token ids: a response must not contain them (the Thinker's forward
    pass and its 3-D rope positions read them as audio/image/video segments)."""
    tok = processor.tokenizer
    names = (
        "audio_token",
        "image_token",
        "video_token",
        "audio_bos_token",
        "audio_eos_token",
        "vision_bos_token",
        "vision_eos_token",
    )
    return sorted({tok.convert_tokens_to_ids(getattr(tok, n)) for n in names if getattr(tok, n, None)})


def deepspeed_config(config: GrpoConfig, world_size: int) -> dict[str, Any]:
    """The shared DeepSpeed builder (:mod:`hba_core.training.deepspeed`) with ZeRO stage at most 2.

    ZeRO-3 is refused: its sharded weights would make every decoding step of the rollouts gather the
    whole model, and saving the policy would need a gather too. ZeRO-2 (+ LoRA or activation
    checkpointing) fits the 7B Thinker on 80-141 GB GPUs. Accumulation is unmanaged: the loop decides
    where a mini-batch ends.
    """
    from hba_core.training.deepspeed import deepspeed_config as build

    return build(
        str(config.deepspeed),
        micro_batch=config.micro_batch,
        accumulation=1,
        max_grad_norm=config.max_grad_norm,
        bf16=config.dtype == "bfloat16" or (config.dtype == "auto" and torch.cuda.is_available()),
        max_stage=2,
        managed_accumulation=False,
        tool="hba-grpo",
    )


def _processor_source(init: str) -> str:
    from hba_core.model.checkpoint import is_checkpoint

    if is_checkpoint(init) and not (Path(init) / "tokenizer_config.json").exists():
        return json.loads((Path(init) / "config.json").read_text())["base_model"]
    return init


def _load_init(init: str, dtype: str) -> Any:
    """A Qwen2.5-Omni Thinker (hub id / path / GRPO checkpoint), or an hba-sft checkpoint with LoRA merged."""
    from hba_core.model.backbone import load_thinker
    from hba_core.model.checkpoint import CONFIG, is_checkpoint, load_checkpoint, merge_lora, require_omni

    if is_checkpoint(init):
        require_omni(init, json.loads((Path(init) / CONFIG).read_text()), "hba-grpo")  # before any weights
        model, _ = load_checkpoint(init, dtype=dtype)
        return merge_lora(model)
    return load_thinker(init, dtype=dtype)

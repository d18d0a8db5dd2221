"""The run's model on the meta device: what each stage trains, parameter counts, and the bytes one decoder
layer saves for backward per token. No weights and no memory: the 7B Thinker is counted in about a second.

The saved bytes are *measured*, not modelled: the real decoder layer (with its LoRA, at the run's dtypes)
runs on meta tensors under ``torch.autograd.graph.saved_tensors_hooks`` and every storage it saves is counted
once, its parameters excluded. Attention is a stand-in that saves what a flash kernel saves (q, k, v, the
output and the fp32 log-sum-exp): on meta, SDPA would take its math path and save a T x T matrix that no GPU
kernel keeps. :mod:`hba_core.training.plan` turns these counts into a memory plan.

>>> from hba_core.training.meta_counts import STAGES
>>> STAGES["cls"].penultimate, STAGES["qa"].trains
(True, 'lm_head')
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hba_core.errors import InputError

PUBLISHED_7B = ("Qwen/Qwen2.5-Omni-7B", "qwen2.5-omni-7b")  # names planned with the published config


@dataclass(frozen=True)
class Stage:
    """What a stage trains and runs: which parameters, how far the LLM runs, whether it back-propagates."""

    trains: str  # lora+heads | lm_head | lora+heads+lm_head | lora | decoder | adapters | adapters+lm_head
    penultimate: bool  # stops at the penultimate layer (heads only): L - 1 layers, no logits
    backward_layers: str  # all | last | none: decoder layers the backward goes through
    logits: bool  # computes the full-vocabulary logits (LM loss)
    zero_max: int  # highest ZeRO stage the tool accepts (hba-grpo 2; hba-bam runs without DeepSpeed)
    tool: str


STAGES: dict[str, Stage] = {
    "cls": Stage("lora+heads", True, "all", False, 3, "hba-sft cls"),
    "qa": Stage("lm_head", False, "none", True, 3, "hba-sft qa"),
    "joint": Stage("lora+heads+lm_head", False, "all", True, 3, "hba-sft joint"),
    "gen": Stage("lora", False, "all", True, 3, "hba-sft gen"),
    "bam": Stage("adapters", True, "none", False, 0, "hba-bam (classification datasets)"),
    "bam-qa": Stage("adapters+lm_head", False, "last", True, 0, "hba-bam (free-text datasets)"),
    "grpo": Stage("decoder", False, "all", True, 2, "hba-grpo"),
}


@dataclass(frozen=True)
class ModelCounts:
    """Parameter counts of the run's model and one decoder layer's saved activations per token."""

    total: int
    trainable: int
    trainable_fp32: int  # trainable LoRA/heads parameters peft and hba keep in fp32 without DeepSpeed
    largest_module: int  # parameters of the largest single module (ZeRO-3 gathers it whole)
    largest_trainable: bool
    layers: int
    hidden: int
    intermediate: int
    vocab: int
    kv_width: int  # kv-heads x head-dim
    layer_bytes_per_token: int  # saved for backward by one decoder layer, per token


def thinker_config(model: str | None) -> Any:
    """The Thinker config to plan: the published 7B (``None`` or its hub id), a local dir / config.json, or an
    hba checkpoint (its base model's)."""
    from hba_core.model.configs import qwen2_5_omni_7b_thinker

    if model is None or model in PUBLISHED_7B:
        return qwen2_5_omni_7b_thinker()
    path = Path(model)
    config_file = path / "config.json" if path.is_dir() else path
    if not config_file.is_file():
        raise InputError(
            "--model",
            f"no config.json at {model!r}; pass a local model directory or its config.json "
            "(default: the published Qwen2.5-Omni-7B Thinker)",
        )
    values = json.loads(config_file.read_text())
    if "base_model" in values and "tool" in values:  # an hba checkpoint (its config.json): plan its base model
        return thinker_config(values["base_model"])
    kind = values.get("model_type")
    if kind == "qwen2_5_omni":
        values = values.get("thinker_config") or {}
    elif kind != "qwen2_5_omni_thinker":
        raise InputError(
            str(config_file), f"model_type {kind!r} is not planned; the planner knows qwen2_5_omni(_thinker)"
        )
    from transformers import Qwen2_5OmniThinkerConfig

    return Qwen2_5OmniThinkerConfig(**{k: v for k, v in values.items() if k != "model_type"})


def _flash_attention(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, **kwargs: Any) -> Any:
    """Attention for counting only: saves what a flash kernel saves (q, k, v, out, log-sum-exp)."""
    import torch

    class Flash(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, q: Any, k: Any, v: Any) -> Any:
            batch, heads, tokens, dim = q.shape  # (B, H, T, D)
            out = q.new_empty(batch, tokens, heads, dim)  # (B, T, H, D), as attention functions return
            lse = q.new_empty(batch, heads, tokens, dtype=torch.float32)
            ctx.save_for_backward(q, k, v, out, lse)
            return out

        @staticmethod
        def backward(ctx: Any, grad: Any) -> Any:  # pragma: no cover - counting never runs backward
            raise RuntimeError("the planner's attention stand-in has no backward")

    return Flash.apply(query, key, value), None


def _saved_bytes_per_token(
    layer: Any, text: Any, dtype: Any, hidden: int, *, input_grad: bool, tokens: int = 64
) -> int:
    """Bytes one decoder layer saves for backward, per token (its parameters excluded), on the meta device.

    ``input_grad``: the layer's input needs a gradient (true for every layer above a trained one).
    """
    import torch

    params = {p.untyped_storage()._cdata for p in layer.parameters()}
    saved: dict[int, int] = {}

    def pack(t: Any) -> Any:
        storage = t.untyped_storage()
        if storage._cdata not in params:  # _cdata: the storage's identity (meta tensors have no data pointer)
            saved[storage._cdata] = storage.nbytes()  # one storage once, however many ops save it
        return t

    embeds = torch.empty(1, tokens, hidden, dtype=dtype, device="meta", requires_grad=input_grad)  # (B, T, H)
    positions = torch.arange(tokens, device="meta")[None, None].expand(3, 1, tokens)  # (3, B, T) M-RoPE
    rotary = text.rotary_emb(embeds, positions)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        layer(embeds, position_embeddings=rotary, attention_mask=None, position_ids=positions)
    return sum(saved.values()) // tokens


def count_model(
    config: Any, stage: str, *, dtype: str, zero: int, lora_r: int, lora_alpha: int = 64, lora_dropout: float = 0.05
) -> ModelCounts:
    """Build the run's model on the meta device (no memory) and count what the stage trains."""
    import torch
    from transformers import AttentionInterface, Qwen2_5OmniThinkerForConditionalGeneration

    from hba_core.model.backbone import LoraSettings, _quiet_transformers, add_lora, torch_dtype
    from hba_core.model.heads import default_label_space
    from hba_core.model.omnisapiens import OmniSapiens

    spec = STAGES[stage]
    _quiet_transformers()
    AttentionInterface.register("hba_plan_counting", _flash_attention)
    weight = torch_dtype(dtype)
    with torch.device("meta"):
        thinker = Qwen2_5OmniThinkerForConditionalGeneration._from_config(
            config, dtype=weight, attn_implementation="hba_plan_counting"
        )
        lora = lora_r > 0  # hba-sft always adds LoRA (frozen in qa); grpo with r = 0 is full fine-tuning
        if lora:
            with warnings.catch_warnings():  # transformers' deprecation notice inside peft, not ours to act on
                warnings.simplefilter("ignore", FutureWarning)
                thinker = add_lora(thinker, LoraSettings(lora_r, lora_alpha, lora_dropout))
        # hba-sft and hba-bam models carry the task heads (trained in cls and joint only); hba-grpo's does not
        model = OmniSapiens(thinker, default_label_space()) if stage != "grpo" else None
    module = model if model is not None else thinker
    named = list(module.named_parameters())
    lm_head = module.get_output_embeddings() if model is None else model.lm_head()
    trained = {id(lm_head.weight)} if "lm_head" in spec.trains else set()
    for name, p in named:
        is_lora, is_head = "lora_" in name, name.startswith("heads.")
        encoder = ".audio_tower." in f".{name}" or ".visual." in f".{name}"
        if stage == "grpo":  # hba-grpo: LoRA, or full fine-tuning of the decoder, embeddings and LM head
            keep = is_lora if lora else not encoder
        else:
            keep = is_lora and "lora" in spec.trains or is_head and "heads" in spec.trains or id(p) in trained
        p.requires_grad_(keep)
    if zero > 0:
        module.to(weight)  # DeepSpeed casts the whole module (LoRA and heads too) to the weight dtype
    elif model is not None:
        model.heads.to(torch.float32)  # hba-sft keeps its heads in fp32
    trainable = [(n, p) for n, p in named if p.requires_grad]
    largest, largest_trainable = 0, False
    for m in module.modules():
        own = list(m.parameters(recurse=False))
        size = sum(p.numel() for p in own)
        if size > largest:
            largest, largest_trainable = size, any(p.requires_grad for p in own)
    text = thinker.get_decoder()
    tc = config.text_config
    head_dim = getattr(tc, "head_dim", None) or tc.hidden_size // tc.num_attention_heads
    layer = text.layers[0].train()
    return ModelCounts(
        total=sum(p.numel() for _, p in named),
        trainable=sum(p.numel() for _, p in trainable),
        trainable_fp32=sum(p.numel() for _, p in trainable if p.dtype == torch.float32),
        largest_module=largest,
        largest_trainable=largest_trainable,
        layers=tc.num_hidden_layers,
        hidden=tc.hidden_size,
        vocab=tc.vocab_size,
        kv_width=tc.num_key_value_heads * head_dim,
        intermediate=tc.intermediate_size,
        layer_bytes_per_token=_saved_bytes_per_token(
            layer, text, weight, tc.hidden_size, input_grad=spec.backward_layers != "none"
        ),
    )

"""Loading Qwen2.5-Omni's Thinker (never the Talker) and its processor, and adding LoRA.

``name_or_path`` is a hub id (default ``Qwen/Qwen2.5-Omni-7B``) or a local directory in the hub's
layout: a composite ``qwen2_5_omni`` config.json with ``thinker.``-prefixed weights. Its config.json is
read first (:mod:`hba_core.model.source`) and its ``model_type`` picks the loader in
:data:`THINKER_LOADERS`; any other model type is refused before a weight is built. transformers
reads the Thinker's part of that config and renames the weights on load; the speech-output Talker
and token2wav weights are never read - that is what keeps ZeRO-3 working.

LoRA (App. C.2 defaults: r=32, alpha=64, dropout 0.05) goes on the q/k/v/o/gate/up/down projections
of the *language model only*. The audio and vision encoders get no LoRA and stay frozen, as in the
paper's setup: their MLPs also have ``gate_proj``/``up_proj``/``down_proj`` modules (Qwen2.5-VL's
vision blocks too, Gemma 3's SigLIP tower has ``q_proj``/``k_proj``/``v_proj``), so the target is a
regular expression anchored on the decoder's own layers (:func:`lora_target_regex`: the module
``get_decoder()`` returns - ``model.language_model`` in the Thinker, Qwen2.5-VL and Gemma 3, ``model``
in a causal LM).

>>> from hba_core.model.backbone import load_thinker, load_processor, add_lora   # doctest: +SKIP
>>> thinker = add_lora(load_thinker("Qwen/Qwen2.5-Omni-7B", dtype="bfloat16"))  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

DEFAULT_MODEL = "Qwen/Qwen2.5-Omni-7B"
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# The LLM's linear projections (attention + MLP); anchored so the encoders' MLPs are left alone.
LORA_TARGET_REGEX = r".*language_model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)"


@dataclass(frozen=True)
class LoraSettings:
    """LoRA hyper-parameters (App. C.2)."""

    r: int = 32  # rank: higher = more capacity and memory
    alpha: int = 64  # scale = alpha / r
    dropout: float = 0.05


def torch_dtype(name: str) -> torch.dtype:
    """``"bfloat16"`` -> ``torch.bfloat16``; unknown names list the valid ones."""
    from hba_core.errors import UnknownNameError

    if name not in DTYPES:
        raise UnknownNameError("dtype", name, list(DTYPES))
    return DTYPES[name]


def _quiet_transformers() -> None:
    # The hub config's Talker token ids lie outside the Thinker's vocabulary check; the Talker is not loaded.
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


def _load_qwen_omni_thinker(source: Any, *, dtype: str, attn_implementation: str) -> Any:
    """A composite ``qwen2_5_omni`` dir (hub layout; only ``thinker.`` weights are read) or a Thinker-only dir."""
    from transformers import Qwen2_5OmniThinkerForConditionalGeneration

    from hba_core.errors import InputError

    try:
        return Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(
            source.load_from,
            dtype=torch_dtype(dtype),
            attn_implementation=attn_implementation,
            local_files_only=source.local_dir is not None,
        )
    except OSError as exc:
        raise InputError(
            source.name,
            f"cannot load a Qwen2.5-Omni checkpoint ({exc}); pass a local directory in the hub layout "
            "or a hub id available offline",
        ) from None


# model_type of config.json -> the function building our Thinker from it. Other backbones join here.
THINKER_LOADERS: dict[str, Callable[..., Any]] = {
    "qwen2_5_omni": _load_qwen_omni_thinker,
    "qwen2_5_omni_thinker": _load_qwen_omni_thinker,
}


def choose_loader(source: Any) -> Callable[..., Any]:
    """The loader for a located backbone's ``model_type``; anything else is refused in one line."""
    from hba_core.errors import InputError

    loader = THINKER_LOADERS.get(source.model_type)
    if loader is None:
        raise InputError(
            source.name,
            f"config.json has model_type {source.model_type or '(none)'!r}, which hba cannot load; "
            f"supported model types: {', '.join(THINKER_LOADERS)}",
        )
    return loader


def load_thinker(
    name_or_path: str = DEFAULT_MODEL,
    *,
    dtype: str = "float32",
    attn_implementation: str = "sdpa",
    device: str | torch.device | None = None,
    base_dirs: tuple[str, ...] = (),
    flag: str = "--base-model",
) -> Any:
    """The Thinker (audio encoder + vision encoder + LLM + LM head) in eval mode, weights in ``dtype``.

    Returns a ``Qwen2_5OmniThinkerForConditionalGeneration``. config.json is read first
    (:func:`hba_core.model.source.locate`): a missing model or one of another kind raises
    :class:`~hba_core.errors.InputError` naming ``flag`` before any weights are built.
    ``base_dirs``: directories a relative path may be relative to (besides the working directory).
    """
    from hba_core.model.source import locate

    _quiet_transformers()
    source = locate(name_or_path, base_dirs=base_dirs, flag=flag)
    model = choose_loader(source)(source, dtype=dtype, attn_implementation=attn_implementation)
    if device is not None:
        model.to(device)
    return model.eval()


def build_random_thinker(config: Any = None, *, dtype: str = "bfloat16") -> Any:
    """A Thinker with random weights (benchmarks: speed does not depend on weights).

    ``config`` defaults to the published Qwen2.5-Omni-7B Thinker configuration
    (:func:`hba_core.model.configs.qwen2_5_omni_7b_thinker`); nothing is downloaded.
    """
    from transformers import Qwen2_5OmniThinkerForConditionalGeneration

    _quiet_transformers()
    if config is None:
        from hba_core.model.configs import qwen2_5_omni_7b_thinker

        config = qwen2_5_omni_7b_thinker()
    return Qwen2_5OmniThinkerForConditionalGeneration._from_config(config, dtype=torch_dtype(dtype))


def load_processor(
    name_or_path: str = DEFAULT_MODEL, *, base_dirs: tuple[str, ...] = (), flag: str = "--base-model"
) -> Any:
    """The official ``Qwen2_5OmniProcessor`` (tokenizer, Whisper feature extractor, image/video processors)."""
    from transformers import Qwen2_5OmniProcessor

    from hba_core.errors import InputError
    from hba_core.model.source import locate

    _quiet_transformers()
    source = locate(name_or_path, base_dirs=base_dirs, flag=flag)
    try:
        processor = Qwen2_5OmniProcessor.from_pretrained(
            source.load_from, local_files_only=source.local_dir is not None
        )
    except OSError as exc:
        raise InputError(name_or_path, f"cannot load the Qwen2.5-Omni processor ({exc})") from None
    # Left padding everywhere: generation appends on the right, and teacher-forcing targets sit at each row's end.
    processor.tokenizer.padding_side = "left"
    return processor


def lora_target_regex(model: Any) -> str:
    """LoRA's ``target_modules`` for any backbone: the attention and MLP projections of the layers of the
    module ``model.get_decoder()`` returns (the LLM), found by identity among ``named_modules()``; encoders'
    modules of the same names lie elsewhere and never match. The Thinker's is :data:`LORA_TARGET_REGEX`'s set.
    """
    import re

    decoder = model.get_decoder()
    prefix = next((name for name, module in model.named_modules() if module is decoder), None)
    if prefix is None:  # get_decoder() is the model itself: a bare decoder
        raise ValueError(f"{type(model).__name__}: its decoder is not a submodule; cannot place LoRA on it")
    return re.escape(prefix) + LORA_TARGET_REGEX.removeprefix(".*language_model")


def add_lora(thinker: Any, settings: LoraSettings = LoraSettings()) -> Any:
    """Wrap a backbone (the Thinker or any :mod:`hba_core.model.backbones` family) in a peft ``PeftModel``
    with LoRA on its LLM's projections (:func:`lora_target_regex`); everything else frozen.

    LoRA's B matrices start at zero, so the wrapped model computes exactly what the base does.
    """
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=lora_target_regex(thinker),
        bias="none",
    )
    return get_peft_model(thinker, config)


def load_lora(thinker: Any, adapter_dir: str, *, trainable: bool = True) -> Any:
    """Wrap the Thinker with a saved peft adapter (``adapter_config.json`` + ``adapter_model.safetensors``)."""
    from peft import PeftModel

    return PeftModel.from_pretrained(thinker, adapter_dir, is_trainable=trainable)


def base_thinker(model: Any) -> Any:
    """The ``Qwen2_5OmniThinkerForConditionalGeneration`` inside a peft wrapper (or the model itself)."""
    from peft import PeftModel

    return model.get_base_model() if isinstance(model, PeftModel) else model

"""The backbones hba can run: one adapter per family, chosen from the checkpoint's ``config.json``.

Table 4 evaluates general multimodal LLMs zero-shot next to OmniSapiens. Each family loads through
its own transformers auto class and takes its own modalities:

========================  =========================================  ==========================
adapter                   loads with                                 takes
========================  =========================================  ==========================
``omni_thinker``          ``Qwen2_5OmniThinkerForConditionalGeneration``  text, image, video, audio
``image_text_to_text``    ``AutoModelForImageTextToText``             text, image (+ video, audio
                          (Qwen2.5-VL, Qwen3-VL, Gemma 3/3n/4,        when its processor has a
                          LLaVA-OneVision, ...)                       video processor / feature
                                                                      extractor)
``audio_lm``              ``AutoModelForMultimodalLM`` (Qwen2-Audio)   text, audio
``causal_lm``             ``AutoModelForCausalLM``                    text
========================  =========================================  ==========================

Qwen2-Audio is a decoder-only LM fed by a Whisper-style encoder, not an encoder-decoder: transformers
lists it under ``AutoModelForMultimodalLM`` (text + other media in, text out). Its name also sits in
transformers' seq2seq table (5.24), so ``AutoModelForSeq2SeqLM`` happens to load it as well; the
multimodal-LM class is the one that says what it is (``tests/test_any_model.py`` loads the tiny
Qwen2-Audio through it).

The choice is made from ``model_type`` alone, looked up in transformers' own auto-class tables, never
by trying loaders in turn: a directory of an unknown kind is refused in one line before any weights
exist. HumanOmniV2-7B loads through whichever adapter its ``model_type`` names.

>>> backbone_for({"model_type": "qwen2_5_vl"}).adapter
'image_text_to_text'
>>> backbone_for({"model_type": "qwen2"}).modalities
frozenset({'text'})
>>> backbone_for({"model_type": "qwen2_5_omni"}).adapter
'omni_thinker'
>>> backbone_for({"model_type": "qwen2_audio"}).auto_class
'AutoModelForMultimodalLM'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hba_core.errors import HbaError

OMNI_TYPES = frozenset({"qwen2_5_omni", "qwen2_5_omni_thinker"})
AUDIO_LM_TYPES = frozenset({"qwen2_audio"})
ADAPTERS = ("omni_thinker", "image_text_to_text", "audio_lm", "causal_lm")


class UnsupportedModelError(HbaError):
    """A model directory or hub id whose ``model_type`` no adapter serves."""


@dataclass(frozen=True)
class Backbone:
    """How hba runs one model family: the adapter's name, what it takes, and its transformers auto class."""

    adapter: str
    model_type: str
    modalities: frozenset[str]
    auto_class: str  # the transformers class that loads it

    def takes(self, modality: str) -> bool:
        return modality in self.modalities


def _auto_tables() -> tuple[dict[str, str], dict[str, str]]:
    from transformers.models.auto import modeling_auto

    return modeling_auto.MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES, modeling_auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES


def backbone_for(config: dict[str, Any], processor: Any = None) -> Backbone:
    """The adapter for a model whose ``config.json`` is ``config``; ``processor`` refines what it takes.

    An image-text model takes video when its processor has a video processor, audio when it has a
    feature extractor (Gemma 3n); without a processor only text and images are assumed.
    """
    model_type = str(config.get("model_type", ""))
    if model_type in OMNI_TYPES:
        return Backbone(
            "omni_thinker",
            model_type,
            frozenset({"text", "image", "video", "audio"}),
            "Qwen2_5OmniThinkerForConditionalGeneration",
        )
    if model_type in AUDIO_LM_TYPES:
        return Backbone("audio_lm", model_type, frozenset({"text", "audio"}), "AutoModelForMultimodalLM")
    image_text, causal = _auto_tables()
    if model_type in image_text:
        takes = {"text", "image"}
        if processor is not None and getattr(processor, "video_processor", None) is not None:
            takes.add("video")
        if processor is not None and getattr(processor, "feature_extractor", None) is not None:
            takes.add("audio")
        return Backbone("image_text_to_text", model_type, frozenset(takes), "AutoModelForImageTextToText")
    if model_type in causal:
        return Backbone("causal_lm", model_type, frozenset({"text"}), "AutoModelForCausalLM")
    raise UnsupportedModelError(
        f"model_type {model_type!r} is not a model hba can run; supported: Qwen2.5-Omni "
        f"({', '.join(sorted(OMNI_TYPES))}), Qwen2-Audio, any image-text-to-text model (Qwen2.5-VL, Qwen3-VL, "
        "Gemma 3/3n/4, LLaVA-OneVision, ...) and any causal LM that transformers' Auto classes know"
    )

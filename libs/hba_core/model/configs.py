"""Named model configurations: the published Qwen2.5-Omni-7B Thinker and Qwen2.5-VL-7B-Instruct sizes,
for benchmarks and planning.

transformers' ``Qwen2_5OmniThinkerConfig()`` defaults are *not* the released model: their vision tower
is 3,584 wide (3.08 B parameters, 11.34 B in all) and their LM head is tied to the embeddings. The
values below are those of ``thinker_config`` in ``Qwen/Qwen2.5-Omni-7B``'s config.json: a 1,280-wide,
32-block vision tower (0.68 B), a 1,280-wide, 32-layer audio encoder, and a 28-layer, 3,584-wide LLM
with its own LM head - 8.93 B parameters in all.

:data:`QWEN2_5_VL_7B_INSTRUCT` holds the values of ``Qwen/Qwen2.5-VL-7B-Instruct``'s config.json (Table 4's
Qwen2.5-VL-7B baseline): the same 1,280-wide, 32-block vision tower (0.68 B) and a 28-layer, 3,584-wide
Qwen2.5-7B LLM with its own LM head (7.62 B) - 8.29 B parameters in all (``tests/test_bench_predict_gpu.py``
counts them on the meta device).

>>> from hba_core.model.configs import QWEN2_5_OMNI_7B_THINKER
>>> QWEN2_5_OMNI_7B_THINKER["vision_config"]["hidden_size"], QWEN2_5_OMNI_7B_THINKER["text_config"]["num_hidden_layers"]
(1280, 28)
"""

from __future__ import annotations

import copy
from typing import Any

# thinker_config of Qwen/Qwen2.5-Omni-7B (config.json), the fields that fix the architecture and token ids.
QWEN2_5_OMNI_7B_THINKER: dict[str, Any] = {
    "audio_config": {
        "d_model": 1280,
        "encoder_layers": 32,
        "encoder_attention_heads": 20,
        "encoder_ffn_dim": 5120,
        "num_mel_bins": 128,
        "max_source_positions": 1500,
        "n_window": 100,
        "output_dim": 3584,
    },
    "vision_config": {
        "depth": 32,
        "hidden_size": 1280,
        "intermediate_size": 3420,
        "num_heads": 16,
        "in_channels": 3,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "window_size": 112,
        "out_hidden_size": 3584,
        "fullatt_block_indexes": [7, 15, 23, 31],
    },
    "text_config": {
        "vocab_size": 152064,
        "hidden_size": 3584,
        "intermediate_size": 18944,
        "num_hidden_layers": 28,
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-6,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
        "tie_word_embeddings": False,
        "pad_token_id": 151643,
        "eos_token_id": 151645,
    },
    "audio_token_index": 151646,
    "image_token_index": 151655,
    "video_token_index": 151656,
    "audio_start_token_id": 151647,
    "audio_end_token_id": 151648,
    "vision_start_token_id": 151652,
    "vision_end_token_id": 151653,
    "user_token_id": 872,
    "position_id_per_seconds": 25,
    "seconds_per_chunk": 2,
    "tie_word_embeddings": False,
}


# Qwen/Qwen2.5-VL-7B-Instruct's config.json. The hub file is flat (the LLM's fields at the top level,
# "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]}, rope_theta 1e6); here they are nested
# as transformers 5 reads them (text_config, rope_parameters). vision_config is the hub's verbatim but for
# "in_chans"/"spatial_patch_size", which transformers names in_channels/patch_size. Token ids are the real
# ones (pad = <|endoftext|>, as its generation_config pads).
QWEN2_5_VL_7B_INSTRUCT: dict[str, Any] = {
    "text_config": {
        "vocab_size": 152064,
        "hidden_size": 3584,
        "intermediate_size": 18944,
        "num_hidden_layers": 28,
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "hidden_act": "silu",
        "max_position_embeddings": 128000,
        "max_window_layers": 28,
        "sliding_window": 32768,
        "use_sliding_window": False,
        "rms_norm_eps": 1e-6,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
        "tie_word_embeddings": False,
        "bos_token_id": 151643,
        "eos_token_id": 151645,
        "pad_token_id": 151643,
    },
    "vision_config": {
        "depth": 32,
        "hidden_act": "silu",
        "hidden_size": 1280,
        "intermediate_size": 3420,
        "num_heads": 16,
        "in_channels": 3,
        "out_hidden_size": 3584,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "window_size": 112,
        "fullatt_block_indexes": [7, 15, 23, 31],
        "tokens_per_second": 2,
    },
    "image_token_id": 151655,
    "video_token_id": 151656,
    "vision_start_token_id": 151652,
    "vision_end_token_id": 151653,
    "tie_word_embeddings": False,
}


def qwen2_5_vl_7b_instruct(**overrides: Any) -> Any:
    """``Qwen2_5_VLConfig`` of Qwen2.5-VL-7B-Instruct; ``overrides`` replace top-level fields (token ids of
    a local tokenizer, say) or, under ``text_config`` / ``vision_config``, update those dictionaries.

    Build it without memory on the meta device::

        with torch.device("meta"):
            model = Qwen2_5_VLForConditionalGeneration._from_config(qwen2_5_vl_7b_instruct())
    """
    from transformers import Qwen2_5_VLConfig

    values = copy.deepcopy(QWEN2_5_VL_7B_INSTRUCT)
    for key, value in overrides.items():
        if key in ("text_config", "vision_config"):
            values[key].update(value)
        else:
            values[key] = value
    return Qwen2_5_VLConfig(**values)


def reduced_qwen2_5_vl_7b(*, layers: int = 1, width: int = 64, **overrides: Any) -> Any:
    """Qwen2.5-VL-7B's structure at toy sizes (both towers ``layers`` deep, ``width`` wide): runs on CPU.

    Used to run the GPU predict benchmark end to end in tests; the vocabulary stays the real 152,064.
    """
    heads = 4
    text = {
        "hidden_size": width,
        "intermediate_size": 2 * width,
        "num_hidden_layers": layers,
        "max_window_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": 2,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": mrope_section(width // heads)},
    }
    vision = {
        "depth": layers,
        "hidden_size": width,
        "intermediate_size": 2 * width,
        "num_heads": 2,
        "out_hidden_size": width,
        "fullatt_block_indexes": list(range(layers)),
    }
    text.update(overrides.pop("text_config", {}))
    vision.update(overrides.pop("vision_config", {}))
    return qwen2_5_vl_7b_instruct(text_config=text, vision_config=vision, **overrides)


def qwen2_5_omni_7b_thinker(**text_overrides: Any) -> Any:
    """``Qwen2_5OmniThinkerConfig`` of the released 7B Thinker; ``text_overrides`` change the LLM
    (e.g. ``num_hidden_layers=2`` for a reduced copy that keeps the real encoders' widths).

    Build it without memory on the meta device::

        with torch.device("meta"):
            model = Qwen2_5OmniThinkerForConditionalGeneration._from_config(qwen2_5_omni_7b_thinker())
    """
    from transformers import Qwen2_5OmniThinkerConfig

    values = copy.deepcopy(QWEN2_5_OMNI_7B_THINKER)
    values["text_config"].update(text_overrides)
    return Qwen2_5OmniThinkerConfig(**values)


def reduced_7b_thinker(*, layers: int = 1, width: int = 64) -> Any:
    """The 7B Thinker's structure at toy sizes (every tower ``layers`` deep, ``width`` wide): runs on CPU.

    Used to run GPU benchmarks end to end in tests; token ids stay the real ones, so the vocabulary is
    the real 152,064 (an embedding of 152,064 x ``width``).
    """
    from transformers import Qwen2_5OmniThinkerConfig

    values = copy.deepcopy(QWEN2_5_OMNI_7B_THINKER)
    heads = 4
    head_dim = width // heads
    values["audio_config"].update(
        d_model=width, encoder_layers=layers, encoder_attention_heads=2, encoder_ffn_dim=2 * width, output_dim=width
    )
    values["vision_config"].update(
        depth=layers,
        hidden_size=width,
        intermediate_size=2 * width,
        num_heads=2,
        out_hidden_size=width,
        fullatt_block_indexes=list(range(layers)),
    )
    values["text_config"].update(
        hidden_size=width,
        intermediate_size=2 * width,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=2,
        rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": mrope_section(head_dim)},
    )
    return Qwen2_5OmniThinkerConfig(**values)


def mrope_section(head_dim: int) -> list[int]:
    """Split the rotary half-dimension into (temporal, height, width) like Qwen's 16/24/24 of 64.

    The three parts must sum to ``head_dim // 2``; the temporal part gets 1/4, the spatial parts share
    the rest (height gets the odd one).

    >>> mrope_section(128), mrope_section(16), mrope_section(128 // 2)
    ([16, 24, 24], [2, 3, 3], [8, 12, 12])
    """
    half = head_dim // 2
    if half < 3:
        raise ValueError(f"head size {head_dim} is too small for 3 rotary sections")
    temporal = max(1, half // 4)
    rest = half - temporal
    return [temporal, rest - rest // 2, rest // 2]

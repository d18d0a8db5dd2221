"""The audio stream: OpenSMILE ComParE 2016 low-level descriptors, 65 values per 10 ms frame.

Audio is decoded by :func:`hba_core.media.decode_audio` (16 kHz mono float32, PyAV, no ffmpeg
binary) from a wav or a video's audio track, then run through OpenSMILE as-is.

>>> import numpy as np
>>> lld = compare_lld(np.zeros(16_000, np.float32))
>>> lld.shape[1]
65
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from hba_core.media import SAMPLE_RATE  # the one rate every decoder and writer uses

HOP_SECONDS = 0.01  # ComParE 2016 LLDs: 10 ms hop (60 ms window for the spectral ones)
AUDIO_DIM = 65


@lru_cache(maxsize=1)
def _smile() -> Any:  # opensmile.Smile; one per process (it holds the parsed config)
    import opensmile

    return opensmile.Smile(
        feature_set=opensmile.FeatureSet.ComParE_2016, feature_level=opensmile.FeatureLevel.LowLevelDescriptors
    )


def audio_columns() -> list[str]:
    """The 65 ComParE 2016 LLD names, in the column order of the stored frames."""
    return list(_smile().feature_names)


def compare_lld(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """ComParE 2016 LLDs of a mono float32 signal: ``(T, 65)`` float32, one row per 10 ms.

    OpenSMILE always produces a value, so every audio frame is valid; a signal shorter than one
    analysis window gives ``(0, 65)``.
    """
    if audio.size == 0:
        return np.zeros((0, AUDIO_DIM), np.float32)
    frame = _smile().process_signal(audio, sample_rate)
    values = frame.to_numpy(dtype=np.float32)  # (T, 65)
    if values.shape[1] != AUDIO_DIM:  # a different opensmile config would silently change the layout
        raise RuntimeError(f"OpenSMILE returned {values.shape[1]} LLD columns, expected {AUDIO_DIM}")
    return values


def audio_config() -> dict[str, Any]:
    """The stream's description for the store attributes."""
    return {
        "dim": AUDIO_DIM,
        "source": "opensmile ComParE_2016 LowLevelDescriptors",
        "sample_rate": SAMPLE_RATE,
        "hop_seconds": HOP_SECONDS,
        "columns": audio_columns(),
    }

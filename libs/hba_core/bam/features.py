"""Per-sample descriptor vectors for the BAM adapters, read from the descriptor store's pooled arrays.

A dataset gets one adapter per modality it has (paper C.1): ``audio`` reads the OpenSMILE stream,
``video`` reads the MediaPipe face and pose streams side by side ([face mean, face std, pose mean,
pose std]). The audio of a sample is its audio file, or its video's own track when it has none (the
store keeps both under the media path). A clip with no valid frames in a stream is marked invalid:
its adapter adds nothing. Within the video vector, a part with no valid frames (a face but no pose) is
left NaN and becomes the training mean after normalisation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hba_core import registry
from hba_core.errors import HbaError

BAM_STREAMS: dict[str, tuple[str, ...]] = {"audio": ("audio",), "video": ("face", "pose")}


@dataclass
class StreamFeatures:
    """(N, D_feat) float32 with NaN where unknown, (N,) bool validity, and what was missing."""

    values: np.ndarray
    valid: np.ndarray
    no_valid_frames: int = 0
    not_in_store: list[str] = field(default_factory=list)


def adapter_streams(dataset: str, requested: tuple[str, ...] = ("audio", "video")) -> tuple[str, ...]:
    """The adapters a dataset gets: the requested ones among the modalities it has (MMPsy: none)."""
    for name in requested:
        if name not in BAM_STREAMS:
            raise HbaError(f"unknown BAM stream {name!r}; valid: {', '.join(BAM_STREAMS)}")
    modalities = registry.dataset(dataset).modalities
    return tuple(name for name in requested if name in modalities)


def media_key(sample: dict[str, Any], adapter: str) -> str | None:
    """The store key that holds this sample's descriptors for ``adapter``."""
    videos, audios = sample.get("videos") or [], sample.get("audios") or []
    if adapter == "video":
        return videos[0] if videos else None
    return audios[0] if audios else (videos[0] if videos else None)


def sample_features(store: Any, samples: list[dict[str, Any]], adapter: str) -> StreamFeatures:
    """The adapter's input for each sample, from ``hba_core.descriptors.store.pooled``."""
    from hba_core.descriptors.store import pooled

    keys = [media_key(s, adapter) for s in samples]
    parts, counts = [], []
    missing: set[str] = set()
    for stream in BAM_STREAMS[adapter]:
        if stream not in store.streams:
            raise HbaError(
                f"descriptor store {store.path} has no {stream!r} stream; "
                f"run hba-descriptors extract --streams {','.join(BAM_STREAMS[adapter])}"
            )
        present = store.index(stream)
        missing.update(k for k in keys if k is not None and k not in present)
        values, valid_counts = pooled(store, stream, [k or "" for k in keys], missing="nan")
        parts.append(values)
        counts.append(valid_counts)
    values = np.concatenate(parts, axis=1)  # (N, D_feat)
    valid = np.stack(counts, axis=1).sum(axis=1) > 0  # (N,)
    lacking = int(sum(1 for k, ok in zip(keys, valid) if k is not None and k not in missing and not ok))
    return StreamFeatures(values.astype(np.float32), valid, no_valid_frames=lacking, not_in_store=sorted(missing))

"""Looking into a store: coverage statistics, one clip, and pooled vectors per sample (what the BAM adapter reads).

>>> SAMPLE_MEDIA["audio"]
('audios', 'videos')
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hba_core.descriptors.store import DescriptorStore, pooled
from hba_core.jsonl import PathLike
from hba_core.samples import iter_samples

# Which media of a sample feed each stream, in order of preference: audio from the audio file, else the video's track.
SAMPLE_MEDIA: dict[str, tuple[str, ...]] = {
    "face": ("videos",),
    "pose": ("videos",),
    "audio": ("audios", "videos"),
    "ext_video": ("ext_video_feats",),
    "ext_audio": ("ext_audio_feats",),
}


def stats(store: DescriptorStore) -> list[dict[str, Any]]:
    """One row per (dataset, stream): clips, frames, frames without a detection, clips with none, errors."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for stream in store.streams:
        n, _ = store.counts(stream)
        if n == 0:
            continue
        datasets = store.column(stream, "datasets")
        lengths = store.column(stream, "lengths")
        counts = store.column(stream, "valid_counts")
        for dataset in sorted(set(map(str, datasets))):
            mine = datasets == dataset
            rows[(dataset, stream)] = {
                "dataset": dataset,
                "stream": stream,
                "clips": int(mine.sum()),
                "frames": int(lengths[mine].sum()),
                "invalid_frames": int((lengths[mine] - counts[mine]).sum()),
                "clips_without_valid_frames": int((counts[mine] == 0).sum()),
                "errors": 0,
            }
    datasets_of = {
        str(k): str(d) for s in store.streams for k, d in zip(store.column(s, "keys"), store.column(s, "datasets"))
    }
    for error in store.errors():
        dataset = datasets_of.get(error["key"], "unknown")
        row = rows.setdefault(
            (dataset, error["stream"]),
            {
                "dataset": dataset,
                "stream": error["stream"],
                "clips": 0,
                "frames": 0,
                "invalid_frames": 0,
                "clips_without_valid_frames": 0,
                "errors": 0,
            },
        )
        row["errors"] += 1
    return [rows[k] for k in sorted(rows)]


def show(store: DescriptorStore, key: str) -> dict[str, Any]:
    """Everything stored about one media key: per stream frame count, valid count, pooled vector; errors."""
    out: dict[str, Any] = {"key": key, "streams": {}, "errors": [e for e in store.errors() if e["key"] == key]}
    for stream in store.streams:
        if key in store.index(stream):
            values, valid = store.frames(stream, key)
            vector, count = pooled(store, stream, [key])
            out["streams"][stream] = {
                "frames": int(values.shape[0]),
                "valid": int(valid.sum()),
                "pooled": [None if np.isnan(x) else float(x) for x in vector[0]],
                "valid_counts": int(count[0]),
            }
    return out


def sample_vectors(
    store: DescriptorStore, samples: PathLike, streams: tuple[str, ...]
) -> tuple[list[str], dict[str, tuple[np.ndarray, np.ndarray]], int]:
    """Pooled vectors per sample: ``(ids, {stream: (float32 (n, 2D), valid counts (n,))}, missing)``.

    A sample without the media, or whose media is not in the store, gets a NaN row and count 0;
    ``missing`` counts those (sample, stream) pairs so a caller can report them.
    """
    ids: list[str] = []
    keys: dict[str, list[str]] = {s: [] for s in streams}
    for _, sample in iter_samples(samples, media=True):
        ids.append(sample["id"])
        for stream in streams:
            media = [m for f in SAMPLE_MEDIA.get(stream, ()) for m in (sample.get(f) or [])]
            keys[stream].append(media[0] if media else "")
    out, missing = {}, 0
    for stream in streams:
        matrix, counts = pooled(store, stream, keys[stream], missing="nan")
        present = store.index(stream)
        missing += sum(1 for k in keys[stream] if k not in present)
        out[stream] = (matrix, counts)
    return ids, out, missing

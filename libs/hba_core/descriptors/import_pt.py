"""Import the official release's pre-extracted ``.pt`` features into a descriptor store.

Samples of the release name per-clip feature files in ``ext_video_feats`` and ``ext_audio_feats``
(paths relative to the release root). Each file holds one tensor ``(T, D)`` (a ``(D,)`` tensor is
one frame). They become the streams ``ext_video`` and ``ext_audio`` of the usual layout, with the
pooled ``[mean, std]`` computed the same way as for extracted descriptors. Files are read with
``torch.load(weights_only=True)`` only: a feature file from the internet is never allowed to run code.

>>> PT_STREAMS
{'ext_video': 'ext_video_feats', 'ext_audio': 'ext_audio_feats'}
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from hba_core.descriptors.store import ClipResult, DescriptorStore
from hba_core.errors import MediaError
from hba_core.jsonl import PathLike
from hba_core.media import resolve_media
from hba_core.samples import iter_samples

PT_STREAMS = {"ext_video": "ext_video_feats", "ext_audio": "ext_audio_feats"}


@dataclass
class ImportSummary:
    files: int = 0  # distinct feature files referenced
    skipped: int = 0  # already in the store
    imported: int = 0
    errors: list[tuple[str, str, str]] = field(default_factory=list)


def load_feature_file(path: str) -> np.ndarray:
    """One ``.pt`` feature file as float32 ``(T, D)``; anything but a 1-D/2-D tensor raises MediaError."""
    import pickle

    import torch

    try:
        value = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise MediaError(path, "feature file not found") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as exc:
        raise MediaError(path, f"cannot load with torch.load(weights_only=True) ({str(exc).splitlines()[0]})") from None
    if not isinstance(value, torch.Tensor) or value.ndim not in (1, 2):
        kind = f"a {value.ndim}-D tensor" if isinstance(value, torch.Tensor) else type(value).__name__
        raise MediaError(path, f"expected a (T, D) or (D,) tensor, found {kind}")
    array = value.detach().to(torch.float32).numpy()
    return array.reshape(1, -1) if array.ndim == 1 else array


def import_pt(
    samples: PathLike,
    root: PathLike,
    store_path: PathLike,
    *,
    batch: int = 1000,
    progress: Callable[[int, int], None] | None = None,
) -> ImportSummary:
    """Import every feature file the samples name into ``store_path`` (resumable: stored files are skipped)."""
    summary = ImportSummary()
    files: dict[str, dict[str, str]] = {s: {} for s in PT_STREAMS}  # stream -> key -> dataset
    for _, sample in iter_samples(samples):
        for stream, field_name in PT_STREAMS.items():
            for key in sample.get(field_name) or []:
                files[stream].setdefault(key, str(sample.get("dataset", "unknown")))
    summary.files = sum(len(k) for k in files.values())
    total = 0
    with DescriptorStore.open_for_writing(
        store_path, {}, {"created_by": "hba-descriptors import-pt", "shard": None}
    ) as store:
        for stream, keys in files.items():
            done = store.done(stream)
            todo = [(k, d) for k, d in keys.items() if k not in done]
            summary.skipped += len(keys) - len(todo)
            buffer: list[ClipResult] = []
            for key, dataset in todo:
                buffer.append(_load_clip(store, stream, key, dataset, root))
                total += 1
                if len(buffer) >= batch:
                    _commit(store, buffer, summary)
                if progress:
                    progress(total, summary.files - summary.skipped)
            _commit(store, buffer, summary)
    return summary


def _load_clip(store: DescriptorStore, stream: str, key: str, dataset: str, root: PathLike) -> ClipResult:
    try:
        values = load_feature_file(str(resolve_media(root, key)))
    except MediaError as exc:
        return ClipResult(key, dataset, errors={stream: exc.message})
    config = store.streams.get(stream)
    if config is None:  # the first file fixes the stream's width
        source = f"official release .pt ({PT_STREAMS[stream]})"
        store.add_streams({stream: {"dim": int(values.shape[1]), "source": source}})
    elif config["dim"] != values.shape[1]:
        return ClipResult(
            key, dataset, errors={stream: f"has {values.shape[1]} features per frame, the stream has {config['dim']}"}
        )
    return ClipResult(key, dataset, {stream: (values, ~np.isnan(values).any(axis=1))})


def _commit(store: DescriptorStore, buffer: list[ClipResult], summary: ImportSummary) -> None:
    if not buffer:
        return
    store.append(buffer)
    for clip in buffer:
        summary.imported += bool(clip.streams)
        summary.errors.extend((clip.key, s, r) for s, r in clip.errors.items())
    buffer.clear()

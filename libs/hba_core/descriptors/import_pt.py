"""Import the official release's pre-extracted ``.pt`` features into a descriptor store.

Samples of the release name per-clip feature files in ``ext_video_feats`` and ``ext_audio_feats``:
paths relative to the release root (v1 JSONL, or after ``hba-convert import``), or ``.pt`` bytes in
the cells of a v2 Parquet shard (read straight from the shard, :mod:`hba_core.sources`). A file holds
one of the layouts the reference's readers (``training/sft/models/bam_utils.py``) expect:

- keypoints: a dict of parts ``{"pose": (T, 33, C), "face": (T, 478, C), "left_hand": (T, 21, C),
  "right_hand": (T, 21, C)}``, each part optional, C = 2 (x, y) or 3 (x, y, confidence). Each part
  becomes its own stream (``ext_pose``, ``ext_face``, ``ext_left_hand``, ``ext_right_hand``), T frames
  of K*C values (landmark-major: ``k0_x, k0_y, k0_c, k1_x, ...``), so nothing of a part is lost and
  a part absent from a file is simply absent from that stream;
- functionals: ``{"features": (T, D)}`` (OpenSMILE ComParE, T = 1, D = 6373) -> stream ``ext_audio``;
- a bare tensor ``(T, D)`` or ``(D,)`` (older exports) -> ``ext_video`` / ``ext_audio`` by field.

A frame is valid when all its values are finite; pooled ``[mean, std]`` are over valid frames only,
and ``valid_counts`` is the per-part validity mask (0: the part has no usable frame). Other dict keys
are ignored, as the reference ignores them. Files are read with ``torch.load(weights_only=True)``
only (from a BytesIO for shard cells): a feature file from the internet is never allowed to run code.
A file that is neither a dict of the known parts nor a tensor is one reported error naming the file
(or shard and row) and the sample that uses it; the other files and parts are imported.

>>> feature_key("parquet:///data/test-00000-of-00001.parquet#4/ext_video_feats/0")
'test-00000-of-00001.parquet#4/ext_video_feats/0'
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hba_core.descriptors.store import ClipResult, DescriptorStore
from hba_core.errors import MediaError
from hba_core.jsonl import PathLike

PT_FIELDS = {"ext_video_feats": "ext_video", "ext_audio_feats": "ext_audio"}  # field -> bare-tensor stream
PT_STREAMS = {stream: field_name for field_name, stream in PT_FIELDS.items()}
KEYPOINT_PARTS = ("pose", "face", "left_hand", "right_hand")  # the reference's concatenation order
PART_STREAMS = {part: f"ext_{part}" for part in KEYPOINT_PARTS}
FIELD_STREAMS = {"ext_video_feats": ("ext_video", *PART_STREAMS.values()), "ext_audio_feats": ("ext_audio",)}


@dataclass
class ImportSummary:
    files: int = 0  # distinct feature files referenced
    skipped: int = 0  # already in the store
    imported: int = 0  # files with at least one stream stored
    errors: list[tuple[str, str, str]] = field(default_factory=list)  # (store key, stream, reason)
    used_by: dict[str, str] = field(default_factory=dict)  # store key of a failed file -> "sample <id>, <file:line>"


def feature_key(ref: str) -> str:
    """The store key of a feature file: its path as the samples write it; a shard cell by shard name and cell.

    Shard cells are keyed without the shard's folder so the store stays valid when the release moves.
    """
    from hba_core.sources import is_cell_ref, parse_cell_ref

    if not is_cell_ref(ref):
        return ref
    shard, row, column, index = parse_cell_ref(ref)
    return f"{Path(shard).name}#{row}/{column}/{index}"


def _array(value: Any, what: str) -> np.ndarray:
    import torch

    if not isinstance(value, torch.Tensor):
        try:
            value = torch.as_tensor(value)
        except (TypeError, ValueError, RuntimeError):
            raise ValueError(f"{what} is a {type(value).__name__}, not a tensor") from None
    return value.detach().to(torch.float32).cpu().numpy()


def _frames(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return values, np.isfinite(values).all(axis=1)


def decode_features(value: Any, field_name: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """A loaded ``.pt`` value as ``({stream: frames (T, D)}, {stream: why a part was refused})``.

    Raises :class:`ValueError` when the value is neither a tensor nor a dict of the known parts.

    >>> import torch
    >>> parts, bad = decode_features({"pose": torch.zeros(2, 33, 3), "face": torch.zeros(2, 478, 2)}, "ext_video_feats")
    >>> {k: v.shape for k, v in parts.items()}, bad
    ({'ext_pose': (2, 99), 'ext_face': (2, 956)}, {})
    """
    import torch

    if isinstance(value, torch.Tensor):
        array = _array(value, "the tensor")
        if array.ndim not in (1, 2):
            raise ValueError(f"expected a (T, D) or (D,) tensor, found a {array.ndim}-D tensor")
        return {PT_FIELDS[field_name]: array.reshape(1, -1) if array.ndim == 1 else array}, {}
    if not isinstance(value, dict):
        raise ValueError(
            f"expected a dict of {', '.join(KEYPOINT_PARTS)} or 'features', or a tensor; found a {type(value).__name__}"
        )
    parts: dict[str, np.ndarray] = {}
    refused: dict[str, str] = {}
    if "features" in value:
        array = _array(value["features"], "'features'")
        if array.ndim not in (1, 2) or array.size == 0:
            refused["ext_audio"] = f"'features' has shape {array.shape}, expected (T, D) or (D,)"
        else:
            parts["ext_audio"] = array.reshape(1, -1) if array.ndim == 1 else array
    for part in KEYPOINT_PARTS:
        if part not in value:
            continue
        stream = PART_STREAMS[part]
        try:
            array = _array(value[part], f"part {part!r}")
        except ValueError as exc:
            refused[stream] = str(exc)
            continue
        if array.ndim != 3 or array.shape[-1] not in (2, 3):
            refused[stream] = f"part {part!r} has shape {array.shape}, expected (T, K, 2) or (T, K, 3)"
            continue
        parts[stream] = array.reshape(array.shape[0], -1)
    if not parts and not refused:
        keys = ", ".join(repr(k) for k in list(value)[:8]) or "none"
        raise ValueError(f"a dict without any of {', '.join(KEYPOINT_PARTS)} or 'features' (keys: {keys})")
    return parts, refused


def load_feature_value(ref: str, root: PathLike) -> Any:
    """``torch.load(weights_only=True)`` of one feature file or shard cell; unreadable -> :class:`MediaError`."""
    import pickle

    import torch

    from hba_core.media import resolve_media
    from hba_core.sources import check_cell_ref, is_cell_ref, read_cell

    # a cell of a shard not read here as samples (a JSONL naming it) must lie under the root, like a path
    source: Any = (
        io.BytesIO(read_cell(check_cell_ref(ref, root))) if is_cell_ref(ref) else str(resolve_media(root, ref))
    )
    try:
        return torch.load(source, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise MediaError(ref, "feature file not found") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as exc:
        raise MediaError(ref, f"cannot load with torch.load(weights_only=True) ({str(exc).splitlines()[0]})") from None


def _decode_or_raise(value: Any, field_name: str, ref: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    try:
        return decode_features(value, field_name)
    except ValueError as exc:
        raise MediaError(ref, str(exc)) from None


def _used_by(ref: str, use: tuple[str, str, str]) -> str:
    """Who needs the file: ``sample <id>, <samples file:line>`` - for a cell, ``<shard>:<row> <column>[i]``."""
    from hba_core.sources import cell_label, is_cell_ref

    place = cell_label(ref) if is_cell_ref(ref) else use[0]
    return f"sample {use[1]}, {place}"


def import_pt(
    samples: PathLike,
    root: PathLike,
    store_path: PathLike,
    *,
    batch: int = 1000,
    progress: Callable[[int, int], None] | None = None,
) -> ImportSummary:
    """Import every feature file the samples name into ``store_path`` (resumable: stored files are skipped).

    ``samples`` is anything :func:`hba_core.sources.iter_source` reads (JSONL, a shard, a glob, a release).
    """
    from hba_core.jsonl import display_name
    from hba_core.samples import iter_samples

    summary = ImportSummary()
    files: dict[str, dict[str, tuple[str, str, str]]] = {f: {} for f in PT_FIELDS}  # field -> ref -> first use
    name = display_name(samples)
    for line, sample in iter_samples(samples, media=True):
        for field_name in PT_FIELDS:
            refs = sample.get(field_name) or []
            if isinstance(refs, str):  # one path given as a string, not a list of one
                refs = [refs]
            for ref in refs:
                use = (f"{name}:{line}", str(sample["id"]), str(sample.get("dataset", "unknown")))
                files[field_name].setdefault(ref, use)
    summary.files = sum(len(k) for k in files.values())
    total = 0
    with DescriptorStore.open_for_writing(
        store_path, {}, {"created_by": "hba-descriptors import-pt", "shard": None}
    ) as store:
        for field_name, refs in files.items():
            done = set().union(*(store.done(s) for s in FIELD_STREAMS[field_name]))
            todo = [(r, u) for r, u in refs.items() if feature_key(r) not in done]
            summary.skipped += len(refs) - len(todo)
            uses = {feature_key(r): _used_by(r, u) for r, u in todo}
            buffer: list[ClipResult] = []
            for ref, use in todo:
                buffer.append(_load_clip(store, field_name, ref, use, root))
                total += 1
                if len(buffer) >= batch:
                    _commit(store, buffer, summary, uses)
                if progress:
                    progress(total, summary.files - summary.skipped)
            _commit(store, buffer, summary, uses)
    return summary


def _load_clip(
    store: DescriptorStore, field_name: str, ref: str, use: tuple[str, str, str], root: PathLike
) -> ClipResult:
    key, dataset = feature_key(ref), use[2]
    try:
        parts, refused = _decode_or_raise(load_feature_value(ref, root), field_name, ref)
    except MediaError as exc:
        return ClipResult(key, dataset, errors={PT_FIELDS[field_name]: exc.message})
    clip = ClipResult(key, dataset, errors=dict(refused))
    for stream, values in parts.items():
        config = store.streams.get(stream)
        if config is None:  # the first file fixes the stream's width
            source = f"official release .pt ({field_name})"
            store.add_streams({stream: {"dim": int(values.shape[1]), "source": source}})
        elif config["dim"] != values.shape[1]:
            clip.errors[stream] = f"has {values.shape[1]} features per frame, the stream has {config['dim']}"
            continue
        clip.streams[stream] = _frames(values)
    return clip


def _commit(store: DescriptorStore, buffer: list[ClipResult], summary: ImportSummary, uses: dict[str, str]) -> None:
    if not buffer:
        return
    store.append(buffer)
    for clip in buffer:
        summary.imported += bool(clip.streams)
        summary.errors.extend((clip.key, s, r) for s, r in clip.errors.items())
        if clip.errors:
            summary.used_by[clip.key] = uses[clip.key]
    buffer.clear()

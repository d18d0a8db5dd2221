"""Per-sample descriptor vectors for the BAM adapters, read from the descriptor store's pooled arrays.

A dataset gets one adapter per modality it has (paper C.1): ``audio`` reads the OpenSMILE stream,
``video`` reads the MediaPipe face and pose streams side by side ([face mean, face std, pose mean,
pose std]). The audio of a sample is its audio file, or its video's own track when it has none (the
store keeps both under the media path). A clip with no valid frames in a stream is marked invalid:
its adapter adds nothing. Within the video vector, a part with no valid frames (a face but no pose) is
left NaN; the adapter's normaliser skips NaN when it is fitted, and a NaN entry becomes 0 after the
z-score, i.e. the training mean.

``features="reference"`` builds the reference repository's BAM input instead, from the release's
``.pt`` features (``hba-descriptors import-pt``), exactly as its ``bam_utils.py`` and ``run_bam.sh`` do:

- ``video`` (3,318 values): the keypoint parts present in the sample's first ``ext_video_feats`` file,
  in the order pose, face, left_hand, right_hand, each frame flattened landmark-major with every
  channel kept (x, y and the confidence, ``use_conf=True``); temporal [mean of all parts, std of all
  parts] (population std); no normalisation. A missing part is *skipped*, so the parts after it move
  forward, and the vector is zero-padded (or truncated) at the end to 3,318 - the reference's
  ``_pad_trunc_1d``. With all four parts of 3 channels: 2 x (33 + 478 + 21 + 21) x 3 = 3,318.
- ``audio`` (6,373 values): the ComParE functionals of the first ``ext_audio_feats`` file (T = 1;
  the mean over frames when a file has more), divided by their L2 norm (clamped at 1e-6) per
  sample, then padded or truncated to 6,373.

A sample without the file, or whose file has no usable part, is invalid: its adapter adds nothing
(the reference drops the features of the whole batch instead).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hba_core import registry
from hba_core.errors import HbaError

BAM_STREAMS: dict[str, tuple[str, ...]] = {"audio": ("audio",), "video": ("face", "pose")}
FEATURE_SETS = ("hba", "reference")
REFERENCE_DIMS = {"video": 3318, "audio": 6373}  # run_bam.sh: --d_video_feat 3318 --d_audio_feat 6373
REFERENCE_STREAMS: dict[str, tuple[str, ...]] = {
    "video": ("ext_pose", "ext_face", "ext_left_hand", "ext_right_hand"),
    "audio": ("ext_audio",),
}
REFERENCE_FIELDS = {"video": "ext_video_feats", "audio": "ext_audio_feats"}


@dataclass
class StreamFeatures:
    """(N, D_feat) float32 with NaN where unknown, (N,) bool validity, and what was missing."""

    values: np.ndarray
    valid: np.ndarray
    no_valid_frames: int = 0
    not_in_store: list[str] = field(default_factory=list)
    no_file: int = 0  # samples that name no media / feature file for this adapter


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


def sample_features(store: Any, samples: list[dict[str, Any]], adapter: str, features: str = "hba") -> StreamFeatures:
    """The adapter's input for each sample, from ``hba_core.descriptors.store.pooled``.

    ``features``: ``hba`` (hba's own descriptors) or ``reference`` (the release's, as the reference builds them).
    """
    from hba_core.descriptors.store import pooled

    if features not in FEATURE_SETS:
        raise HbaError(f"unknown BAM feature set {features!r}; valid: {', '.join(FEATURE_SETS)}")
    if features == "reference":
        return reference_features(store, samples, adapter)
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
    return StreamFeatures(
        values.astype(np.float32),
        valid,
        no_valid_frames=lacking,
        not_in_store=sorted(missing),
        no_file=sum(k is None for k in keys),
    )


def reference_key(sample: dict[str, Any], adapter: str) -> str | None:
    """The store key of the sample's first release ``.pt`` file for ``adapter`` (the reference reads only the first)."""
    from hba_core.descriptors.import_pt import feature_key

    refs = sample.get(REFERENCE_FIELDS[adapter]) or []
    if isinstance(refs, str):
        refs = [refs]
    return feature_key(refs[0]) if refs else None


def _fit(vector: np.ndarray, dim: int) -> np.ndarray:
    """The reference's ``_pad_trunc_1d``: zero-pad or cut at the end to ``dim``."""
    out = np.zeros(dim, np.float32)
    out[: min(dim, vector.size)] = vector[:dim]
    return out


def reference_features(store: Any, samples: list[dict[str, Any]], adapter: str) -> StreamFeatures:
    """The reference's BAM input (see the module docstring), from the release streams of the store."""
    from hba_core.descriptors.store import pooled

    streams = [s for s in REFERENCE_STREAMS[adapter] if s in store.streams]
    if not streams:
        raise HbaError(
            f"descriptor store {store.path} has none of the release streams {', '.join(REFERENCE_STREAMS[adapter])}; "
            "run hba-descriptors import-pt on the release samples"
        )
    keys = [reference_key(s, adapter) for s in samples]
    part_values, part_counts = [], []
    known: set[str] = set()
    for stream in streams:
        known.update(store.index(stream))
        values, counts = pooled(store, stream, [k or "" for k in keys], missing="nan")
        part_values.append(values)  # (N, 2 D_part): [mean, std]
        part_counts.append(counts)
    dim = REFERENCE_DIMS[adapter]
    out = np.zeros((len(samples), dim), np.float32)
    valid = np.zeros(len(samples), bool)
    for i in range(len(samples)):
        present = [v[i] for v, c in zip(part_values, part_counts) if c[i] > 0]  # skipped parts move the rest up
        if not present:
            continue
        means = np.concatenate([v[: v.size // 2] for v in present])
        if adapter == "audio":
            vector = means / max(float(np.linalg.norm(means.astype(np.float64))), 1e-6)  # audio_norm l2
        else:
            vector = np.concatenate([means, np.concatenate([v[v.size // 2 :] for v in present])])
        out[i], valid[i] = _fit(vector, dim), True
    missing = sorted({k for k in keys if k is not None and k not in known})
    lacking = int(sum(1 for k, ok in zip(keys, valid) if k is not None and k in known and not ok))
    return StreamFeatures(out, valid, lacking, missing, no_file=sum(k is None for k in keys))

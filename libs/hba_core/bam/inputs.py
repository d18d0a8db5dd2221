"""What BAM trains on: pooled h_penult through the frozen backbone, and the adapters' descriptor features.

:func:`backbone_pass` computes pooled vectors (the cache in :mod:`~hba_core.bam.cache` stores them),
:func:`decodable` keeps the samples whose media decode, :func:`training_split` joins vectors, features
and labels into a :class:`~hba_core.bam.train.Split`; :func:`tallied_features` counts what was missing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from hba_core.bam.backbone import LazyBackbone
from hba_core.bam.features import sample_features
from hba_core.bam.job import BamJob, media_settings
from hba_core.bam.train import HSource, Split


def tallied_features(
    store: Any, rows: list[dict[str, Any]], adapter: str, report: dict[str, Any], features: str
) -> Any:
    """The adapter's features for ``rows``, tallying clips without valid frames and keys missing from the store."""
    found = sample_features(store, rows, adapter, features)
    report.setdefault("no_valid_frames", {}).setdefault(adapter, 0)
    report["no_valid_frames"][adapter] += found.no_valid_frames
    report.setdefault("not_in_store", {}).setdefault(adapter, []).extend(found.not_in_store)
    report.setdefault("no_feature_file", {}).setdefault(adapter, 0)
    report["no_feature_file"][adapter] += found.no_file
    return found


def backbone_pass(
    backbone: LazyBackbone, samples: list[dict[str, Any]], job: BamJob, failed: list[str]
) -> Callable[[list[int]], np.ndarray]:
    """``compute(indices) -> pooled h_penult (n, H)`` of those samples through the frozen backbone (NaN rows
    for samples whose media failed, their ids appended to ``failed``); the backbone loads at the first call."""
    from hba_core.model.batching import plan_batches
    from hba_core.model.collate import Collator
    from hba_core.model.omnisapiens import pooled_penultimate_early

    collators: list[Any] = []  # built once, at the first call (it needs the processor)

    @torch.no_grad()
    def compute(indices: list[int]) -> np.ndarray:
        model = backbone.model
        if not collators:
            collators.append(Collator(backbone.processor, media_settings(job), targets=False))
        collate = collators[0]
        hidden = model.text_config.hidden_size
        part = [samples[i] for i in indices]
        out = np.full((len(part), hidden), np.nan, np.float32)
        position = {s["id"]: j for j, s in enumerate(part)}
        for batch_rows in plan_batches(part, job.batch_size, seed=0, epoch=0, shuffle=False):
            batch = collate([part[j] for j in batch_rows])
            failed.extend(sample_id for sample_id, _ in batch.skipped)
            if len(batch):
                pooled = pooled_penultimate_early(model.thinker, batch)  # only h_penult: no last layer, no logits
                for sample_id, vector in zip(batch.ids, pooled.float().cpu().numpy()):
                    out[position[sample_id]] = vector
        return out

    return compute


def decodable(samples: list[dict[str, Any]], job: BamJob, processor: Any, failed: list[str]) -> list[dict[str, Any]]:
    """The samples whose media decode (the uncached path cannot drop a sample in the middle of an epoch)."""
    from hba_core.errors import MediaError
    from hba_core.model.collate import prepare_sample

    media = media_settings(job)
    kept = []
    for sample in samples:
        try:
            prepare_sample(sample, processor, media, with_target=False)
        except MediaError:
            failed.append(sample["id"])
            continue
        kept.append(sample)
    return kept


def training_split(
    samples: list[dict[str, Any]],
    h: np.ndarray | HSource,
    store: Any,
    adapters: tuple[str, ...],
    summary: dict[str, Any],
    features: str = "hba",
) -> Split:
    """A training split: rows whose h is known (cached matrix) or all rows (uncached: h computed per batch)."""
    from hba_core.model.collate import label_index

    ok = ~np.isnan(h).any(axis=1) if isinstance(h, np.ndarray) else np.ones(len(samples), bool)
    rows = [s for s, keep in zip(samples, ok) if keep]
    feats, valid = {}, {}
    for adapter in adapters:
        found = tallied_features(store, rows, adapter, summary, features)
        feats[adapter] = torch.from_numpy(found.values)
        valid[adapter] = torch.from_numpy(found.valid)
    labels = torch.tensor([label_index(s) for s in rows], dtype=torch.long)
    return Split(torch.from_numpy(h[ok]) if isinstance(h, np.ndarray) else h, feats, valid, labels)


def nothing_left(n_train: int) -> str:
    """The reason a dataset is skipped when every training sample's media failed."""
    return f"no training sample left: the media of all {n_train} failed to decode (listed in media_failed)"

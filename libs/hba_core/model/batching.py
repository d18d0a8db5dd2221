"""Batches that share a modality signature and a loss kind, bucketed by length, and their DataLoader.

Mixed-modality batches are a known source of hangs and crashes with Qwen2.5-Omni, and
``use_audio_in_video`` is one flag per processor call, so every batch holds samples of one
``(kind, modality_signature)`` only (kind: ``cls`` or ``qa``). Within a group, samples of similar length
go together (less padding). The plan is a pure function of (samples, seed, epoch): a resumed run
rebuilds exactly the same batches and skips the ones it already did.

>>> rows = [{"dataset": "cremad", "modality_signature": "text_audio", "problem": "x" * n, "answer": "sad"}
...         for n in range(5)]
>>> plan_batches(rows, 2, seed=0, epoch=0)
[[2, 3], [4], [0, 1]]
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from torch.utils.data import DataLoader, Dataset

from hba_core import registry
from hba_core.samples import group_by_signature, signature_of

BUCKET_BATCHES = 64  # sort windows of this many batches by length: less padding, still shuffled


def batch_key(sample: dict[str, Any]) -> tuple[str, str]:
    """``(kind, modality_signature)``: samples that may share a batch."""
    kind = "qa" if registry.dataset(sample["dataset"]).is_free_text else "cls"
    return kind, signature_of(sample)


def length_estimate(sample: dict[str, Any]) -> int:
    """A cheap length proxy (characters of prompt + answer); media cost is alike within a signature."""
    return len(sample.get("problem", "")) + len(str(sample.get("answer", "")))


def plan_batches(
    samples: list[dict[str, Any]], batch_size: int, *, seed: int, epoch: int, shuffle: bool = True
) -> list[list[int]]:
    """Indices of ``samples`` grouped into homogeneous, length-bucketed batches, in a seeded random order."""
    rng = random.Random(f"{seed}-{epoch}")
    groups = group_by_signature(samples, key=batch_key)
    batches: list[list[int]] = []
    for key in sorted(groups):
        members = groups[key]
        if shuffle:
            rng.shuffle(members)
        window = batch_size * BUCKET_BATCHES
        for start in range(0, len(members), window):
            chunk = sorted(members[start : start + window], key=lambda i: length_estimate(samples[i]))
            batches.extend(chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size))
    if shuffle:
        rng.shuffle(batches)
    return batches


def shard_batches(batches: list[list[int]], rank: int, world_size: int) -> tuple[list[list[int]], int]:
    """This rank's batches (every rank gets the same count); returns (batches, number dropped at the end)."""
    usable = len(batches) - len(batches) % world_size
    return batches[rank:usable:world_size], len(batches) - usable


class PlannedBatches(Dataset):
    """Item ``i`` = the samples of planned batch ``i``; the collator turns it into a model batch in a worker."""

    def __init__(self, samples: list[dict[str, Any]], batches: list[list[int]]):
        self.samples, self.batches = samples, batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> list[dict[str, Any]]:
        return [self.samples[i] for i in self.batches[index]]


def make_loader(
    samples: list[dict[str, Any]], batches: list[list[int]], collate: Callable[[list], Any], *, workers: int = 2
) -> DataLoader:
    """A DataLoader whose workers decode media and run the processor (``collate``), in plan order.

    It gets a private generator: a loader otherwise draws its base seed from the global torch RNG, and a
    resumed run (which creates one more loader) would then see different dropout masks.
    """
    import torch

    return DataLoader(
        PlannedBatches(samples, batches),
        batch_size=None,
        shuffle=False,
        collate_fn=collate,
        num_workers=workers,
        prefetch_factor=2 if workers else None,
        persistent_workers=False,
        generator=torch.Generator().manual_seed(0),
    )

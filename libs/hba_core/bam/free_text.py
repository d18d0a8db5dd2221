"""hba-bam's work on one free-text dataset (SIQ2, IntentQA, MimeQA): the decoder path.

Δh is added to h_penult at every position (:mod:`hba_core.bam.decoder`); the adapters and the LM head
learn by teacher forcing, and the frozen backbone runs for every batch (per-token states cannot be cached).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hba_core import registry
from hba_core.bam.adapter import AdapterSet
from hba_core.bam.cache import model_fingerprint
from hba_core.bam.inputs import decodable, nothing_left, tallied_features
from hba_core.bam.job import BamJob, media_settings
from hba_core.bam.saved import save_bam
from hba_core.bam.train import default_batch_size


def train_free_text(
    model: Any,
    processor: Any,
    store: Any,
    name: str,
    splits: dict[str, list[dict[str, Any]]],
    adapters_for: tuple[str, ...],
    job: BamJob,
    out_dir: Path,
    report: dict[str, Any],
) -> None:
    """The decoder path (:mod:`hba_core.bam.decoder`): teacher forcing with Δh before the last layer."""
    from hba_core.bam.decoder import train_qa
    from hba_core.model.batching import plan_batches
    from hba_core.model.collate import Collator

    collate = Collator(processor, media_settings(job), targets=True)
    report["media_failed"] = []
    rows = {k: decodable(splits.get(k, []), job, processor, report["media_failed"]) for k in ("train", "val")}
    features = {}
    for split_name, part in rows.items():
        report[f"{split_name}_samples"] = len(part)
        for adapter in adapters_for:
            found = tallied_features(store, part, adapter, report, job.settings.features)
            for sample, v, ok in zip(part, found.values, found.valid):
                features.setdefault(sample["id"], {})[adapter] = (v, ok)
    if not rows["train"]:
        report["skipped"] = nothing_left(len(splits.get("train", [])))
        return
    torch.manual_seed(job.settings.seed)
    hidden = model.text_config.hidden_size
    train_ids = [s["id"] for s in rows["train"]]
    dims = {a: int(features[train_ids[0]][a][0].shape[0]) for a in adapters_for}
    adapters = AdapterSet(
        dims, hidden, job.settings.hidden, job.settings.dropout, job.settings.alpha_init, job.settings.arch
    )
    for a, adapter in adapters.adapters.items():
        adapter.fit_normalizer(
            torch.from_numpy(np.stack([features[i][a][0] for i in train_ids])),
            torch.tensor([bool(features[i][a][1]) for i in train_ids]),
        )
    micro = max(1, min(job.batch_size, job.settings.batch_size or default_batch_size(name)))
    report["backbone_passes"] = 0

    def batches(split_name: str) -> Any:
        def generate(epoch: int) -> Any:
            part = rows[split_name]
            plan = plan_batches(part, micro, seed=job.settings.seed, epoch=epoch, shuffle=split_name == "train")
            for indices in plan:
                batch = collate([part[i] for i in indices])
                if not len(batch):
                    continue
                report["backbone_passes"] += len(batch)
                feats = {a: torch.from_numpy(np.stack([features[i][a][0] for i in batch.ids])) for a in adapters_for}
                valid = {a: torch.tensor([bool(features[i][a][1]) for i in batch.ids]) for a in adapters_for}
                yield batch, feats, valid

        return generate

    best_epoch, history, lm_weight = train_qa(model.thinker, adapters, batches("train"), batches("val"), job.settings)
    meta = {
        "kind": "qa",
        "dataset": name,
        "task": registry.dataset(name).task.code,
        "labels": [],
        "adapters": list(adapters_for),
        "feat_dims": dims,
        "no_raw_media": job.no_raw_media,
        "settings": asdict(job.settings),
        "micro_batch": micro,
        "store_streams": {s: store.streams[s] for s in store.streams},
        "checkpoint_fingerprint": model_fingerprint(job.checkpoint),
        "fps": job.fps,
        "max_frames": job.max_frames,
        "best_epoch": best_epoch,
        "history": [asdict(e) for e in history],
    }
    saved = save_bam(out_dir, name, adapters, {"lm_head.weight": lm_weight}, meta)
    report.update(
        {
            "adapters": list(adapters_for),
            "feat_dims": dims,
            "best_epoch": best_epoch,
            "history": meta["history"],
            "saved": str(saved),
        }
    )

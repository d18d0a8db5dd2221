"""hba-bam's work: train, select and save one BAM set per dataset on a frozen SFT checkpoint.

For each dataset: pooled h_penult of its train and val samples (read from the cache, or one frozen
backbone pass that fills it), its descriptor vectors from the store, then :func:`train_cls` on the
vectors. The dataset's head starts as a copy of the SFT task head; the backbone is never changed.

Saved beside the checkpoint (``<ckpt>/bam/<dataset>/``): ``adapters.safetensors`` (adapters and the
dataset's head) and ``bam.json`` (streams and feature sizes, the descriptor-store stream settings they
expect, hyper-parameters, best epoch, per-epoch history, and what was missing). Deleting the folder
restores the SFT model exactly.

Free-text datasets (SIQ2, IntentQA, MimeQA) train through the decoder path
(:mod:`hba_core.bam.free_text` over :mod:`hba_core.bam.decoder`): Δh is added to h_penult at every
position, the input of the last decoder layer, and the adapters and the LM head learn by teacher
forcing; that path runs the backbone for every batch (per-token states cannot be cached).

The pieces: :mod:`~hba_core.bam.job` (:class:`BamJob`), :mod:`~hba_core.bam.inputs` (the backbone pass,
descriptor features, training splits), :mod:`~hba_core.bam.saved` (:func:`save_bam`).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hba_core import registry
from hba_core.bam.adapter import AdapterSet
from hba_core.bam.backbone import LazyBackbone
from hba_core.bam.cache import PooledCache, cached_vectors, model_fingerprint, sample_key
from hba_core.bam.data import read_bam_samples
from hba_core.bam.features import adapter_streams
from hba_core.bam.free_text import train_free_text
from hba_core.bam.inputs import backbone_pass, decodable, nothing_left, training_split
from hba_core.bam.job import BAM_DIR, BamJob, key_settings
from hba_core.bam.saved import save_bam
from hba_core.bam.train import default_batch_size, train_cls
from hba_core.errors import HbaError
from hba_core.training.metrics_log import MetricsLog

__all__ = ["BAM_DIR", "BamJob", "run_bam", "save_bam"]  # importable from here as before the split


def _log_epochs(metrics: MetricsLog, dataset: str, history: list[dict[str, Any]]) -> None:
    """One metrics line per epoch of ``dataset``; ``step`` counts epochs over the whole run (W&B needs it to grow)."""
    done = len(metrics.read())
    for i, epoch in enumerate(history, start=1):
        metrics.log({"step": done + i, "dataset": dataset, **{f"{dataset}/{k}": v for k, v in epoch.items()}})


def run_bam(job: BamJob, log: Any = sys.stderr) -> dict[str, Any]:
    """Train every requested dataset's BAM set; return the run summary (also written as summary.json)."""
    from hba_core.descriptors.store import open_store

    for name in job.datasets:
        registry.dataset(name)
    backbone = LazyBackbone(job.checkpoint)  # loaded at the first pooled vector the cache lacks
    store = open_store(job.store)
    out_dir = Path(job.out) if job.out else Path(job.checkpoint) / BAM_DIR
    cache_dir = out_dir / ".cache" if job.cache_dir is None else (Path(job.cache_dir) if job.cache_dir else None)
    cache = PooledCache(cache_dir, model_fingerprint(job.checkpoint)) if cache_dir else None
    keyed = key_settings(job)
    by_dataset = read_bam_samples(job.samples, job.datasets, no_raw_media=job.no_raw_media)
    metrics = MetricsLog(out_dir / "metrics.jsonl", report_to=job.report_to, project="hba-bam")
    metrics.start(resume_step=None)
    summary: dict[str, Any] = {"checkpoint": str(job.checkpoint), "store": str(job.store), "datasets": {}}
    for name in job.datasets:
        ds = registry.dataset(name)
        report: dict[str, Any] = {}
        summary["datasets"][name] = report
        adapters_for = adapter_streams(name, job.streams)
        splits = by_dataset.get(name, {})
        if not adapters_for:
            report["skipped"] = "no audio or video descriptors for this dataset (BAM = the SFT model)"
        elif not splits.get("train"):
            report["skipped"] = "no training samples (split 'train') in the samples file"
        if "skipped" in report:
            print(f"bam: {name}: skipped - {report['skipped']}", file=log)
            continue
        start = time.perf_counter()
        if ds.is_free_text:
            train_free_text(backbone.model, backbone.processor, store, name, splits, adapters_for, job, out_dir, report)
            if "skipped" in report:
                print(f"bam: {name}: skipped - {report['skipped']}", file=log)
            else:
                print(f"bam: {name}: best epoch {report['best_epoch']} (decoder path) -> {report['saved']}", file=log)
                _log_epochs(metrics, name, report["history"])
            continue
        parts = {}
        report.update({"backbone_passes": 0, "media_failed": []})
        for split_name in ("train", "val"):
            rows = splits.get(split_name, [])
            report[f"{split_name}_samples"] = len(rows)
            if cache is None:  # the reference's way: the frozen backbone runs again for every batch of every epoch
                rows = decodable(rows, job, backbone.processor, report["media_failed"])
                compute = backbone_pass(backbone, rows, job, report["media_failed"])
                counter = report

                def source(index: torch.Tensor, compute: Any = compute, counter: dict = counter) -> torch.Tensor:
                    counter["backbone_passes"] += int(index.numel())
                    return torch.from_numpy(compute(index.tolist()))

                parts[split_name] = training_split(rows, source, store, adapters_for, report, job.settings.features)
                continue
            compute = backbone_pass(backbone, rows, job, report["media_failed"])
            keys = [sample_key(s, keyed) for s in rows]
            h, computed = (
                cached_vectors(cache, keys, compute) if rows else (np.zeros((0, backbone.hidden_size), np.float32), 0)
            )
            report["backbone_passes"] += computed
            # a sample whose media failed is cached as NaN: a re-run lists it again instead of dropping it unsaid
            known = set(report["media_failed"])
            report["media_failed"] += [s["id"] for s, v in zip(rows, h) if np.isnan(v).any() and s["id"] not in known]
            parts[split_name] = training_split(rows, h, store, adapters_for, report, job.settings.features)
        if not len(parts["train"]):  # every training sample's media failed: nothing to train on
            report["skipped"] = nothing_left(report["train_samples"])
            print(f"bam: {name}: skipped - {report['skipped']}", file=log)
            continue
        task = ds.task.code
        saved_head = backbone.head_state(task)
        if task not in backbone.label_space or saved_head is None:
            raise HbaError(f"{job.checkpoint} has no {task} head; train hba-sft cls on {name} first")
        head = torch.nn.Linear(backbone.hidden_size, len(backbone.label_space[task]))
        head.load_state_dict(saved_head)
        torch.manual_seed(job.settings.seed)
        dims = {a: int(parts["train"].feats[a].shape[1]) for a in adapters_for}
        adapters = AdapterSet(
            dims,
            backbone.hidden_size,
            job.settings.hidden,
            job.settings.dropout,
            job.settings.alpha_init,
            job.settings.arch,
        )
        batch = job.settings.batch_size or default_batch_size(name)
        result = train_cls(adapters, head, parts["train"], parts["val"], replace(job.settings, batch_size=batch), batch)
        report.update(
            {
                "adapters": list(adapters_for),
                "feat_dims": dims,
                "best_epoch": result.best_epoch,
                "history": [asdict(e) for e in result.history],
                "seconds": round(time.perf_counter() - start, 3),
            }
        )
        meta = {
            "dataset": name,
            "task": task,
            "labels": backbone.label_space[task],
            "adapters": list(adapters_for),
            "feat_dims": dims,
            "no_raw_media": job.no_raw_media,
            "settings": asdict(job.settings),
            "batch_size": batch,
            "store_streams": {s: store.streams[s] for s in store.streams},
            "checkpoint_fingerprint": model_fingerprint(job.checkpoint),
            "fps": job.fps,
            "max_frames": job.max_frames,
            **{k: report[k] for k in ("best_epoch", "history")},
        }
        heads = {f"head.{k}": v for k, v in result.head.state_dict().items()}
        saved = save_bam(out_dir, name, result.adapters, heads, {"kind": "cls", **meta})
        report["saved"] = str(saved)
        print(
            f"bam: {name}: best epoch {result.best_epoch}, val CE "
            f"{result.history[result.best_epoch - 1].val_loss:.4f} -> {saved}",
            file=log,
        )
        _log_epochs(metrics, name, report["history"])
    # a re-run whose vectors were all cached never loads the Thinker (checked by tests/test_bam_rerun.py)
    summary["backbone_loaded"] = backbone.loaded
    summary["backbone_load_seconds"] = backbone.seconds_loading
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary

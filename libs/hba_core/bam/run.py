"""hba-bam's work: train, select and save one BAM set per dataset on a frozen SFT checkpoint.

For each dataset: pooled h_penult of its train and val samples (read from the cache, or one frozen
backbone pass that fills it), its descriptor vectors from the store, then :func:`train_cls` on the
vectors. The dataset's head starts as a copy of the SFT task head; the backbone is never changed.

Saved beside the checkpoint (``<ckpt>/bam/<dataset>/``): ``adapters.safetensors`` (adapters and the
dataset's head) and ``bam.json`` (streams and feature sizes, the descriptor-store stream settings they
expect, hyper-parameters, best epoch, per-epoch history, and what was missing). Deleting the folder
restores the SFT model exactly.

Free-text datasets (SIQ2, IntentQA, MimeQA) train through the decoder path
(:mod:`hba_core.bam.decoder`): Δh is added to h_penult at every position, the input of the last
decoder layer, and the adapters and the LM head learn by teacher forcing; that path runs the backbone
for every batch (per-token states cannot be cached).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hba_core import registry
from hba_core.bam.adapter import AdapterSet
from hba_core.bam.backbone import LazyBackbone
from hba_core.bam.cache import PooledCache, cached_vectors, model_fingerprint, sample_key
from hba_core.bam.data import read_bam_samples
from hba_core.bam.features import adapter_streams, sample_features
from hba_core.bam.train import BamSettings, HSource, Split, default_batch_size, train_cls
from hba_core.errors import HbaError
from hba_core.training.metrics_log import MetricsLog

BAM_DIR = "bam"


@dataclass
class BamJob:
    checkpoint: str
    samples: str
    store: str
    datasets: list[str]
    data_root: str = "."
    out: str | None = None  # default: <checkpoint>/bam
    streams: tuple[str, ...] = ("audio", "video")
    no_raw_media: bool = False  # the backbone sees only text; descriptors carry audio and video
    settings: BamSettings = field(default_factory=BamSettings)
    cache_dir: str | None = None  # default: <out>/.cache; "" = no cache: the backbone runs every epoch
    fps: float = 2.0
    max_frames: int = 32
    batch_size: int = 4  # backbone pass
    report_to: str = "none"  # none | tensorboard | wandb: every dataset's epochs (also in <out>/metrics.jsonl)


def _key_settings(job: BamJob) -> dict[str, Any]:
    """The media settings that key the cache (the data root is left out: moving the data keeps the cache)."""
    key_settings = {**asdict(_media(job)), "no_raw_media": job.no_raw_media}
    key_settings.pop("data_root")
    return key_settings


def _media(job: BamJob) -> Any:
    """How the backbone reads media in this run (the same for every path, so cached keys stay valid)."""
    from hba_core.model.collate import MediaSettings

    return MediaSettings(data_root=job.data_root, fps=job.fps, max_frames=job.max_frames)


def _features(store: Any, rows: list[dict[str, Any]], adapter: str, report: dict[str, Any], features: str) -> Any:
    """The adapter's features for ``rows``, tallying clips without valid frames and keys missing from the store."""
    found = sample_features(store, rows, adapter, features)
    report.setdefault("no_valid_frames", {}).setdefault(adapter, 0)
    report["no_valid_frames"][adapter] += found.no_valid_frames
    report.setdefault("not_in_store", {}).setdefault(adapter, []).extend(found.not_in_store)
    report.setdefault("no_feature_file", {}).setdefault(adapter, 0)
    report["no_feature_file"][adapter] += found.no_file
    return found


def _backbone_pass(
    backbone: LazyBackbone, samples: list[dict[str, Any]], job: BamJob, failed: list[str]
) -> Callable[[list[int]], np.ndarray]:
    """``compute(indices) -> pooled h_penult (n, H)`` of those samples through the frozen backbone (NaN rows
    for samples whose media failed, their ids appended to ``failed``); the backbone loads at the first call."""
    from hba_core.model.batching import plan_batches
    from hba_core.model.collate import Collator
    from hba_core.model.omnisapiens import pooled_penultimate

    collators: list[Any] = []  # built once, at the first call (it needs the processor)

    @torch.no_grad()
    def compute(indices: list[int]) -> np.ndarray:
        model = backbone.model
        if not collators:
            collators.append(Collator(backbone.processor, _media(job), targets=False))
        collate = collators[0]
        hidden = model.text_config.hidden_size
        part = [samples[i] for i in indices]
        out = np.full((len(part), hidden), np.nan, np.float32)
        position = {s["id"]: j for j, s in enumerate(part)}
        for batch_rows in plan_batches(part, job.batch_size, seed=0, epoch=0, shuffle=False):
            batch = collate([part[j] for j in batch_rows])
            failed.extend(sample_id for sample_id, _ in batch.skipped)
            if len(batch):
                pooled, _ = pooled_penultimate(model.thinker, batch)
                for sample_id, vector in zip(batch.ids, pooled.float().cpu().numpy()):
                    out[position[sample_id]] = vector
        return out

    return compute


def _decodable(samples: list[dict[str, Any]], job: BamJob, processor: Any, failed: list[str]) -> list[dict[str, Any]]:
    """The samples whose media decode (the uncached path cannot drop a sample in the middle of an epoch)."""
    from hba_core.errors import MediaError
    from hba_core.model.collate import prepare_sample

    media = _media(job)
    kept = []
    for sample in samples:
        try:
            prepare_sample(sample, processor, media, with_target=False)
        except MediaError:
            failed.append(sample["id"])
            continue
        kept.append(sample)
    return kept


def _split(
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
        found = _features(store, rows, adapter, summary, features)
        feats[adapter] = torch.from_numpy(found.values)
        valid[adapter] = torch.from_numpy(found.valid)
    labels = torch.tensor([label_index(s) for s in rows], dtype=torch.long)
    return Split(torch.from_numpy(h[ok]) if isinstance(h, np.ndarray) else h, feats, valid, labels)


def _log_epochs(metrics: MetricsLog, dataset: str, history: list[dict[str, Any]]) -> None:
    """One metrics line per epoch of ``dataset``; ``step`` counts epochs over the whole run (W&B needs it to grow)."""
    done = len(metrics.read())
    for i, epoch in enumerate(history, start=1):
        metrics.log({"step": done + i, "dataset": dataset, **{f"{dataset}/{k}": v for k, v in epoch.items()}})


def _nothing_left(n_train: int) -> str:
    return f"no training sample left: the media of all {n_train} failed to decode (listed in media_failed)"


def save_bam(
    out_dir: Path, dataset: str, adapters: AdapterSet, heads: dict[str, torch.Tensor], meta: dict[str, Any]
) -> Path:
    """``<out>/<dataset>/adapters.safetensors`` (adapters + ``heads`` tensors, e.g. ``head.weight`` or
    ``lm_head.weight``) + ``bam.json``, replaced as a whole (:func:`~hba_core.training.state.atomic_dir`)."""
    from safetensors.torch import save_file

    from hba_core.training.state import atomic_dir

    target = out_dir / dataset
    state = {f"adapters.{k}": v.contiguous() for k, v in adapters.state_dict().items()}
    state.update({k: v.detach().contiguous() for k, v in heads.items()})
    with atomic_dir(target) as tmp:
        save_file(state, str(tmp / "adapters.safetensors"))
        (tmp / "bam.json").write_text(json.dumps(meta, indent=2) + "\n")
    return target


def _train_free_text(
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

    collate = Collator(processor, _media(job), targets=True)
    report["media_failed"] = []
    rows = {k: _decodable(splits.get(k, []), job, processor, report["media_failed"]) for k in ("train", "val")}
    features = {}
    for split_name, part in rows.items():
        report[f"{split_name}_samples"] = len(part)
        for adapter in adapters_for:
            found = _features(store, part, adapter, report, job.settings.features)
            for sample, v, ok in zip(part, found.values, found.valid):
                features.setdefault(sample["id"], {})[adapter] = (v, ok)
    if not rows["train"]:
        report["skipped"] = _nothing_left(len(splits.get("train", [])))
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
    key_settings = _key_settings(job)
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
            _train_free_text(
                backbone.model, backbone.processor, store, name, splits, adapters_for, job, out_dir, report
            )
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
                rows = _decodable(rows, job, backbone.processor, report["media_failed"])
                compute = _backbone_pass(backbone, rows, job, report["media_failed"])
                counter = report

                def source(index: torch.Tensor, compute: Any = compute, counter: dict = counter) -> torch.Tensor:
                    counter["backbone_passes"] += int(index.numel())
                    return torch.from_numpy(compute(index.tolist()))

                parts[split_name] = _split(rows, source, store, adapters_for, report, job.settings.features)
                continue
            compute = _backbone_pass(backbone, rows, job, report["media_failed"])
            keys = [sample_key(s, key_settings) for s in rows]
            h, computed = (
                cached_vectors(cache, keys, compute) if rows else (np.zeros((0, backbone.hidden_size), np.float32), 0)
            )
            report["backbone_passes"] += computed
            # a sample whose media failed is cached as NaN: a re-run lists it again instead of dropping it unsaid
            known = set(report["media_failed"])
            report["media_failed"] += [s["id"] for s, v in zip(rows, h) if np.isnan(v).any() and s["id"] not in known]
            parts[split_name] = _split(rows, h, store, adapters_for, report, job.settings.features)
        if not len(parts["train"]):  # every training sample's media failed: nothing to train on
            report["skipped"] = _nothing_left(report["train_samples"])
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

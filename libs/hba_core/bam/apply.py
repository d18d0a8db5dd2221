"""Applying saved BAM sets at prediction time: h_adapt = h_penult + Δh, then the dataset's BAM head.

>>> bams = load_bams("runs/sft/best/bam")                         # doctest: +SKIP
>>> probs = bam_probs(bams["mmsd"], pooled, samples, store)        # doctest: +SKIP
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hba_core.bam.adapter import AdapterSet
from hba_core.bam.features import sample_features
from hba_core.errors import InputError


@dataclass
class LoadedBam:
    """A classification BAM set has ``head``; a free-text one has ``lm_head`` (the trained LM head weight)."""

    dataset: str
    labels: list[str]
    adapters: AdapterSet
    head: torch.nn.Linear | None
    meta: dict[str, Any]
    lm_head: torch.Tensor | None = None


def load_bam(folder: str | Path) -> LoadedBam:
    """One dataset's BAM set from ``<ckpt>/bam/<dataset>/``."""
    from safetensors.torch import load_file

    root = Path(folder)
    if not (root / "bam.json").is_file():
        raise InputError(str(root), "not a BAM folder (no bam.json); pass the folder hba-bam wrote")
    meta = json.loads((root / "bam.json").read_text())
    state = load_file(str(root / "adapters.safetensors"))
    lm_head = state.get("lm_head.weight")
    hidden = int((lm_head if lm_head is not None else state["head.weight"]).shape[1])
    settings = meta["settings"]
    arch = settings.get("arch", "hba")  # sets saved before the reference architecture existed are hba's
    adapters = AdapterSet(
        meta["feat_dims"], hidden, settings["hidden"], settings["dropout"], settings["alpha_init"], arch
    )
    adapters.load_state_dict({k.removeprefix("adapters."): v for k, v in state.items() if k.startswith("adapters.")})
    head = None
    if lm_head is None:
        head = torch.nn.Linear(hidden, len(meta["labels"]))
        head.load_state_dict({k.removeprefix("head."): v for k, v in state.items() if k.startswith("head.")})
        head.eval()
    return LoadedBam(meta["dataset"], list(meta["labels"]), adapters.eval(), head, meta, lm_head)


def load_bams(folder: str | Path) -> dict[str, LoadedBam]:
    """Every BAM set under ``folder``, by dataset: hba-bam's ``bam/`` directory or one dataset's folder,
    or released reference BAM checkpoints (one, or a folder of them; :mod:`hba_core.bam.reference`)."""
    from hba_core.bam.reference import is_reference_bam, load_reference_bam

    root = Path(folder)
    if (root / "bam.json").is_file():
        found = [load_bam(root)]
    elif is_reference_bam(root):
        found = [load_reference_bam(root)]
    else:
        found = [load_bam(p.parent) for p in sorted(root.glob("*/bam.json"))]
        if root.is_dir():
            found += [load_reference_bam(p) for p in sorted(root.iterdir()) if p.is_dir() and is_reference_bam(p)]
    if not found:
        raise InputError(
            str(root),
            "no BAM sets found (expected <dataset>/bam.json from hba-bam, or a reference BAM checkpoint "
            "with meta.json and model_1.safetensors / pytorch_model_fsdp_1.bin)",
        )
    return {b.dataset: b for b in found}


def _features(bam: LoadedBam, samples: list[dict[str, Any]], store: Any) -> tuple[dict, dict]:
    feats, valid = {}, {}
    features = bam.meta.get("settings", {}).get("features", "hba")
    for adapter in bam.adapters.streams:
        found = sample_features(store, samples, adapter, features)
        feats[adapter] = torch.from_numpy(found.values)
        valid[adapter] = torch.from_numpy(found.valid)
    return feats, valid


@torch.no_grad()
def bam_logits(bam: LoadedBam, pooled: torch.Tensor, samples: list[dict[str, Any]], store: Any) -> torch.Tensor:
    """Logits (B, n_labels) of the BAM head on pooled h_penult (B, H) plus the adapters' Δh."""
    if bam.head is None:
        raise InputError(bam.dataset, "this BAM set is a free-text (decoder) one: it has no classifier head")
    if pooled.shape[-1] != bam.head.in_features:
        raise InputError(
            bam.dataset,
            f"this BAM set was trained on a {bam.head.in_features}-wide model, the model given has hidden size "
            f"{pooled.shape[-1]}; pass the checkpoint the adapters were trained on",
        )
    feats, valid = _features(bam, samples, store)
    h_adapt = bam.adapters(pooled.float().cpu(), feats, valid)
    return bam.head(h_adapt)


@torch.no_grad()
def bam_delta(bam: LoadedBam, samples: list[dict[str, Any]], store: Any) -> torch.Tensor:
    """Δh (B, H) of the samples: what the decoder path adds before the last layer."""
    feats, valid = _features(bam, samples, store)
    return bam.adapters.delta(feats, valid)

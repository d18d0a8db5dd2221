"""A BAM set on disk: :func:`save_bam` writes the folder that :func:`hba_core.bam.apply.load_bam` reads.

``<out>/<dataset>/adapters.safetensors`` holds the adapters (``adapters.*``) and the dataset's head
(``head.*`` for a classification set, ``lm_head.weight`` for a free-text one); ``bam.json`` holds the
streams, feature sizes, settings and history.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from hba_core.bam.adapter import AdapterSet


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

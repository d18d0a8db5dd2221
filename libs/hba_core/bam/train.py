"""Training one dataset's BAM adapters and its task head on a frozen backbone (paper C.1-C.2).

The backbone is frozen and deterministic in eval mode, so a classification sample's pooled h_penult
is a constant: :func:`train_cls` takes it as a tensor. Whether those vectors were just computed or
read from the cache (:mod:`hba_core.bam.cache`) makes no difference to the loop - that is what lets
four epochs (or a hyper-parameter sweep) cost one backbone pass.

Defaults are C.2's: Adam, lr 5e-4 for the adapters and 1e-4 for the head, 4 epochs, keep the epoch
with the lowest validation cross-entropy, effective batch 4 (DAIC-WOZ), 16 (MUStARD, MimeQA) or 32.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from hba_core import registry
from hba_core.bam.adapter import AdapterSet
from hba_core.bam.settings import BamSettings  # re-exported: the hyper-parameters (no torch there)


def default_batch_size(dataset: str) -> int:
    """C.2's effective batch size for BAM training on ``dataset`` (declared in the registry)."""
    return registry.batch_size(dataset)


# Pooled h_penult of the given rows (n,) -> (n, H): the uncached path runs the frozen backbone here.
HSource = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class Split:
    """One split: pooled h (N, H) - a tensor (cached) or an :data:`HSource` (uncached) -, per-adapter
    features (N, D) and validity (N,), labels (N,)."""

    h: torch.Tensor | HSource
    feats: dict[str, torch.Tensor]
    valid: dict[str, torch.Tensor]
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def rows(self, index: torch.Tensor) -> Split:
        h = self.h[index] if isinstance(self.h, torch.Tensor) else self.h(index)
        return Split(
            h,
            {k: v[index] for k, v in self.feats.items()},
            {k: v[index] for k, v in self.valid.items()},
            self.labels[index],
        )


@dataclass
class EpochLog:
    epoch: int
    train_loss: float
    val_loss: float
    val_accuracy: float


@dataclass
class TrainResult:
    adapters: AdapterSet
    head: nn.Linear
    best_epoch: int
    history: list[EpochLog] = field(default_factory=list)


def head_logits(adapters: AdapterSet, head: nn.Linear, split: Split) -> torch.Tensor:
    """Logits of the task head on h_adapt = h_penult + Δh, (N, n_labels)."""
    return head(adapters(split.h, split.feats, split.valid))


@torch.no_grad()
def evaluate(adapters: AdapterSet, head: nn.Linear, split: Split, batch_size: int = 256) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) in eval mode."""
    adapters.eval()
    head.eval()
    total, correct = 0.0, 0
    for start in range(0, len(split), batch_size):
        part = split.rows(torch.arange(start, min(start + batch_size, len(split))))
        logits = head_logits(adapters, head, part)
        total += float(F.cross_entropy(logits, part.labels, reduction="sum"))
        correct += int((logits.argmax(-1) == part.labels).sum())
    n = max(1, len(split))
    return total / n, correct / n


def train_cls(
    adapters: AdapterSet, head: nn.Linear, train: Split, val: Split, settings: BamSettings, batch_size: int
) -> TrainResult:
    """Train adapters + head; return the state of the epoch with the lowest validation CE.

    Only ``adapters`` and ``head`` receive gradients (the vectors come from a frozen backbone).
    Normalisation statistics are fitted on the training split first.
    """
    for name, adapter in adapters.adapters.items():
        adapter.fit_normalizer(train.feats[name], train.valid[name])
    optimizer = torch.optim.Adam(
        [
            {"params": list(adapters.parameters()), "lr": settings.lr_adapter},
            {"params": list(head.parameters()), "lr": settings.lr_head},
        ]
    )
    generator = torch.Generator().manual_seed(settings.seed)
    best: tuple[float, int, dict, dict] | None = None
    history: list[EpochLog] = []
    for epoch in range(1, settings.epochs + 1):
        adapters.train()
        head.train()
        order = torch.randperm(len(train), generator=generator)
        running, seen = 0.0, 0
        for start in range(0, len(train), batch_size):
            part = train.rows(order[start : start + batch_size])
            loss = F.cross_entropy(head_logits(adapters, head, part), part.labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            running += float(loss.detach()) * len(part)
            seen += len(part)
        val_loss, val_acc = evaluate(adapters, head, val) if len(val) else (math.nan, math.nan)
        history.append(EpochLog(epoch, running / max(1, seen), val_loss, val_acc))
        score = val_loss if len(val) else running / max(1, seen)  # no validation split: lowest training loss
        if best is None or score < best[0]:
            best = (score, epoch, copy.deepcopy(adapters.state_dict()), copy.deepcopy(head.state_dict()))
    assert best is not None, "settings.epochs must be >= 1"
    adapters.load_state_dict(best[2])
    head.load_state_dict(best[3])
    adapters.eval()
    head.eval()
    return TrainResult(adapters, head, best[1], history)

"""Masked-mean pooling of hidden states and one linear classifier head per task (App. B.1).

Datasets of one task share that task's head over the task's label domain (``registry.task(code).domain``),
so e.g. MELD, MOSEI, CREMA-D and TESS all train the EMO head. Each sample is routed to its task's head.

>>> import torch
>>> h = torch.ones(2, 3, 4); mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
>>> masked_mean(h, mask).shape
torch.Size([2, 4])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hba_core import registry


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``hidden`` (B, T, H) over positions where ``mask`` (B, T) is 1 -> (B, H), in float32."""
    weights = mask.to(torch.float32).unsqueeze(-1)  # (B, T, 1)
    total = (hidden.to(torch.float32) * weights).sum(dim=1)  # (B, H)
    return total / weights.sum(dim=1).clamp_min(1.0)


def default_label_space(tasks: list[str] | None = None) -> dict[str, list[str]]:
    """Task code -> the labels of its head, for every classification task (or the ``tasks`` given)."""
    codes = tasks if tasks is not None else [code for code, t in registry.get().tasks.items() if not t.is_free_text]
    return {code: list(registry.task(code).domain.labels) for code in codes}


def dataset_labels(name: str) -> tuple[str, ...]:
    """The labels a dataset's samples can have (a subset of its task's domain): ``registry.dataset(name).labels``."""
    return tuple(registry.dataset(name).labels)


class TaskHeads(nn.Module):
    """One ``Linear(hidden, n_labels)`` per task; ``label_space`` fixes head order and label order."""

    def __init__(self, hidden_size: int, label_space: dict[str, list[str]]):
        super().__init__()
        self.label_space = {code: list(labels) for code, labels in label_space.items()}
        self.heads = nn.ModuleDict({code: nn.Linear(hidden_size, len(labels)) for code, labels in label_space.items()})

    def forward(self, pooled: torch.Tensor, tasks: list[str]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Route rows to their task's head: task -> (row indices (n,), logits (n, n_labels)).

        Rows of free-text tasks (no head) are left out.
        """
        routed: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        for code in dict.fromkeys(tasks):
            if code not in self.heads:
                continue
            rows = torch.tensor([i for i, t in enumerate(tasks) if t == code], device=pooled.device)
            head = self.heads[code]
            routed[code] = (rows, head(pooled.index_select(0, rows).to(head.weight.dtype)))
        return routed


def classification_loss(
    routed: dict[str, tuple[torch.Tensor, torch.Tensor]],
    label_index: torch.Tensor,
) -> tuple[torch.Tensor | None, int]:
    """Cross-entropy summed over routed rows (caller divides); returns (sum or None, rows counted)."""
    total: torch.Tensor | None = None
    count = 0
    for rows, logits in routed.values():
        target = label_index.index_select(0, rows)  # (n,)
        loss = F.cross_entropy(logits.float(), target, reduction="sum")
        total = loss if total is None else total + loss
        count += int(rows.numel())
    return total, count

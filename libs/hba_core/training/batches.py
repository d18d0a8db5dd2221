"""Micro-batches whose every sample was skipped (undecodable media): counted, never fed to the model.

A collator drops a sample whose media cannot be decoded and lists it in ``batch.skipped``; when that
empties the batch (one bad sample alone, or a leftover batch) there is nothing to run the model on.
In one process the recipe just moves on. Under DeepSpeed every rank must still join the collective
backward and step, and ZeRO reduces gradients in the order its hooks fire in a real backward pass; so
an empty rank runs a real *stand-in* batch (its previous one, else :func:`first_decodable`) with the
loss multiplied by zero: the same hooks, the same collectives, no effect on the weights.

>>> class Tiny(list):
...     skipped = []
>>> is_empty(Tiny()), is_empty(Tiny([1]))
(True, False)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any


def is_empty(batch: Any) -> bool:
    """True when no sample of the micro-batch is left to run (``len(batch) == 0``)."""
    return len(batch) == 0


def first_decodable(samples: Iterable[dict[str, Any]], collate: Callable[[list[dict[str, Any]]], Any]) -> Any:
    """The batch of the first sample (in order) that collates to a non-empty batch; None if none does."""
    for sample in samples:
        batch = collate([sample])
        if not is_empty(batch):
            return batch
    return None

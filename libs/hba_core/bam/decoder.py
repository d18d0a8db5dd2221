"""BAM for the free-text datasets: Δh enters the decoder path.

For a classification dataset Δh is added to the pooled h_penult before the head. For a free-text
dataset there is no pooled vector: the LM head reads the final hidden state of every position. So Δh
is added to h_penult at *every* position - the input of the last decoder layer - through a forward
pre-hook, and the last layer and the LM head carry it to the logits. Training is teacher forcing on
the target tokens (as in hba-sft qa) with gradients only into the adapters and the LM head; the
vectors cannot be cached because they are per token, so this path runs the frozen backbone each batch.
During generation the hook adds the same Δh to each new position.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable, Iterator
from typing import Any

import torch

from hba_core.bam.adapter import AdapterSet
from hba_core.bam.train import BamSettings, EpochLog


def _last_layer(thinker: Any) -> torch.nn.Module:
    from hba_core.model.backbone import base_thinker

    return base_thinker(thinker).model.language_model.layers[-1]


@contextlib.contextmanager
def delta_before_last_layer(thinker: Any, delta: torch.Tensor) -> Iterator[None]:
    """Add ``delta`` (B, H) to every position of the last decoder layer's input while the block runs."""

    def add(module: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        hidden = args[0]  # (B, T, H); T = 1 per step when generating with the KV cache
        return (hidden + delta[:, None, :].to(hidden.dtype), *args[1:]), kwargs

    handle = _last_layer(thinker).register_forward_pre_hook(add, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


@contextlib.contextmanager
def lm_head_weights(thinker: Any, weight: torch.Tensor | None) -> Iterator[None]:
    """Use ``weight`` as the LM head's weight inside the block (None: leave it)."""
    if weight is None:
        yield
        return
    head = thinker.get_output_embeddings()
    original = head.weight.data
    head.weight.data = weight.to(original.dtype).to(original.device)
    try:
        yield
    finally:
        head.weight.data = original


Batches = Callable[[int], Iterator[tuple[Any, dict[str, torch.Tensor], dict[str, torch.Tensor]]]]


def lm_loss(thinker: Any, adapters: AdapterSet, batch: Any, feats: dict, valid: dict) -> tuple[torch.Tensor, int]:
    """Summed target-token cross-entropy of a batch with Δh in the decoder path, and the token count."""
    from hba_core.model.omnisapiens import lm_loss_sum, model_inputs

    delta = adapters.delta(feats, valid)  # (B, H)
    with delta_before_last_layer(thinker, delta):
        logits = thinker(**model_inputs(batch), use_cache=False).logits  # (B, T, V)
    return lm_loss_sum(logits, batch.lm_labels)


def train_qa(
    thinker: Any, adapters: AdapterSet, train_batches: Batches, val_batches: Batches, settings: BamSettings
) -> tuple[int, list[EpochLog], torch.Tensor]:
    """Train adapters + the LM head; keep the epoch with the lowest validation token CE.

    ``*_batches(epoch)`` yield (collated batch with targets, features, validity). Returns (best epoch,
    history, best LM head weight). The thinker's LM head is restored to its SFT weights afterwards.
    """
    head = thinker.get_output_embeddings()
    original = head.weight.detach().clone()
    head.weight.requires_grad_(True)
    optimizer = torch.optim.Adam(
        [
            {"params": list(adapters.parameters()), "lr": settings.lr_adapter},
            {"params": [head.weight], "lr": settings.lr_head},
        ]
    )
    best: tuple[float, int, dict, torch.Tensor] | None = None
    history: list[EpochLog] = []
    try:
        for epoch in range(1, settings.epochs + 1):
            adapters.train()
            total, tokens = 0.0, 0
            for batch, feats, valid in train_batches(epoch):
                loss_sum, count = lm_loss(thinker, adapters, batch, feats, valid)
                if not count:
                    continue
                optimizer.zero_grad(set_to_none=True)
                (loss_sum / count).backward()
                optimizer.step()
                total, tokens = total + float(loss_sum.detach()), tokens + count
            adapters.eval()
            val_total, val_tokens = 0.0, 0
            with torch.no_grad():
                for batch, feats, valid in val_batches(epoch):
                    loss_sum, count = lm_loss(thinker, adapters, batch, feats, valid)
                    val_total, val_tokens = val_total + float(loss_sum), val_tokens + count
            train_ce = total / max(1, tokens)
            val_ce = val_total / val_tokens if val_tokens else math.nan
            history.append(EpochLog(epoch, train_ce, val_ce, math.nan))
            score = val_ce if val_tokens else train_ce
            if best is None or score < best[0]:
                best = (score, epoch, copy.deepcopy(adapters.state_dict()), head.weight.detach().clone())
    finally:
        head.weight.requires_grad_(False)
        head.weight.data.copy_(original)
    assert best is not None, "settings.epochs must be >= 1"
    adapters.load_state_dict(best[2])
    adapters.eval()
    return best[1], history, best[3]

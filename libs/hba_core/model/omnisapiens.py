"""OmniSapiens: the Thinker (with LoRA), task heads on pooled h_penult, and the LM head as decoder.

Public API, for the SFT, BAM and GRPO tools:

- :func:`pooled_penultimate` - masked mean of ``hidden_states[-2]`` (B, H): BAM adds its Δh to this
  vector before the heads, and can cache it; :func:`pooled_penultimate_early` gives the same vector
  without running the last layer and the LM head (heads-only work: cls training, heads prediction);
- :meth:`OmniSapiens.head_logits` - heads on a pooled vector (BAM calls it with ``pooled + delta``);
- :meth:`OmniSapiens.forward` - classification loss and/or teacher-forced LM loss for a batch;
- :func:`generate` - decoded text for a batch (greedy by default);
- :func:`response_logprobs` - per-token log-probabilities of given response tokens (GRPO's ratio and KL).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hba_core.model.backbones import Backbone, backbone_for
from hba_core.model.collate import IGNORE_INDEX, Batch
from hba_core.model.heads import TaskHeads, classification_loss, dataset_labels, masked_mean


@dataclass
class Losses:
    """Summed losses and their counts; ``total`` is what is back-propagated (mean per sample/token)."""

    total: torch.Tensor
    cls_sum: float = 0.0
    cls_count: int = 0
    lm_sum: float = 0.0
    lm_count: int = 0
    correct: int = 0
    predicted: dict[int, int] = field(default_factory=dict)  # row -> argmax label index (rows with a head)


def model_inputs(batch: Batch) -> dict[str, Any]:
    """The Thinker's keyword arguments for a batch."""
    return dict(batch.inputs)


def pooled_penultimate(thinker: nn.Module, batch: Batch) -> tuple[torch.Tensor, Any]:
    """(pooled h_penult (B, H) float32, model output). h_penult = ``hidden_states[-2]``, masked mean over
    every text/audio/video position of the attention mask."""
    out = thinker(**model_inputs(batch), output_hidden_states=True, use_cache=False)
    h_penult = out.hidden_states[-2]  # (B, T, H)
    return masked_mean(h_penult, batch.inputs["attention_mask"]), out


class _ReachedLastLayer(Exception):
    """Raised by a hook as the last decoder layer is entered: its input is h_penult, nothing after is needed."""

    def __init__(self, hidden: torch.Tensor):
        super().__init__("stopped before the last decoder layer")
        self.hidden = hidden


def penultimate_states(thinker: nn.Module, batch: Batch) -> torch.Tensor:
    """``hidden_states[-2]`` (B, T, H) without running what comes after it: the last decoder layer, the
    final norm and the full-vocabulary logits (at 7B ~ 1/28 of the layers plus a 152k-wide projection).

    Exactly equal to the full forward's ``hidden_states[-2]`` (tests/test_predict.py); gradients flow as usual.
    """
    return run_to_penultimate(thinker, **model_inputs(batch))


def run_to_penultimate(model: nn.Module, **inputs: Any) -> torch.Tensor:
    """Call ``model(**inputs, use_cache=False)`` and stop as its last decoder layer is entered; return that
    layer's input, which is ``hidden_states[-2]``.

    A forward pre-hook on the last layer raises a private exception with the tensor (caught here;
    transformers resets its output-capture state in a ``finally``). The hook runs first (``prepend``),
    before any other hook on that layer (e.g. a ZeRO-3 parameter fetch), and is removed on every exit.

    Under ZeRO-3 the layers that ran have released their parameters in their own post-forward hooks and the
    last layer's are never gathered. The modules *around* it (peft's wrappers, the model, its text model) were
    entered but are never left, so their post-forward hooks do not run: they own no parameters of their own
    (nothing to release), but each pushed itself on DeepSpeed's stack of modules in forward, which their
    post-forward hook would have popped; that stack is put back to its depth before the call. Checked with
    single-process ZeRO-3 on the tiny Thinker: same losses as the full forward, no parameter left gathered.
    """
    last = model.get_decoder().layers[-1]  # through peft's wrapper to the text model
    stack = _zero3_module_stack()
    depth = len(stack) if stack is not None else 0

    def stop(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        raise _ReachedLastLayer(args[0] if args else kwargs["hidden_states"])

    handle = last.register_forward_pre_hook(stop, with_kwargs=True, prepend=True)
    try:
        model(**inputs, use_cache=False)
    except _ReachedLastLayer as reached:
        if stack is not None:
            del stack[depth:]  # what the skipped post-forward hooks of the enclosing modules would have popped
        return reached.hidden
    finally:
        handle.remove()
    raise RuntimeError(f"{type(model).__name__}'s forward never entered its last decoder layer")


def _zero3_module_stack() -> list[Any] | None:
    """DeepSpeed ZeRO-3's ``FWD_MODULE_STACK`` (modules in forward: pushed by its pre-, popped by its
    post-forward hooks) when DeepSpeed is loaded, else None; never imports DeepSpeed."""
    offload = sys.modules.get("deepspeed.runtime.zero.parameter_offload")
    return getattr(offload, "FWD_MODULE_STACK", None)


def pooled_penultimate_early(thinker: nn.Module, batch: Batch) -> torch.Tensor:
    """:func:`pooled_penultimate`'s pooled vector (B, H), stopping at the penultimate layer (heads only)."""
    return masked_mean(penultimate_states(thinker, batch), batch.inputs["attention_mask"])


def lm_loss_sum(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Teacher-forced next-token cross-entropy summed over target tokens (labels != IGNORE_INDEX)."""
    shift_logits = logits[:, :-1].float()  # (B, T-1, V)
    shift_labels = labels[:, 1:]  # (B, T-1)
    count = int((shift_labels != IGNORE_INDEX).sum())
    loss = F.cross_entropy(
        shift_logits.reshape(-1, shift_logits.size(-1)),
        shift_labels.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )
    return loss, count


class OmniSapiens(nn.Module):
    """The Thinker (plain or peft-wrapped) + :class:`TaskHeads`. ``hidden_size`` is the LLM's width.

    ``thinker`` may be any backbone that exposes hidden states (``backbone``: its
    :mod:`~hba_core.model.backbones` adapter, Qwen2.5-Omni's Thinker when omitted): Qwen2.5-VL, Gemma 3, a
    causal LM. The heads read ``hidden_states[-2]`` and the decoder is ``get_output_embeddings()`` for all.
    """

    def __init__(self, thinker: nn.Module, label_space: dict[str, list[str]], backbone: Backbone | None = None):
        super().__init__()
        self.thinker = thinker
        self.backbone = backbone or backbone_for({"model_type": "qwen2_5_omni_thinker"})
        hidden = self.text_config.hidden_size
        self.heads = TaskHeads(hidden, label_space)
        self.heads_trained = True  # False when loaded from a checkpoint whose heads are their random init (gen)

    @property
    def text_config(self) -> Any:
        config = self.thinker.config
        return getattr(config, "text_config", config)

    @property
    def label_space(self) -> dict[str, list[str]]:
        return self.heads.label_space

    def lm_head(self) -> nn.Linear:
        return self.thinker.get_output_embeddings()

    def head_logits(self, pooled: torch.Tensor, tasks: list[str]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        return self.heads(pooled, tasks)

    def forward(self, batch: Batch, *, cls: bool = True, lm: bool = True) -> Losses:
        """Losses of a batch: CE of the task heads (rows with a label) and LM CE on target tokens.

        ``total`` = mean CE over labelled rows + mean CE over target tokens (L = L_cls + L_qa, App. B.1).
        Without the LM loss (``lm=False``: the cls stage) the backbone stops at the penultimate layer
        (:func:`pooled_penultimate_early`): the last layer and the logits would get no gradient anyway, so
        loss and gradients are those of the full forward (tests/test_any_sft.py), for less work and memory.
        """
        if lm:
            pooled, out = pooled_penultimate(self.thinker, batch)
        else:
            pooled, out = pooled_penultimate_early(self.thinker, batch), None
        parts: list[torch.Tensor] = []
        losses = Losses(total=torch.zeros((), device=pooled.device))
        if cls:
            routed = self.head_logits(pooled, batch.tasks)
            total, count = classification_loss(routed, batch.label_index)
            if total is not None and count:
                parts.append(total / count)
                losses.cls_sum, losses.cls_count = float(total.detach()), count
                for rows, logits in routed.values():
                    best = logits.detach().argmax(-1)
                    losses.correct += int((best == batch.label_index.index_select(0, rows)).sum())
                    losses.predicted.update(zip(rows.tolist(), best.tolist()))
        if out is not None and batch.lm_labels is not None:
            total, count = lm_loss_sum(out.logits, batch.lm_labels)
            if count:
                parts.append(total / count)
                losses.lm_sum, losses.lm_count = float(total.detach()), count
        if parts:
            losses.total = torch.stack(parts).sum()
        elif any(p.requires_grad for p in self.parameters()):
            # Keep every rank's autograd graph alike (DeepSpeed/DDP) even when a batch has nothing to learn.
            losses.total = pooled.sum() * 0.0
        return losses

    @torch.no_grad()
    def classify(self, batch: Batch) -> dict[int, tuple[str, dict[str, float]]]:
        """Row -> (predicted label, label -> probability) for rows with a head, within each row's dataset labels."""
        pooled = pooled_penultimate_early(self.thinker, batch)
        return self.classify_pooled(pooled, batch.tasks, batch.datasets)

    @torch.no_grad()
    def classify_pooled(
        self, pooled: torch.Tensor, tasks: list[str], datasets: list[str] | None = None
    ) -> dict[int, tuple[str, dict[str, float]]]:
        """:meth:`classify` on pooled h_penult (B, H) already computed (BAM adds its Δh first).

        With ``datasets`` each row answers only with its dataset's labels: a head is shared by a task's
        datasets (CH-SIMS v2 has no plain ``positive``, MOSEI emotion no ``neutral``), and a label the
        dataset lacks could only ever be scored wrong.
        """
        result: dict[int, tuple[str, dict[str, float]]] = {}
        for code, (rows, logits) in self.head_logits(pooled, tasks).items():
            index = rows.tolist()
            allowed = [dataset_labels(datasets[i]) for i in index] if datasets is not None else None
            result.update(label_probabilities(logits, self.label_space[code], index, allowed))
        return result


def label_probabilities(
    logits: torch.Tensor,
    labels: list[str],
    rows: list[int],
    allowed: list[tuple[str, ...]] | None = None,
) -> dict[int, tuple[str, dict[str, float]]]:
    """Row -> (argmax label, label -> softmax probability) for logits (n, n_labels) of ``rows``.

    ``allowed`` (one label tuple per row): the other labels' logits are masked out before the softmax,
    so they get probability exactly 0 and are never the answer. ``probs`` keeps the head's label order.
    """
    logits = logits.float()
    if allowed is not None:
        mask = torch.tensor([[label in ok for label in labels] for ok in allowed], device=logits.device)  # (n, K)
        if not bool(mask.any(-1).all()):
            raise ValueError(f"a row allows none of the head's labels {labels}: {allowed}")
        logits = logits.masked_fill(~mask, float("-inf"))
    probs = logits.softmax(-1).cpu()  # (n, K)
    return {
        row: (labels[int(p.argmax())], {label: float(v) for label, v in zip(labels, p)}) for row, p in zip(rows, probs)
    }


@torch.no_grad()
def generate(
    thinker: nn.Module,
    batch: Batch,
    tokenizer: Any,
    *,
    max_new_tokens: int = 64,
    greedy: bool = True,
    temperature: float = 1.0,
    stop_ids: list[int] | None = None,
) -> list[str]:
    """Decoded continuations of a (left-padded) batch; greedy by default, sampling with ``greedy=False``.

    ``stop_ids``: the token ids a row stops at (default: the tokenizer's EOS; Gemma 3 also ends a turn with
    ``<end_of_turn>``, which is not its EOS).
    """
    kwargs: dict[str, Any] = {
        "max_new_tokens": max_new_tokens,
        "do_sample": not greedy,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": stop_ids or tokenizer.eos_token_id,
    }
    if not greedy:
        kwargs["temperature"] = temperature
    out = thinker.generate(**model_inputs(batch), **kwargs)
    new = out[:, batch.inputs["input_ids"].shape[1] :]
    return tokenizer.batch_decode(new, skip_special_tokens=True)


def response_logprobs(
    thinker: nn.Module,
    batch: Batch,
    response_ids: torch.Tensor,
    response_mask: torch.Tensor,
    *,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Per-token log-probabilities (B, R) of ``response_ids`` (B, R) appended to the batch's prompts.

    ``response_mask`` (B, R) is 1 on real response tokens; padded positions get 0. Gradients flow
    (GRPO's policy ratio); wrap in ``torch.no_grad()`` for the reference model. ``temperature`` is the
    one the responses were sampled with: the logits are divided by it, as generate's sampler did, so
    pi_old is the distribution the tokens were actually drawn from.
    """
    inputs = model_inputs(batch)
    prompt_len = inputs["input_ids"].shape[1]
    inputs["input_ids"] = torch.cat([inputs["input_ids"], response_ids], dim=1)  # (B, P+R)
    inputs["attention_mask"] = torch.cat([inputs["attention_mask"], response_mask.to(inputs["attention_mask"])], 1)
    logits = thinker(**inputs, use_cache=False).logits  # (B, P+R, V)
    logits = logits[:, prompt_len - 1 : -1].float() / temperature  # the positions predicting each response token
    logp = torch.log_softmax(logits, dim=-1).gather(-1, response_ids.unsqueeze(-1)).squeeze(-1)
    return logp * response_mask.to(logp.dtype)

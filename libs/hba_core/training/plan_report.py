"""How a :class:`~hba_core.training.plan.MemoryPlan` is shown: a table of its parts per GPU, the verdict
against the visible GPUs' free memory (or ``--gpu-memory``), and a JSON-ready object."""

from __future__ import annotations

from dataclasses import fields
from typing import TYPE_CHECKING, Any

from hba_core.training.meta_counts import STAGES

if TYPE_CHECKING:
    from hba_core.training.plan import MemoryPlan

GIB = 2**30


def visible_gpus() -> int:
    """CUDA devices visible to this process; 1 without CUDA (the plan is then for one GPU)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 1


def gpu_free_memory() -> tuple[str, float] | None:
    """(device name, free GiB) of the first visible CUDA device; None without CUDA."""
    import torch

    if not torch.cuda.is_available():
        return None
    free, _ = torch.cuda.mem_get_info(0)
    return torch.cuda.get_device_name(0), free / GIB


def format_plan(plan: MemoryPlan, *, gpu_memory: float | None = None, gpu_name: str = "GPU") -> str:
    """A table of the parts (GiB per GPU) and one line: fits / does not fit N x <GPU> (<free> GiB).

    ``gpu_memory`` (GiB) is the memory to plan against; without it, the first CUDA device's free memory
    (``torch.cuda.mem_get_info``); without CUDA either, the line says to pass ``--gpu-memory``.
    """
    rows = [
        ("params", plan.params),
        ("grads", plan.grads),
        ("optimizer", plan.optimizer),
        ("buffers", plan.buffers),
        ("activations", plan.activations),
        ("logits", plan.logits),
    ]
    if plan.kv_cache:
        rows.append(("kv cache (rollout)", plan.kv_cache))
    rows.append(("total" if not plan.kv_cache else "total (states + larger phase)", plan.total))
    head = (
        f"{STAGES[plan.stage].tool}: {plan.dtype}, ZeRO-{plan.zero}, micro-batch {plan.micro_batch} x "
        f"{plan.seq_len} tokens, {plan.gpus} GPU(s), gradient checkpointing "
        f"{'on' if plan.gradient_checkpointing else 'off'}, LoRA r={plan.lora_r}; "
        f"{plan.total_params:,} parameters, {plan.trainable_params:,} trainable"
    )
    width = max(len(name) for name, _ in rows)
    lines = [head, f"{'per GPU':<{width}}  {'GiB':>8}"]
    lines += [f"{name:<{width}}  {value / GIB:>8.2f}" for name, value in rows]
    if gpu_memory is None:
        found = gpu_free_memory()
        if found is None:
            lines.append("no CUDA device visible: pass --gpu-memory GIB to check the fit")
            return "\n".join(lines)
        gpu_name, gpu_memory = found
    verdict = "fits" if plan.total <= gpu_memory * GIB else "does not fit"
    lines.append(f"{verdict} {plan.gpus} x {gpu_name} ({gpu_memory:.1f} GiB)")
    return "\n".join(lines)


def plan_dict(plan: MemoryPlan) -> dict[str, Any]:
    """The plan as one JSON-ready object (parts in bytes, ``model_states`` and ``total`` included)."""
    return {
        **{f.name: getattr(plan, f.name) for f in fields(plan)},
        "model_states": plan.model_states,
        "total": plan.total,
    }

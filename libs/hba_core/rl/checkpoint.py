"""GRPO run directories: resumable step checkpoints and the final servable model.

Layout of ``--out`` (``runs/rl``)::

    run-config.json          # every option, resolved (schemas/run-config.schema.json, tool hba-grpo)
    metrics.jsonl            # one line per step (and per validation), appended as the run goes
    checkpoints/step-000010/ # policy weights (full Thinker, or the LoRA adapter) + trainer.pt
    latest                   # name of the newest complete checkpoint (written last, atomically)
    final/                   # the trained Thinker + processor (LoRA merged): hba-predict loads it

Each checkpoint directory is written beside its name and swapped in
(:func:`hba_core.training.state.atomic_dir`), then ``latest`` is replaced atomically, so a kill at any
moment leaves the previous checkpoint intact. ``trainer.pt`` holds the
optimizer state, the step and every rank's CPU and CUDA RNG state, and loads with ``torch.load(weights_only=True)``.
Under DeepSpeed the optimizer state is DeepSpeed's own checkpoint (``deepspeed/`` inside the step dir).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from hba_core.jsonl import atomic_output
from hba_core.training.distributed import barrier
from hba_core.training.state import atomic_dir

LATEST = "latest"
TRAINER_STATE = "trainer.pt"


def step_dir(out: Path, step: int) -> Path:
    return out / "checkpoints" / f"step-{step:06d}"


def latest_checkpoint(out: Path) -> Path | None:
    """The newest complete checkpoint of a run directory, or None when it has none."""
    pointer = out / LATEST
    if not pointer.is_file():
        return None
    path = out / "checkpoints" / pointer.read_text().strip()
    return path if (path / TRAINER_STATE).is_file() else None


def save_policy(policy: Any, processor: Any, target: Path, *, merge_lora: bool) -> None:
    """``save_pretrained`` of the policy (adapter only for LoRA unless ``merge_lora``) + the processor."""
    from peft import PeftModel

    model = policy
    if merge_lora and isinstance(policy, PeftModel):
        import copy

        model = copy.deepcopy(policy).merge_and_unload()  # the live policy keeps its adapter
    model.save_pretrained(str(target))
    if processor is not None:
        processor.save_pretrained(str(target))


def write_checkpoint(
    out: Path,
    step: int,
    *,
    policy: Any,
    processor: Any,
    trainer_state: dict[str, Any],
    deepspeed_engine: Any = None,
    is_main: bool = True,
) -> Path:
    """Write ``checkpoints/step-NNNNNN`` atomically and point ``latest`` at it; returns its path.

    Every rank calls this under DeepSpeed (its checkpoint is collective); only the main rank writes files.
    """
    target = step_dir(out, step)
    with atomic_dir(target, is_main=is_main, collective=deepspeed_engine is not None) as tmp:
        if deepspeed_engine is not None:
            deepspeed_engine.save_checkpoint(str(tmp / "deepspeed"), tag="state")
        if is_main:
            save_policy(policy, None, tmp / "policy", merge_lora=False)
            torch.save(trainer_state, tmp / TRAINER_STATE)
    if is_main:
        with atomic_output(out / LATEST) as fh:
            fh.write(target.name.encode() + b"\n")
    barrier()
    return target


def read_trainer_state(checkpoint: Path) -> dict[str, Any]:
    return torch.load(checkpoint / TRAINER_STATE, weights_only=True)


def write_final(out: Path, policy: Any, processor: Any) -> Path:
    """``final/``: a plain Thinker (LoRA merged) + processor, replaced atomically."""
    target = out / "final"
    with atomic_dir(target) as tmp:
        save_policy(policy, processor, tmp, merge_lora=True)
    return target

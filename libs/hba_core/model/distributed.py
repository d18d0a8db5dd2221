"""Processes and DeepSpeed: rank/world from the launcher, and the shipped ZeRO configs filled from the run's flags.

``torchrun`` and ``deepspeed`` both set ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``; a single process without a
launcher runs without any process group. On machines without CUDA the backend is gloo (CPU tests).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from hba_core.errors import InputError

DEEPSPEED_DIR = Path(__file__).parent / "deepspeed"


def deepspeed_config(
    name: str,
    *,
    micro_batch: int,
    accumulation: int,
    max_grad_norm: float,
    dtype: str,
) -> dict[str, Any]:
    """A shipped config (``zero2``/``zero3``) or a JSON file, with batch sizes, clipping and precision filled in."""
    path = DEEPSPEED_DIR / f"{name}.json" if name in ("zero2", "zero3") else Path(name)
    if not path.is_file():
        raise InputError("--deepspeed", f"no DeepSpeed config {name}; use zero2, zero3 or a JSON file")
    config = json.loads(path.read_text())
    config.update(
        train_micro_batch_size_per_gpu=micro_batch,
        gradient_accumulation_steps=accumulation,
        gradient_clipping=max_grad_norm,
        bf16={"enabled": dtype == "bfloat16"},
        steps_per_print=10**9,
    )
    return config


@dataclass
class Distributed:
    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed() -> Distributed:
    """Rank/world from the launcher's env (torchrun or deepspeed); single process without one."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(f"cuda:{local}" if torch.cuda.is_available() else "cpu")
    if torch.cuda.is_available():
        torch.cuda.set_device(device)
    if world > 1:
        import deepspeed

        deepspeed.init_distributed(dist_backend="nccl" if torch.cuda.is_available() else "gloo")
    return Distributed(int(os.environ.get("RANK", "0")), world, device)


def shutdown_distributed() -> None:
    """Wait for every rank, then close the process group (no-op in a single process)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()

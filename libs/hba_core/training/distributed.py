"""Processes: rank and world size from the launcher, the process group, a barrier, and teardown.

``torchrun`` and ``deepspeed`` both set ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK``; a single process
without a launcher runs without any process group. The backend is nccl on CUDA and gloo on CPU (the
CPU tests run two gloo processes). SFT, BAM, GRPO and data-parallel prediction start the same way.

>>> d = Distributed()
>>> (d.rank, d.world_size, d.main)
(0, 1, True)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class Distributed:
    """Where this process stands: its rank, the number of processes, and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        return self.rank == 0


def launcher_env() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` as the launcher set them; ``(0, 1, 0)`` without one."""
    return (
        int(os.environ.get("RANK", "0")),
        int(os.environ.get("WORLD_SIZE", "1")),
        int(os.environ.get("LOCAL_RANK", "0")),
    )


def backend() -> str:
    return "nccl" if torch.cuda.is_available() else "gloo"


def is_initialized() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def init_distributed(*, set_device: bool = True) -> Distributed:
    """Join the launcher's process group (through DeepSpeed, which every multi-process run uses) and pick the device.

    ``set_device`` makes ``cuda:LOCAL_RANK`` the current CUDA device, so later ``.cuda()`` calls land there.
    """
    rank, world, local = launcher_env()
    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{local}" if cuda else "cpu")
    if cuda and set_device:
        torch.cuda.set_device(device)
    if world > 1 and not is_initialized():
        import deepspeed

        deepspeed.init_distributed(dist_backend=backend())
    if is_initialized():
        import torch.distributed as dist

        rank, world = dist.get_rank(), dist.get_world_size()
    return Distributed(rank, world, local, device)


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if is_initialized():
        torch.distributed.barrier()


def all_gather(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` in a single process)."""
    if not is_initialized():
        return [obj]
    gathered: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(gathered, obj)
    return gathered


def shutdown_distributed() -> None:
    """Wait for every rank, then close the process group: an open gloo/shm group can abort the process at exit."""
    if is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()

"""How many CPU threads torch gets: chosen from the cores, the processes and the DataLoader workers.

torch's default is one intra-op thread per core, for every process. On a small machine that also runs
DataLoader workers decoding media (or a second training process), those threads fight over the same
cores: on 2 cores with one worker, a tiny-model SFT step ran 6x slower with torch's 2 threads than
with 1 (docs/benchmarks.md, "CPU threads"). So each process takes its share of the cores it may
run on, less one core per worker, and never fewer than one thread.

The person at the keyboard wins: ``HBA_NUM_THREADS`` (or ``OMP_NUM_THREADS``, which torch itself
reads) sets the count outright. On a GPU the count matters little; the same rule applies.

>>> cpu_threads(cores=2, workers=1, processes=1, environ={})
1
>>> cpu_threads(cores=16, workers=2, processes=2, environ={})
6
>>> cpu_threads(cores=16, workers=0, processes=1, environ={"HBA_NUM_THREADS": "3"})
3
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from hba_core.errors import HbaError

ENV = "HBA_NUM_THREADS"


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers and taskset restrict)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def local_processes(environ: Mapping[str, str] | None = None) -> int:
    """Processes of this job on this machine: torchrun's LOCAL_WORLD_SIZE, else deepspeed's LOCAL_SIZE, else 1.

    >>> local_processes({"LOCAL_SIZE": "4"}), local_processes({})
    (4, 1)
    """
    environ = os.environ if environ is None else environ
    for name in ("LOCAL_WORLD_SIZE", "LOCAL_SIZE"):
        value = environ.get(name, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return 1


def cpu_threads(
    *,
    workers: int = 0,
    processes: int | None = None,
    cores: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> int:
    """The intra-op thread count for one process: an explicit setting, else its share of the cores."""
    environ = os.environ if environ is None else environ
    for name in (ENV, "OMP_NUM_THREADS"):
        value = environ.get(name)
        if value:
            if not value.isdigit() or int(value) < 1:
                raise HbaError(f"{name}={value!r} is not a thread count; set it to a whole number >= 1")
            return int(value)
    cores = available_cores() if cores is None else cores
    processes = local_processes(environ) if processes is None else processes
    return max(1, cores // max(1, processes) - max(0, workers))


def configure_torch_threads(workers: int = 0, processes: int | None = None) -> int:
    """Set torch's intra-op threads by :func:`cpu_threads` and return the count.

    Call it at the start of a tool's work. (Inter-op threads are left alone: torch allows setting them
    only before any parallel work, and hba's models run one op at a time.)
    """
    import torch

    threads = cpu_threads(workers=workers, processes=processes)
    torch.set_num_threads(threads)
    return threads

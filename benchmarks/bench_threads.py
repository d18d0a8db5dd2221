"""Benchmark torch's CPU thread count: hba's default (hba_core.threads) against every fixed setting.

Runs ``hba-sft cls`` (a few optimizer steps on the tiny fixture) and ``hba-predict`` (heads mode) as real
processes, once per thread setting and DataLoader worker count, in one run (the machine's load is
shared by all rows). The default is what a user gets without setting anything; the target is the
default within 1.1x of the best fixed setting for each worker count.

    python benchmarks/bench_threads.py --fixtures /tmp/hba-fixtures
    python benchmarks/bench_threads.py --fixtures /tmp/hba-fixtures --workers 0,1 --threads 1,2 --repeat 2
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hba_core.fixtures import Fixtures, build_all


def _env(threads: int | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "HBA_NUM_THREADS", "MKL_NUM_THREADS")}
    env["HF_HUB_OFFLINE"] = "1"
    if threads is not None:
        env["HBA_NUM_THREADS"] = str(threads)
    return env


def _run(cmd: list[str], threads: int | None) -> float:
    start = time.perf_counter()
    result = subprocess.run(cmd, capture_output=True, text=True, env=_env(threads))
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{result.stderr[-2000:]}")
    return elapsed


def sft_cmd(fx: Fixtures, out: Path, workers: int) -> list[str]:
    return [
        sys.executable, "-m", "hba_tools.sft", "cls", str(fx.atlas), "--data-root", str(fx.data),
        "--model", str(fx.omni), "-o", str(out), "--micro-batch", "2", "--batch-size", "4", "--max-steps", "4",
        "--warmup-steps", "1", "--workers", str(workers), "--no-gradient-checkpointing", "--epochs", "1",
        "--eval-every", "4",
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixtures", default="fixtures")
    parser.add_argument("--workers", default="0,1,2", help="DataLoader worker counts to try")
    parser.add_argument("--threads", default="1,2", help="fixed thread counts to compare the default with")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args(argv)
    fx = build_all(args.fixtures)
    settings: list[int | None] = [None, *(int(t) for t in args.threads.split(","))]
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (int(w) for w in args.workers.split(",")):
            row: dict[str, float] = {}
            for rep in range(args.repeat):
                for threads in settings:
                    name = "default" if threads is None else f"{threads} thread{'s' if threads > 1 else ''}"
                    out = Path(tmp) / f"sft-{workers}-{threads}-{rep}"
                    seconds = _run(sft_cmd(fx, out, workers), threads)
                    row[name] = min(row.get(name, float("inf")), seconds)
            best = min(v for k, v in row.items() if k != "default")
            row["default / best"] = row["default"] / best
            results[f"hba-sft cls, {workers} workers"] = row
            cells = "  ".join(f"{k} {v:.2f}{'' if k == 'default / best' else ' s'}" for k, v in row.items())
            print(f"hba-sft cls (4 steps), --workers {workers}: {cells}", flush=True)
    print(f"cores available: {len(os.sched_getaffinity(0))}; load average: {os.getloadavg()[0]:.1f}")
    return results


if __name__ == "__main__":
    main()

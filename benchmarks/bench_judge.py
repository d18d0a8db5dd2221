"""hba-judge throughput against a local OpenAI-compatible server with 100 ms latency per request.

Measures (1) judgments per second at several concurrency levels against the bound concurrency / latency,
and (2) a fully cached re-run of 10,000 judgments (in-process, and the whole `hba-judge` command).
The server (tests/openai_server.py) runs in its own process so it does not share our CPU time slice.

    python benchmarks/bench_judge.py            # ~1-2 minutes
    python benchmarks/bench_judge.py --quick    # smaller runs
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hba_core.jsonl import write_jsonl
from hba_core.judge import prompts
from hba_core.judge.client import ClientSettings
from hba_core.judge.run import judge

ROOT = Path(__file__).resolve().parents[1]
LATENCY = 0.1
FREE = ("siq2", "intentqa", "mimeqa")


def start_server(latency: float) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "openai_server.py"), "--latency", str(latency)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def write_inputs(folder: Path, n: int, tag: str) -> tuple[Path, Path]:
    rows = [
        {
            "id": f"{tag}{i}",
            "dataset": FREE[i % 3],
            "problem": f"<video>\nWhy {i}? Answer briefly.",
            "answer": f"Reason {i}.",
        }
        for i in range(n)
    ]
    preds = [{"id": f"{tag}{i}", "prediction": f"<think>hmm</think>reason {i} ({tag})"} for i in range(n)]
    truth, pred = folder / f"{tag}-truth.jsonl", folder / f"{tag}-pred.jsonl"
    write_jsonl(truth, rows)
    write_jsonl(pred, preds)
    return truth, pred


def run(folder: Path, url: str, tag: str, n: int, concurrency: int, cache: Path | None) -> tuple[float, float]:
    """Judge n samples; return (wall seconds, this process's CPU seconds)."""
    truth, pred = folder / f"{tag}-truth.jsonl", folder / f"{tag}-pred.jsonl"
    if not truth.exists():
        write_inputs(folder, n, tag)
    start, cpu = time.perf_counter(), time.process_time()
    summary = judge(
        truth,
        pred,
        folder / f"{tag}-out.jsonl",
        settings=ClientSettings(base_url=url, model="bench", concurrency=concurrency, timeout_s=30),
        api_key="sk-bench",
        variant=prompts.variant("paper"),
        cache_path=cache,
        show_progress=False,
    )
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert summary.by_status["ok"] == n, summary.lines()
    return elapsed, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    levels = (8, 32) if args.quick else (8, 32, 64, 128)
    cached_n = 2000 if args.quick else 10_000
    proc, url = start_server(LATENCY)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            print(f"server {url}, latency {LATENCY * 1000:.0f} ms per request; cpu cores {os.cpu_count()}")
            import openai  # noqa: F401 - imported on first use by the client: keep it out of the first timing

            print(
                f"{'concurrency':>11} {'judgments':>9} {'seconds':>8} {'judg/s':>8} {'bound/s':>8} {'of bound':>8} "
                f"{'client CPU ms/judgment':>23}"
            )
            for c in levels:
                n = c * 12
                elapsed, cpu = run(folder, url, f"c{c}", n, c, None)
                rate, bound = n / elapsed, c / LATENCY
                print(
                    f"{c:>11} {n:>9} {elapsed:>8.2f} {rate:>8.1f} {bound:>8.0f} {rate / bound:>8.0%} "
                    f"{1000 * cpu / n:>23.2f}"
                )

            cache = folder / "cache.sqlite"
            fill, _ = run(folder, url, "cached", cached_n, 64, cache)
            again, _ = run(folder, url, "cached", cached_n, 64, cache)
            truth, pred = folder / "cached-truth.jsonl", folder / "cached-pred.jsonl"
            start = time.perf_counter()
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "hba_tools.judge",
                    "--truth",
                    str(truth),
                    "--pred",
                    str(pred),
                    "--out",
                    str(folder / "cli.jsonl"),
                    "--base-url",
                    url,
                    "--model",
                    "bench",
                    "--cache",
                    str(cache),
                ],
                env={**os.environ, "OPENAI_API_KEY": "sk-bench"},
                capture_output=True,
                text=True,
            )
            cli = time.perf_counter() - start
            if done.returncode != 0 or f"{cached_n} from cache, 0 requests" not in done.stderr:
                raise SystemExit(f"hba-judge failed or was not fully cached:\n{done.stderr}")
            print()
            print(f"{'cache run':<34} {'judgments':>9} {'seconds':>8}")
            print(f"{'first run (fills cache, c=64)':<34} {cached_n:>9} {fill:>8.2f}")
            print(f"{'fully cached re-run (in process)':<34} {cached_n:>9} {again:>8.2f}")
            print(f"{'fully cached re-run (hba-judge)':<34} {cached_n:>9} {cli:>8.2f}")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()

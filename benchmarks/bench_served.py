"""Served prediction (hba-predict --endpoint) throughput against a local server with 100 ms latency per request.

Measures samples per second at 8 / 32 / 64 requests in flight as a share of the concurrency bound
(concurrency / latency), on text-only samples so media encoding does not dominate, plus one line for
video+audio samples (each request carries an mp4 and a wav as base64 parts) at 32. No cache: every sample
is a request. The server (tests/openai_server.py --predict) runs in its own process; the load average is
printed at the start and the end (the machine may be shared). Each line also gives the client's CPU time per
sample (process CPU time of the client process only, which the load distorts far less than wall-clock) and
the share of the bound that CPU alone allows, 1 / (CPU s per sample x bound/s): a load-independent figure.

`--before DIR` measures another source tree as well (DIR/libs holding hba_core), alternating the two in one
run (each in its own process, medians of the rounds) so both see the same machine load.

    python benchmarks/bench_served.py            # ~30 s on an idle machine
    python benchmarks/bench_served.py --quick    # smaller runs
    python benchmarks/bench_served.py --before /tmp/hba-before
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

import numpy as np
from bench_judge import cpu_alone_share, process_cpu_s

ROOT = Path(__file__).resolve().parents[1]
LATENCY = 0.1


def start_server(latency: float) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "openai_server.py"), "--latency", str(latency), "--predict"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def write_media(root: Path) -> None:
    """A 2 s 64x64 mp4 (~20 KB) and a 2 s 16 kHz wav (64 KB): small clips, as the Atlas's are after cutting."""
    import av

    with av.open(str(root / "v.mp4"), "w") as c:
        s = c.add_stream("mpeg4", rate=10)
        s.width, s.height, s.pix_fmt = 64, 64, "yuv420p"
        for i in range(20):
            frame = np.random.default_rng(i).integers(0, 255, (64, 64, 3), dtype=np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    with wave.open(str(root / "a.wav"), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes((np.sin(np.arange(32000) / 10) * 8000).astype("<i2").tobytes())


def write_samples(path: Path, n: int, tag: str, media: bool) -> None:
    from hba_core.jsonl import write_jsonl

    rows = []
    for i in range(n):
        row = {"id": f"{tag}{i}", "dataset": "mosei_senti", "answer": "neutral"}
        if media:
            row.update(problem=f"<video>\n<audio>\nSentiment of clip {i}?", videos=["v.mp4"], audios=["a.wav"])
        else:
            row["problem"] = f"What is the sentiment of utterance {i} ({tag})?"
        rows.append(row)
    write_jsonl(path, rows)


def measure(folder: Path, url: str, c: int, n: int, media: bool) -> tuple[float, float]:
    """(samples per second, client CPU ms per sample) of one served run of n samples at concurrency c."""
    from hba_core.chat_client import ClientSettings
    from hba_core.served import ServedSettings, predict_served

    tag = f"{'m' if media else 't'}{c}-{os.getpid()}-"  # one output per run: the rounds must not resume each other
    samples = folder / f"{tag}samples.jsonl"
    write_samples(samples, n, tag, media)
    start, cpu = time.perf_counter(), time.process_time()
    summary = predict_served(
        samples,
        folder / f"{tag}out.jsonl",
        model="bench",
        client=ClientSettings(base_url=url, model="bench", concurrency=c, timeout_s=30),
        api_key="sk-bench",
        served=ServedSettings(data_root=str(folder)),
        cache_path=None,
    )
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert summary["written"] == n and summary["failed"] == 0, summary
    return n / elapsed, 1000 * cpu / n


KINDS = [("text", 8, False), ("text", 32, False), ("text", 64, False), ("video+audio", 32, True)]


def worker(url: str, folder: Path, per_slot: int, server_pid: int) -> None:
    """Every line of the table with whichever hba_core is importable; prints one JSON list."""
    from hba_core.chat_client import http_library

    http_library()  # imported once, outside the timings
    out = []
    for kind, c, media in KINDS:
        server = process_cpu_s(server_pid)
        rate, cpu_ms = measure(folder, url, c, c * per_slot, media=media)
        server_ms = 1000 * (process_cpu_s(server_pid) - server) / (c * per_slot)
        out.append({"kind": kind, "c": c, "rate": rate, "cpu_ms": cpu_ms, "server_ms": server_ms})
    print(json.dumps(out))


def _sub(tree: Path | None, url: str, folder: str, per_slot: int, server_pid: int) -> list[dict]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if tree is not None:  # the other tree's hba_core first on the path (PYTHONPATH beats the editable install)
        env["PYTHONPATH"] = str(tree / "libs")
    command = [sys.executable, __file__, "--worker", "--url", url, "--folder", folder, "--per-slot", str(per_slot)]
    command += ["--server-pid", str(server_pid)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"benchmark worker failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--before", type=Path, default=None, help="another source tree to measure alongside")
    parser.add_argument("--rounds", type=int, default=None, help="alternating rounds per tree [2, 1 with --quick]")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--per-slot", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--server-pid", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    per_slot = args.per_slot or (5 if args.quick else 10)  # samples per concurrency slot: start-up is a small share
    if args.worker:
        worker(args.url, Path(args.folder), per_slot, args.server_pid)
        return
    rounds = args.rounds or (1 if args.quick else 2)
    trees: list[tuple[str, Path | None]] = [("after", None)]
    if args.before is not None:
        trees.insert(0, ("before", args.before))
    load_start = os.getloadavg()
    print(
        f"load average at start: {load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f} ({os.cpu_count()} cores)"
    )
    server, url = start_server(LATENCY)
    results: dict[str, list[dict]] = {label: [] for label, _ in trees}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            write_media(Path(tmp))
            for _ in range(rounds):  # alternate the trees so both see the same load
                for label, tree in trees:
                    results[label] += _sub(tree, url, tmp, per_slot, server.pid)
    finally:
        server.terminate()
        server.wait()
    load_end = os.getloadavg()
    print(f"medians of {rounds} alternating rounds; client CPU alone allows = 1 / (client CPU s per sample x bound/s)")
    print(
        "| tree | samples | in flight | samples/s | bound (c / 0.1 s) | share of bound | client CPU ms/sample "
        "| client CPU alone allows | server CPU ms/sample |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for label, _ in trees:
        for kind, c, _media in KINDS:
            runs = [r for r in results[label] if r["kind"] == kind and r["c"] == c]
            rate = statistics.median(r["rate"] for r in runs)
            cpu_ms = statistics.median(r["cpu_ms"] for r in runs)
            server_ms = statistics.median(r["server_ms"] for r in runs)
            bound = c / LATENCY
            print(
                f"| {label} | {kind} | {c} | {rate:.1f} | {bound:.0f} | {rate / bound:.2f} | {cpu_ms:.2f} "
                f"| {cpu_alone_share(cpu_ms / 1000, bound):.2f} x bound | {server_ms:.2f} |"
            )
    print(f"load average at end: {load_end[0]:.2f} {load_end[1]:.2f} {load_end[2]:.2f}")


if __name__ == "__main__":
    main()

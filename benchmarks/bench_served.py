"""Served prediction (hba-predict --endpoint) throughput against a local server with 100 ms latency per request.

Measures samples per second at 8 / 32 / 64 requests in flight as a share of the concurrency bound
(concurrency / latency), on text-only samples so media encoding does not dominate, plus one line for
video+audio samples (each request carries an mp4 and a wav as base64 parts) at 32. No cache: every sample
is a request. The server (tests/openai_server.py --predict) runs in its own process; the load average is
printed at the start and the end (the machine may be shared).

    python benchmarks/bench_served.py            # ~30 s on an idle machine
    python benchmarks/bench_served.py --quick    # smaller runs
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

import numpy as np

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

    tag = f"{'m' if media else 't'}{c}-"
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    per_slot = 5 if args.quick else 10  # samples per concurrency slot: start-up and tail are a small share
    load_start = os.getloadavg()
    print(
        f"load average at start: {load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f} ({os.cpu_count()} cores)"
    )
    server, url = start_server(LATENCY)
    lines = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            write_media(folder)
            from hba_core.chat_client import http_library

            http_library()  # imported once, outside the timings

            for c in (8, 32, 64):
                lines.append(("text", c, *measure(folder, url, c, c * per_slot, media=False)))
            lines.append(("video+audio", 32, *measure(folder, url, 32, 32 * per_slot, media=True)))
    finally:
        server.terminate()
        server.wait()
    load_end = os.getloadavg()
    print("| samples | in flight | samples/s | bound (c / 0.1 s) | share of bound | client CPU ms/sample |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for kind, c, rate, cpu_ms in lines:
        bound = c / LATENCY
        print(f"| {kind} | {c} | {rate:.1f} | {bound:.0f} | {rate / bound:.2f} | {cpu_ms:.1f} |")
    print(f"load average at end: {load_end[0]:.2f} {load_end[1]:.2f} {load_end[2]:.2f}")


if __name__ == "__main__":
    main()

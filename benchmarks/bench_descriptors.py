"""Descriptor benchmarks: tool overhead per stream, --workers 2 vs 1, and the store vs per-clip .pt files.

Hardware: CPU only (written on a shared 2-core machine). Time: ~3 min for the throughput part,
~3-10 min for 100,000 .pt files (2 GB in /tmp; most of the time is writing them). Example:

    python benchmarks/bench_descriptors.py                      # everything, 100,000 clips for the read test
    python benchmarks/bench_descriptors.py --clips 20000 --skip-throughput
    python benchmarks/bench_descriptors.py --skip-throughput --skip-read --face-pairs 7 --media-clips 24

0. `DescriptorStore.append` CPU per clip and per commit (commits of 1, 12 and 48 face + pose clips).

1. Per stream (face, pose, audio), one worker: ``run_extract`` on fixture face clips / voiced wavs versus the bare
   minimum - the same decoding (PyAV) plus MediaPipe / OpenSMILE called directly on the decoded
   frames / audio. overhead = tool / direct - 1 (target <= 10%).
2. ``--workers 2`` versus ``--workers 1`` on the same clips, all streams (target >= 1.7x on 2 cores).
2b. The face overhead again as the median of ``--face-pairs`` back-to-back (direct, tool) runs: one run's
   CPU time moves 10-25 % with MediaPipe's own threads, a median of pairs far less (target <= 10%).
3. Reading the pooled [mean, std] vectors of N clips from the store versus loading N individual
   ``.pt`` files (the official release's layout, (60, 65) float32 each) and pooling them
   (target >= 20x), and the size of both on disk.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def _du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def make_clips(root: Path, n: int, seconds: float, kind: str = "video") -> list[str]:
    """Face clips (mp4) or voiced wavs under ``root`` and ``root/<kind>.jsonl`` using them; returns the keys."""
    from hba_core.fixtures.media import write_face_clip, write_voice_wav
    from hba_core.jsonl import write_jsonl

    rows, keys = [], []
    for i in range(n):
        key = f"{kind}/b{i}.{'mp4' if kind == 'video' else 'wav'}"
        if kind == "video":
            write_face_clip(root / key, seconds=seconds, seed=i)
        else:
            write_voice_wav(root / key, seconds=seconds, seed=i)
        rows.append({"dataset": "cremad", "problem": f"<{kind}>\nQ", "answer": "x", f"{kind}s": [key]})
        keys.append(key)
    write_jsonl(root / f"{kind}.jsonl", rows)
    return keys


def direct(root: Path, keys: list[str], stream: str, fps: float) -> tuple[float, float]:
    """Decode like the tool, then call MediaPipe / OpenSMILE directly; no conversion, no store."""
    import mediapipe as mp
    import opensmile

    from hba_core.media import decode_audio, sample_video_frames

    start, cpu = time.perf_counter(), _cpu()
    if stream == "audio":
        smile = opensmile.Smile(
            feature_set=opensmile.FeatureSet.ComParE_2016, feature_level=opensmile.FeatureLevel.LowLevelDescriptors
        )
        for key in keys:
            smile.process_signal(decode_audio(root / key), 16_000)
        return time.perf_counter() - start, _cpu() - cpu
    # the floor a careful direct user reaches: one graph per run, reset between clips (as the tool does)
    graph = (
        mp.solutions.face_mesh.FaceMesh(max_num_faces=1)
        if stream == "face"
        else mp.solutions.pose.Pose(model_complexity=1)
    )
    for key in keys:
        frames = sample_video_frames(root / key, fps=fps, max_side=640).frames
        graph.reset()
        for frame in frames:
            graph.process(frame)
    graph.close()
    return time.perf_counter() - start, _cpu() - cpu


def _cpu() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def tool_cpu(samples: Path, root: Path, store: Path, streams: tuple[str, ...], workers: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process and its finished workers) of one extraction into a new store."""
    from hba_core.descriptors.extract import run_extract
    from hba_core.descriptors.video import close_trackers

    close_trackers()  # each run builds its graphs once, as a fresh process does (and as direct() does)
    shutil.rmtree(store, ignore_errors=True)
    start, cpu = time.perf_counter(), _cpu()
    summary = run_extract(samples, root, store, streams, workers=workers)
    assert not summary.errors, summary.errors
    return time.perf_counter() - start, _cpu() - cpu


def throughput(work: Path, n_clips: int, seconds: float) -> None:
    from hba_core.descriptors.video import VideoConfig

    fps = VideoConfig().fps
    root = work / "clips"
    videos = make_clips(root, n_clips, seconds)
    wavs = make_clips(root, 8 * n_clips, 2 * seconds, "audio")  # audio is ~20x cheaper: more of it
    samples = root / "video.jsonl"
    tool_cpu(samples, root, work / "warm.zarr", ("face", "pose", "audio"), 1)  # warm caches and imports
    load = os.getloadavg()[0]
    print(
        f"\nvideo: {n_clips} mp4 x {seconds:g} s at {fps:g} fps; audio: {len(wavs)} wav x {2 * seconds:g} s; one worker"
    )
    print("(CPU seconds are what a worker spends; wall seconds also count waiting for a busy machine's cores)")
    (root / "none.jsonl").write_text("")
    print(
        f"{'stream':<8} {'direct CPU s':>13} {'tool CPU s':>11} {'overhead':>9} {'w/o setup':>10} "
        f"{'direct wall':>12} {'tool wall':>10} {'clips/CPU s':>12}"
    )
    for stream in ("face", "pose", "audio"):
        keys, source = (wavs, root / "audio.jsonl") if stream == "audio" else (videos, samples)
        bare = min((direct(root, keys, stream, fps) for _ in range(3)), key=lambda r: r[1])
        ours = min(
            (tool_cpu(source, root, work / f"{stream}.zarr", (stream,), 1) for _ in range(3)), key=lambda r: r[1]
        )
        # one-off cost of a run (store creation, attribute writes), paid once per run, not per clip
        setup = min(tool_cpu(root / "none.jsonl", root, work / "none.zarr", (stream,), 1)[1] for _ in range(3))
        overhead = ours[1] / bare[1] - 1
        print(
            f"{stream:<8} {bare[1]:>13.2f} {ours[1]:>11.2f} {overhead:>+9.1%} "
            f"{(ours[1] - setup) / bare[1] - 1:>+10.1%} {bare[0]:>12.2f} {ours[0]:>10.2f} "
            f"{len(keys) / ours[1]:>12.1f}  target <= +10%: {'met' if overhead <= 0.10 else 'NOT met'}"
        )
    (one, one_cpu), (two, two_cpu) = (
        tool_cpu(samples, root, work / f"w{n}.zarr", ("face", "pose", "audio"), n) for n in (1, 2)
    )
    print(
        f"all streams: --workers 1 {one:.2f} s ({one_cpu:.1f} CPU s), --workers 2 {two:.2f} s ({two_cpu:.1f} CPU s,"
        f" incl. 2 worker start-ups) -> speed-up {one / two:.2f}x"
    )
    print(
        f"os.cpu_count()={os.cpu_count()}, load average before/after {load:.1f}/{os.getloadavg()[0]:.1f} "
        "(other processes on the machine make these ratios unreliable)"
    )


def face_pairs(work: Path, n_clips: int, seconds: float, pairs: int) -> None:
    """The face stream's overhead as the median of ``pairs`` back-to-back (direct, tool) runs on the same clips.

    MediaPipe's own threads move a single run's CPU time by 10-25 % on a small machine; pairs run
    seconds apart see the same conditions, so their ratios scatter less than separate minima.
    """
    from hba_core.descriptors.video import VideoConfig

    fps = VideoConfig().fps
    root = work / "pairs"
    videos = make_clips(root, n_clips, seconds)
    samples = root / "video.jsonl"
    tool_cpu(samples, root, work / "pairs-warm.zarr", ("face",), 1)  # imports and file caches
    load = os.getloadavg()[0]
    ratios = []
    for k in range(pairs):
        bare = direct(root, videos, "face", fps)[1]
        ours = tool_cpu(samples, root, work / "pairs.zarr", ("face",), 1)[1]
        if k % 2:  # the other order too: neither side always runs second
            bare = (bare + direct(root, videos, "face", fps)[1]) / 2
        ratios.append(ours / bare - 1)
        print(f"  pair {k + 1}: direct {bare:.2f} CPU s, tool {ours:.2f} CPU s, {ratios[-1]:+.1%}")
    median = float(np.median(ratios))
    print(
        f"face, {n_clips} mp4 x {seconds:g} s, median of {pairs} paired runs: {median:+.1%} "
        f"(range {min(ratios):+.1%} .. {max(ratios):+.1%}; load {load:.1f} -> {os.getloadavg()[0]:.1f})"
        f"  target <= +10%: {'met' if median <= 0.10 else 'NOT met'}"
    )


def append_per_clip(work: Path, clips: int = 48) -> None:
    """CPU of ``DescriptorStore.append`` per clip and per commit: face (20 x 1,404) and pose (20 x 132) clips."""
    from hba_core.descriptors.store import ClipResult, DescriptorStore

    rng = np.random.default_rng(0)
    made = [
        ClipResult(
            f"v/{i}.mp4",
            "mmsd",
            {
                "face": (rng.random((20, 1404), np.float32), np.ones(20, bool)),
                "pose": (rng.random((20, 132), np.float32), np.ones(20, bool)),
            },
        )
        for i in range(clips)
    ]
    print(f"\nDescriptorStore.append, {clips} face + pose clips of 20 frames, CPU ms:")
    for batch in (1, 12, 48):
        path = work / f"append{batch}.zarr"
        shutil.rmtree(path, ignore_errors=True)
        with DescriptorStore.open_for_writing(path, {"face": {"dim": 1404}, "pose": {"dim": 132}}) as store:
            cpu = _cpu()
            for k in range(0, clips, batch):
                store.append(made[k : k + batch])
            spent = _cpu() - cpu
        per_commit = spent / (clips / batch) * 1e3
        print(f"  {batch:>2} clips a commit: {spent / clips * 1e3:6.1f} a clip, {per_commit:6.1f} a commit")


def store_vs_pt(work: Path, n: int, frames: int) -> None:
    import torch

    from hba_core.descriptors.import_pt import import_pt
    from hba_core.descriptors.store import open_store, pooled
    from hba_core.jsonl import write_jsonl

    root = work / "release"
    rng = np.random.default_rng(0)
    keys = [f"feats/{i // 1000:03d}/{i}.pt" for i in range(n)]
    start = time.perf_counter()
    for i, key in enumerate(keys):  # smooth, LLD-like trajectories rather than white noise
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        walk = np.cumsum(rng.normal(0, 0.1, (frames, 65)), axis=0) + rng.normal(0, 1, 65)
        torch.save(torch.from_numpy(walk.astype(np.float32)), root / key)
        if i == 0:
            write_jsonl(
                work / "release.jsonl",
                ({"dataset": "cremad", "problem": "<audio>\nQ", "answer": "x", "ext_audio_feats": [k]} for k in keys),
            )
    made = time.perf_counter() - start
    start = time.perf_counter()
    summary = import_pt(work / "release.jsonl", root, work / "release.zarr", batch=5000)
    imported = time.perf_counter() - start
    assert summary.imported == n and not summary.errors

    start = time.perf_counter()
    vectors = np.empty((n, 130), np.float32)
    for i, key in enumerate(keys):  # the official layout: one file per clip
        x = torch.load(root / key, weights_only=True).double()
        vectors[i] = torch.cat([x.mean(0), x.std(0, unbiased=False)]).numpy()
    pt_seconds = time.perf_counter() - start
    start = time.perf_counter()
    from_store, _ = pooled(open_store(work / "release.zarr"), "ext_audio", keys)
    store_seconds = time.perf_counter() - start
    np.testing.assert_allclose(from_store, vectors, rtol=1e-5, atol=1e-6)
    pt_bytes, store_bytes = _du(root), _du(work / "release.zarr")
    print(f"\n{n} clips of ({frames}, 65) float32 (writing .pt {made:.0f} s, import-pt {imported:.1f} s)")
    print(f"{'layout':<28} {'read+pool s':>12} {'MB on disk':>11}")
    print(f"{'.pt per clip':<28} {pt_seconds:>12.3f} {pt_bytes / 1e6:>11.1f}")
    print(f"{'store (frames + pooled)':<28} {store_seconds:>12.3f} {store_bytes / 1e6:>11.1f}")
    print(f"store is {pt_seconds / store_seconds:.0f}x faster and {store_bytes / pt_bytes:.2f}x the size")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=100_000, help="clips for the store vs .pt test")
    parser.add_argument("--frames", type=int, default=60, help="frames per .pt clip")
    parser.add_argument("--media-clips", type=int, default=12, help="face clips for the throughput test")
    parser.add_argument("--media-seconds", type=float, default=4.0)
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--face-pairs", type=int, default=5, help="face overhead: median of N paired runs")
    parser.add_argument("--skip-read", action="store_true")
    parser.add_argument("--workdir", help="keep files here (default: a temporary directory, removed)")
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-descriptors-"))
    try:
        append_per_clip(work)
        if not args.skip_throughput:
            throughput(work, args.media_clips, args.media_seconds)
        if args.face_pairs:
            face_pairs(work, args.media_clips, args.media_seconds, args.face_pairs)
        if not args.skip_read:
            store_vs_pt(work, args.clips, args.frames)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

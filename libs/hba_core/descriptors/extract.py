"""Extraction runs: the media of a samples file -> descriptors in a store, in parallel, resumable, shardable.

Each media file is processed once however many samples use it. Videos give the ``face`` and
``pose`` streams and ``audio`` from their audio track; audio files give ``audio``. Results are
committed in small batches (see :mod:`hba_core.descriptors.store`), so a killed run loses at most
the clips in flight and a re-run skips everything committed or recorded as unreadable. Clips are
committed in the samples file's order whatever the number of workers, so a resumed or parallel
run writes the same store as one uninterrupted single-process run.

>>> parse_shard("1/4")
(1, 4)
"""

from __future__ import annotations

import hashlib
import multiprocessing
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from hba_core.descriptors.audio import audio_config, compare_lld
from hba_core.descriptors.store import ClipResult, DescriptorStore
from hba_core.descriptors.video import VIDEO_STREAMS, VideoConfig, landmarks
from hba_core.errors import HbaError, InputError, MediaError
from hba_core.jsonl import PathLike, display_name
from hba_core.media import decode_audio, resolve_media, sample_video_frames
from hba_core.sample_checks import media_list_problem, where_of
from hba_core.samples import iter_samples

STREAMS = ("face", "pose", "audio")


@dataclass(frozen=True)
class MediaJob:
    """One media file to process: its key (path as the samples write it), file, kind and the streams still to do."""

    key: str
    path: str
    kind: str  # "video" | "audio"
    dataset: str
    streams: tuple[str, ...]


@dataclass
class ExtractSummary:
    media: int = 0  # distinct media files referenced by the samples (in this shard)
    skipped: int = 0  # already in the store from an earlier run
    extracted: int = 0
    frames: dict[str, int] = field(default_factory=dict)
    invalid_frames: dict[str, int] = field(default_factory=dict)
    errors: list[tuple[str, str, str]] = field(default_factory=list)  # (key, stream, reason)
    bad_rows: list[str] = field(default_factory=list)  # "file:line (id): reason" of rows whose media were not used


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` (0-based ``i``, as in ``--shard $SLURM_ARRAY_TASK_ID/$N`` with 0-based arrays) -> ``(i, n)``."""
    try:
        i, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise HbaError(f"--shard {text!r}: expected i/n with whole numbers, e.g. 0/8") from None
    if n < 1 or not 0 <= i < n:
        raise HbaError(f"--shard {text!r}: need 0 <= i < n (shards are numbered from 0)")
    return i, n


def in_shard(key: str, shard: tuple[int, int] | None) -> bool:
    """Whether a media key belongs to shard ``(i, n)``: a hash of the key, stable across runs and machines."""
    if shard is None:
        return True
    return int(hashlib.sha1(key.encode()).hexdigest()[:12], 16) % shard[1] == shard[0]


def stream_configs(streams: tuple[str, ...], video: VideoConfig) -> dict[str, dict]:
    return {s: (audio_config() if s == "audio" else video.describe(s)) for s in streams}


def check_streams(streams: tuple[str, ...]) -> None:
    unknown = [s for s in streams if s not in STREAMS]
    if unknown:
        from hba_core.errors import UnknownNameError

        raise UnknownNameError("stream", unknown[0], list(STREAMS))


def used_media(
    samples: PathLike, *, shard: tuple[int, int] | None = None, bad_rows: list[str] | None = None
) -> dict[str, tuple[str, str]]:
    """``{key: (kind, dataset)}`` of the media the samples use (in ``shard``), in first-use order.

    A row whose ``videos``/``audios`` is not a list of paths is listed in ``bad_rows`` (when given; else an
    error) instead of being read character by character."""
    seen: dict[str, tuple[str, str]] = {}  # key -> (kind, dataset)
    for line, sample in iter_samples(samples, media=True):
        problem = media_list_problem(sample, "videos") or media_list_problem(sample, "audios")
        if problem is not None:
            where = where_of(display_name(samples), line, sample)
            if bad_rows is None:
                raise InputError(where, problem)
            bad_rows.append(f"{where}: {problem}")
            continue
        for kind, field_name in (("video", "videos"), ("audio", "audios")):
            for key in sample.get(field_name) or []:
                if key not in seen and in_shard(key, shard):
                    seen[key] = (kind, str(sample.get("dataset", "unknown")))
    return seen


def plan_jobs(
    samples: PathLike,
    root: PathLike,
    streams: tuple[str, ...],
    *,
    shard: tuple[int, int] | None = None,
    done: dict[str, set[str]] | None = None,
    bad_rows: list[str] | None = None,
    media: dict[str, tuple[str, str]] | None = None,
) -> tuple[list[MediaJob], list[ClipResult], int]:
    """The media still to process, in first-use order: ``(jobs, refused (path outside root), distinct media)``.

    ``media`` is :func:`used_media`'s answer when the samples were read already (else they are read here)."""
    check_streams(streams)
    done = done or {}
    seen = media if media is not None else used_media(samples, shard=shard, bad_rows=bad_rows)
    jobs, refused = [], []
    for key, (kind, dataset) in seen.items():
        wanted = tuple(s for s in streams if (kind == "video" or s == "audio") and key not in done.get(s, ()))
        if not wanted:
            continue
        try:
            path = resolve_media(root, key)
        except MediaError as exc:
            refused.append(ClipResult(key, dataset, errors={s: exc.message for s in wanted}))
            continue
        jobs.append(MediaJob(key, str(path), kind, dataset, wanted))
    return jobs, refused, len(seen)


def extract_clip(job: MediaJob, video: VideoConfig) -> ClipResult:
    """Run the job's streams on one media file; unreadable media become errors, not exceptions."""
    result = ClipResult(job.key, job.dataset)
    video_streams = [s for s in job.streams if s in VIDEO_STREAMS]
    if video_streams:
        try:
            clip = sample_video_frames(job.path, fps=video.fps, max_side=video.max_side)
        except MediaError as exc:
            result.errors.update({s: exc.message for s in video_streams})
        else:
            for stream in video_streams:
                result.streams[stream] = landmarks(clip.frames, clip.timestamps, stream, video)
    if "audio" in job.streams:
        try:
            signal = decode_audio(job.path)
        except MediaError as exc:
            result.errors["audio"] = exc.message
        else:
            values = compare_lld(signal)  # (T, 65), always valid
            result.streams["audio"] = (values, ~np.isnan(values).any(axis=1))
    return result


_WORKER_CONFIG: VideoConfig | None = None


def _init_worker(video: VideoConfig) -> None:
    from multiprocessing.util import Finalize

    from hba_core.descriptors.video import close_trackers

    global _WORKER_CONFIG
    _WORKER_CONFIG = video
    # a worker that exits normally (pool.close) releases its MediaPipe graphs and their threads first
    Finalize(None, close_trackers, exitpriority=10)


def _work(job: MediaJob) -> ClipResult:
    assert _WORKER_CONFIG is not None
    return extract_clip(job, _WORKER_CONFIG)


def _results(jobs: list[MediaJob], video: VideoConfig, workers: int) -> Iterator[ClipResult]:
    if workers <= 1:
        for job in jobs:
            yield extract_clip(job, video)
        return
    # spawn: MediaPipe/TFLite threads do not survive fork; ordered imap keeps the commit order deterministic
    pool = multiprocessing.get_context("spawn").Pool(workers, initializer=_init_worker, initargs=(video,))
    try:
        yield from pool.imap(_work, jobs, chunksize=1)
        pool.close()  # all done: let the workers exit on their own
    except BaseException:  # an error, Ctrl-C or the consumer stopped early: stop the clips in flight
        pool.terminate()
        raise
    finally:
        pool.join()  # reap every worker: no defunct child is left behind


def run_extract(
    samples: PathLike,
    root: PathLike,
    store_path: PathLike,
    streams: tuple[str, ...] = STREAMS,
    *,
    video: VideoConfig | None = None,
    workers: int = 1,
    shard: tuple[int, int] | None = None,
    commit_seconds: float = 5.0,
    commit_every: int = 256,
    progress: Callable[[int, int], None] | None = None,
) -> ExtractSummary:
    """Extract ``streams`` for every media file of ``samples`` not yet in the store at ``store_path``.

    Finished clips are committed every ``commit_seconds`` (or ``commit_every`` clips, whichever
    comes first), so a kill loses at most that much finished work plus the clips in flight; commits
    cost ~50 ms, hence not after every clip. ``progress(done, total)`` is called after each clip.
    """
    video = video or VideoConfig()
    extra = {"created_by": "hba-descriptors extract", "shard": list(shard) if shard else None}
    summary = ExtractSummary()
    check_streams(streams)
    # the samples are read before the store is opened: a missing or broken samples file leaves no empty store
    media = used_media(samples, shard=shard, bad_rows=summary.bad_rows)
    if "pose" in streams and not video.pose_model:
        from hba_core.descriptors.pose_models import ensure_pose_model

        ensure_pose_model(video.pose_complexity)  # offline and not bundled: fail before the store exists
    with DescriptorStore.open_for_writing(store_path, stream_configs(streams, video), extra) as store:
        done = {s: store.done(s) for s in streams}
        jobs, refused, summary.media = plan_jobs(samples, root, streams, done=done, media=media)
        summary.skipped = summary.media - len(jobs) - len(refused)
        buffer: list[ClipResult] = list(refused)
        last_commit = time.monotonic()

        def commit() -> None:
            nonlocal last_commit
            store.append(buffer)
            for clip in buffer:
                summary.errors.extend((clip.key, s, r) for s, r in clip.errors.items())
                for stream, (_, valid) in clip.streams.items():
                    summary.frames[stream] = summary.frames.get(stream, 0) + len(valid)
                    summary.invalid_frames[stream] = summary.invalid_frames.get(stream, 0) + int((~valid).sum())
            buffer.clear()
            last_commit = time.monotonic()

        try:
            for n, result in enumerate(_results(jobs, video, workers), start=1):
                buffer.append(result)
                summary.extracted += 1
                if len(buffer) >= commit_every or time.monotonic() - last_commit >= commit_seconds:
                    commit()
                if progress:
                    progress(n, len(jobs))
        finally:
            if buffer:  # finished, or interrupted (Ctrl-C): keep what is done
                commit()
    return summary

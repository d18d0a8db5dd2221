"""Looking into a store: coverage statistics, one clip, and pooled vectors per sample (what the BAM adapter reads);
and the text hba-descriptors prints about them (the command only echoes these lines).

>>> SAMPLE_MEDIA["audio"]
('audios', 'videos')
>>> error_lines([("a.mp4", "face", "unreadable")] * 3, limit=2)[-1]
'  ... and 1 more (see `hba-descriptors stats`)'
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hba_core.descriptors.store import DescriptorStore, pooled
from hba_core.jsonl import PathLike, atomic_output, dumps_line
from hba_core.samples import iter_samples

# Which media of a sample feed each stream, in order of preference: audio from the audio file, else the video's track.
SAMPLE_MEDIA: dict[str, tuple[str, ...]] = {
    "face": ("videos",),
    "pose": ("videos",),
    "audio": ("audios", "videos"),
    "ext_video": ("ext_video_feats",),
    "ext_audio": ("ext_audio_feats",),
}


def stats(store: DescriptorStore) -> list[dict[str, Any]]:
    """One row per (dataset, stream): clips, frames, frames without a detection, clips with none, errors."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for stream in store.streams:
        n, _ = store.counts(stream)
        if n == 0:
            continue
        datasets = store.column(stream, "datasets")
        lengths = store.column(stream, "lengths")
        counts = store.column(stream, "valid_counts")
        for dataset in sorted(set(map(str, datasets))):
            mine = datasets == dataset
            rows[(dataset, stream)] = {
                "dataset": dataset,
                "stream": stream,
                "clips": int(mine.sum()),
                "frames": int(lengths[mine].sum()),
                "invalid_frames": int((lengths[mine] - counts[mine]).sum()),
                "clips_without_valid_frames": int((counts[mine] == 0).sum()),
                "errors": 0,
            }
    datasets_of = {
        str(k): str(d) for s in store.streams for k, d in zip(store.column(s, "keys"), store.column(s, "datasets"))
    }
    for error in store.errors():
        dataset = datasets_of.get(error["key"], "unknown")
        row = rows.setdefault(
            (dataset, error["stream"]),
            {
                "dataset": dataset,
                "stream": error["stream"],
                "clips": 0,
                "frames": 0,
                "invalid_frames": 0,
                "clips_without_valid_frames": 0,
                "errors": 0,
            },
        )
        row["errors"] += 1
    return [rows[k] for k in sorted(rows)]


def show(store: DescriptorStore, key: str) -> dict[str, Any]:
    """Everything stored about one media key: per stream frame count, valid count, pooled vector; errors."""
    out: dict[str, Any] = {"key": key, "streams": {}, "errors": [e for e in store.errors() if e["key"] == key]}
    for stream in store.streams:
        if key in store.index(stream):
            values, valid = store.frames(stream, key)
            vector, count = pooled(store, stream, [key])
            out["streams"][stream] = {
                "frames": int(values.shape[0]),
                "valid": int(valid.sum()),
                "pooled": [None if np.isnan(x) else float(x) for x in vector[0]],
                "valid_counts": int(count[0]),
            }
    return out


def sample_vectors(
    store: DescriptorStore, samples: PathLike, streams: tuple[str, ...]
) -> tuple[list[str], dict[str, tuple[np.ndarray, np.ndarray]], int]:
    """Pooled vectors per sample: ``(ids, {stream: (float32 (n, 2D), valid counts (n,))}, missing)``.

    A sample without the media, or whose media is not in the store, gets a NaN row and count 0;
    ``missing`` counts those (sample, stream) pairs so a caller can report them.
    """
    ids: list[str] = []
    keys: dict[str, list[str]] = {s: [] for s in streams}
    for _, sample in iter_samples(samples, media=True):
        ids.append(sample["id"])
        for stream in streams:
            media = [m for f in SAMPLE_MEDIA.get(stream, ()) for m in (sample.get(f) or [])]
            keys[stream].append(media[0] if media else "")
    out, missing = {}, 0
    for stream in streams:
        matrix, counts = pooled(store, stream, keys[stream], missing="nan")
        present = store.index(stream)
        missing += sum(1 for k in keys[stream] if k not in present)
        out[stream] = (matrix, counts)
    return ids, out, missing


def write_pooled(out: str, ids: list[str], vectors: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """Write :func:`sample_vectors`' result atomically: ``.npz`` (``ids`` + per stream its matrix and
    ``<stream>_valid_counts``), else JSONL, one row per sample with NaN as ``null`` (``-`` = stdout)."""
    if out.endswith(".npz"):
        arrays = {"ids": np.array(ids, dtype=str)}
        for name, (matrix, counts) in vectors.items():
            arrays[name], arrays[f"{name}_valid_counts"] = matrix, counts
        with atomic_output(out) as fh:
            np.savez(fh, **arrays)
        return
    with atomic_output(out) as fh:
        for i, sample in enumerate(ids):
            row: dict[str, Any] = {"id": sample}
            for name, (matrix, counts) in vectors.items():
                row[name] = [None if x != x else float(x) for x in matrix[i]]
                row[f"{name}_valid_counts"] = int(counts[i])
            fh.write(dumps_line(row))


# ------------------------------------------------------------------ what the command prints (stderr)


def error_lines(errors: list[tuple[str, str, str]], limit: int = 20) -> list[str]:
    """``  error KEY [STREAM]: REASON`` for the first ``limit`` errors, then how many more."""
    lines = [f"  error {key} [{stream}]: {reason}" for key, stream, reason in errors[:limit]]
    if len(errors) > limit:
        lines.append(f"  ... and {len(errors) - limit} more (see `hba-descriptors stats`)")
    return lines


def extract_lines(summary: Any, limit: int = 20) -> list[str]:
    """The report of one ``run_extract`` (:class:`~hba_core.descriptors.extract.ExtractSummary`)."""
    frames = ", ".join(
        f"{s} {n} frames ({summary.invalid_frames.get(s, 0)} without detection)" for s, n in summary.frames.items()
    )
    head = (
        f"{summary.media} media: {summary.extracted} extracted, {summary.skipped} already in the store, "
        f"{len(summary.errors)} errors, {len(summary.bad_rows)} bad rows" + (f"; {frames}" if frames else "")
    )
    return [head, *error_lines(summary.errors, limit), *(f"  bad row skipped: {p}" for p in summary.bad_rows[:limit])]


def import_lines(summary: Any, limit: int = 20) -> list[str]:
    """The report of one ``import_pt`` (:class:`~hba_core.descriptors.import_pt.ImportSummary`): failed files
    with the sample that needs them."""
    head = (
        f"{summary.files} feature files: {summary.imported} imported, {summary.skipped} already in the store, "
        f"{len(summary.errors)} errors"
    )
    named = [(f"{key} ({summary.used_by.get(key, '?')})", s, r) for key, s, r in summary.errors]
    return [head, *error_lines(named, limit)]


def merge_line(summary: Any, n_stores: int) -> str:
    """The report of one ``merge_stores`` (:class:`~hba_core.descriptors.merge.MergeSummary`)."""
    copied = ", ".join(f"{s} {n}" for s, n in summary.clips.items()) or "nothing"
    return (
        f"merged {n_stores} stores: {copied} clips copied, {summary.skipped} already there, {summary.errors} error rows"
    )


STATS_COLUMNS = (  # (row field, header, width)
    ("dataset", "dataset", -14),
    ("stream", "stream", -10),
    ("clips", "clips", 7),
    ("frames", "frames", 9),
    ("invalid_frames", "no-detect", 9),
    ("clips_without_valid_frames", "empty", 6),
    ("errors", "errors", 6),
)


def stats_table(rows: list[dict[str, Any]]) -> list[str]:
    """:func:`stats` rows as a fixed-width table: a header line, then one line per row."""

    def line(values: list[Any]) -> str:
        return " ".join(f"{v:<{-w}}" if w < 0 else f"{v:>{w}}" for v, (_, _, w) in zip(values, STATS_COLUMNS))

    return [line([h for _, h, _ in STATS_COLUMNS]), *(line([row[k] for k, _, _ in STATS_COLUMNS]) for row in rows)]

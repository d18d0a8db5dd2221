"""Data-parallel prediction: one shard of the samples per rank, one resumable part per rank, one merge.

``torchrun --nproc-per-node N -m hba_tools.predict ...`` (or ``deepspeed --num_gpus N --module
hba_tools.predict ...``) runs N copies of hba-predict. They agree on what is left to do, then:

1. "Already done" is every id in ``--out`` plus every complete line of every part under
   ``OUT.parts/`` (whatever world size wrote them). Rank 0 reads it and sends it to every rank, so all
   ranks filter the same sample list the same way; the remainder is dealt round-robin in file order
   (``todo[rank::world]``), so the shards are disjoint and cover it.
2. Each rank appends to ``OUT.parts/rank-0000R-of-0000N.jsonl`` through its own
   :class:`~hba_core.jsonl.ResumableWriter` (and lock). A kill of any rank loses at most a torn last
   line; a re-run (any N) skips what every part already holds.
3. Rank 0 (which holds ``--out``'s lock for the whole run) merges ``--out`` and the parts into
   ``--out`` atomically, in sample-file order, one row per id, checks that every sample is there
   (the missing ones are the skipped media, named in the summary), then removes the parts.

A single process finding ``OUT.parts/`` (a parallel run that died) takes this path with N = 1 and
finishes the merge. Collective calls come only after every rank has either failed the same way
(the same input) or shared its failure, so one rank's error never leaves the others waiting.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import orjson

from hba_core.errors import InputError
from hba_core.jsonl import PathLike, ResumableWriter, output_lock, write_jsonl
from hba_core.model.generic import Substitutions
from hba_core.training.distributed import Distributed, all_gather, barrier


def parts_dir(out: PathLike) -> Path:
    """``OUT.parts/``, where the ranks write (``-`` has none)."""
    path = Path(out)
    return path.with_name(path.name + ".parts")


def part_path(out: PathLike, rank: int, world: int) -> Path:
    return parts_dir(out) / f"rank-{rank:05d}-of-{world:05d}.jsonl"


def _complete_rows(path: Path) -> list[dict[str, Any]]:
    """The complete lines of an output (a torn last line from a kill is not a row)."""
    rows = []
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if not raw.endswith(b"\n"):
                break
            try:
                row = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise InputError(f"{path}:{number}", f"not valid JSON ({exc}); move this file away") from None
            if not isinstance(row, dict) or not isinstance(row.get("id"), str):
                raise InputError(f"{path}:{number}", "a line without a string 'id'; move this file away")
            rows.append(row)
    return rows


def _sources(out: Path) -> list[Path]:
    """``--out`` (if there) and every part, in a fixed order: the merge keeps the first row of an id."""
    parts = sorted(parts_dir(out).glob("rank-*.jsonl")) if parts_dir(out).is_dir() else []
    return ([out] if out.exists() else []) + parts


def finished_ids(out: PathLike) -> set[str]:
    """Ids already predicted: in ``--out`` or in any part."""
    return {row["id"] for source in _sources(Path(out)) for row in _complete_rows(source)}


def _shared(value: Any, error: BaseException | None, dist: Distributed) -> list[Any]:
    """Every rank's ``value``; if any rank failed, every rank raises that rank's error (none waits forever)."""
    gathered = all_gather((value, str(error) if error is not None else None))
    for rank, (_, message) in enumerate(gathered):
        if message is not None:
            if error is not None:
                raise error
            raise InputError(f"rank {rank}", message)
    return [v for v, _ in gathered]


def merge_parts(out: PathLike, sample_ids: list[str]) -> dict[str, Any]:
    """Merge ``--out`` and the parts into ``--out`` (atomic, sample order, one row per id); remove the parts.

    Rows of ids outside ``sample_ids`` (an earlier run on other samples) are kept after them, in
    their order. Returns the ids of ``sample_ids`` that no row answers and the duplicate rows dropped.
    """
    target = Path(out)
    rows: dict[str, dict[str, Any]] = {}
    duplicates = 0
    for source in _sources(target):
        for row in _complete_rows(source):
            if row["id"] in rows:
                duplicates += 1  # a part merged before a kill, then merged again: the same row twice
            else:
                rows[row["id"]] = row
    wanted = set(sample_ids)
    ordered = [rows[i] for i in sample_ids if i in rows] + [r for i, r in rows.items() if i not in wanted]
    write_jsonl(target, ordered)
    parts = parts_dir(target)
    for part in parts.glob("rank-*.jsonl"):
        part.unlink()
    for lock in parts.glob(".rank-*.jsonl.lock"):  # no rank holds them now: --out's lock is still ours
        lock.unlink()
    with contextlib.suppress(OSError):
        parts.rmdir()
    return {"missing_ids": [i for i in sample_ids if i not in rows], "duplicates_dropped": duplicates}


def predict_sharded(
    predictor: Any,
    samples: PathLike,
    out: PathLike,
    dist: Distributed,
    *,
    progress: bool,
    **options: Any,
) -> dict[str, Any]:
    """:func:`hba_core.predict.predict_file` across ``dist.world_size`` ranks (see the module doc)."""
    from hba_core.predict import predict_into, read_samples

    rank, world = dist.rank, dist.world_size
    if str(out) == "-":  # the same on every rank: all refuse before any collective
        raise InputError(
            "--out", f"{world} processes cannot share stdout; give a file (rank 0 merges the parts into it)"
        )
    good, bad_rows = read_samples(samples)  # identical input, identical errors on every rank
    start = time.perf_counter()
    with contextlib.ExitStack() as stack:
        error: BaseException | None = None
        writer: ResumableWriter | None = None
        try:
            if dist.main:  # --out's lock for the whole run: one job per output, and the merge is ours
                stack.enter_context(output_lock(out))
            writer = stack.enter_context(ResumableWriter(part_path(out, rank, world)))
        except InputError as exc:
            error = exc
        _shared(None, error, dist)  # every writer is open and has dropped its torn line
        done: set[str] | None = None
        error = None
        if dist.main:
            try:
                done = finished_ids(out)
            except InputError as exc:
                error = exc
        done = _shared(done, error, dist)[0]  # rank 0's reading, the same on every rank
        already = len(done)
        todo = [s for s in good if s["id"] not in done][rank::world]
        assert writer is not None
        run = predict_into(predictor, todo, writer, progress=progress and dist.main, **options)
        writer.close()
        runs = all_gather(run)  # also a barrier: every part is complete before the merge
        merged: dict[str, Any] = {}
        if dist.main:
            merged = merge_parts(out, [s["id"] for s in good])
        barrier()
    elapsed = time.perf_counter() - start
    substitutions = Substitutions()
    for r in runs:
        substitutions.merge(r["substitutions"])
    written = sum(r["written"] for r in runs)
    return {
        "out": str(out),
        "processes": world,
        "written": written,
        "skipped": sum(r["skipped"] for r in runs),
        "skipped_ids": [i for r in runs for i in r["skipped_ids"]],
        "audio_clips_cut": sum(r["audio_clips_cut"] for r in runs),
        "substitutions": substitutions.as_dict(),
        "already_done": already,
        "bad_rows": bad_rows,
        "adapter": predictor.adapter,
        **merged,
        "seconds": round(elapsed, 3),
        "samples_per_s": round(written / elapsed, 3) if elapsed else None,
    }

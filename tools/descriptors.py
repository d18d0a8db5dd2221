"""hba-descriptors: behavioural descriptors (MediaPipe face + pose, OpenSMILE ComParE 2016) in a Zarr store."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import click

from hba_core.jsonl import dumps_line
from hba_tools._cli import comma_list, info, user_errors


@click.group()
def main() -> None:
    """Extract, import, merge and inspect behavioural descriptor stores (docs/descriptors.md).

    \b
    Example:
        hba-descriptors extract --samples atlas.jsonl --root DATA --store desc.zarr --workers 2
        hba-descriptors stats --store desc.zarr
    """


@contextmanager
def _progress(label: str) -> Iterator[Callable[[int, int], None]]:
    bar = None

    def update(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = click.progressbar(length=total, label=label, file=sys.stderr)
            bar.__enter__()
        bar.update(done - bar.pos)

    try:
        yield update
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)


@main.command()
@click.option("--samples", required=True, type=click.Path(allow_dash=True), help="Samples JSONL (or -).")
@click.option("--root", required=True, type=click.Path(file_okay=False), help="Data root of the media paths.")
@click.option("--store", "store_path", required=True, type=click.Path(), help="Output Zarr store (created or resumed).")
@click.option("--streams", default="face,pose,audio", show_default=True, help="Comma-separated: face, pose, audio.")
@click.option("--fps", default=5.0, show_default=True, help="Video frames per second sent to MediaPipe.")
@click.option("--max-side", default=640, show_default=True, help="Downscale frames so the longer side is at most this.")
@click.option(
    "--pose-complexity",
    type=click.IntRange(0, 1),
    default=1,
    show_default=True,
    help="Pose model: 1 full (bundled); 0 lite (faster), fetched once from mediapipe's model bucket "
    "(needs the network the first time; offline, copy pose_landmark_lite.tflite where the error says).",
)
@click.option(
    "--face-model", type=click.Path(dir_okay=False, exists=True), help="face_landmarker.task (newer mediapipe)."
)
@click.option(
    "--pose-model", type=click.Path(dir_okay=False, exists=True), help="pose_landmarker_*.task (newer mediapipe)."
)
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1), help="Worker processes.")
@click.option("--shard", help="i/n: process only shard i (0-based) of n; each shard writes its own --store.")
@click.option(
    "--commit-seconds",
    default=5.0,
    show_default=True,
    type=click.FloatRange(0),
    help="Commit finished clips this often: a kill loses at most this much work plus the clips in flight.",
)
@click.option(
    "--strict", is_flag=True, help="Exit 1 when any media file or row could not be used (default: report, exit 0)."
)
@user_errors
def extract(
    samples: str,
    root: str,
    store_path: str,
    streams: str,
    fps: float,
    max_side: int,
    pose_complexity: int,
    face_model: str | None,
    pose_model: str | None,
    workers: int,
    shard: str | None,
    commit_seconds: float,
    strict: bool,
) -> None:
    """Extract descriptors of every media file the samples use (each once); re-running resumes.

    Unreadable media are recorded in the store and reported on stderr, rows whose media fields are not
    lists of paths are reported; the exit code is 0 unless --strict (as in hba-transcribe).

    \b
    Example:
        hba-descriptors extract --samples atlas.jsonl --root DATA --store desc.zarr --streams face,pose,audio
        hba-descriptors extract ... --shard $SLURM_ARRAY_TASK_ID/16 --store desc-$SLURM_ARRAY_TASK_ID.zarr
    """
    from hba_core.extras import require

    require("hba-descriptors extract", "descriptors")
    from hba_core.descriptors.extract import parse_shard, run_extract
    from hba_core.descriptors.report import extract_lines
    from hba_core.descriptors.video import VideoConfig

    names = tuple(comma_list(streams))
    if fps <= 0:
        raise click.BadParameter("must be positive", param_hint="--fps")
    config = VideoConfig(
        fps=fps, max_side=max_side, pose_complexity=pose_complexity, face_model=face_model, pose_model=pose_model
    )
    with _progress("extract") as progress:
        summary = run_extract(
            samples,
            root,
            store_path,
            names,
            video=config,
            workers=workers,
            shard=parse_shard(shard) if shard else None,
            commit_seconds=commit_seconds,
            progress=progress,
        )
    for line in extract_lines(summary):
        info(line)
    click.echo(store_path)
    if strict and (summary.errors or summary.bad_rows):
        raise SystemExit(1)


@main.command()
@click.option("--out", required=True, type=click.Path(), help="Merged store (created or extended).")
@click.argument("stores", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@user_errors
def merge(out: str, stores: tuple[str, ...]) -> None:
    """Join shard stores into one (clips already in --out are skipped).

    \b
    Example:
        hba-descriptors merge --out desc.zarr desc-*.zarr
    """
    from hba_core.extras import require

    require("hba-descriptors merge", "descriptors", "zarr")
    from hba_core.descriptors.merge import merge_stores
    from hba_core.descriptors.report import merge_line

    info(merge_line(merge_stores(out, list(stores)), len(stores)))
    click.echo(out)


@main.command("import-pt")
@click.option(
    "--samples",
    required=True,
    type=click.Path(allow_dash=True),
    help="Release samples: JSONL (or -), a v2 Parquet shard, a quoted glob of shards or a release folder.",
)
@click.option("--root", required=True, type=click.Path(file_okay=False), help="Release root of the .pt paths.")
@click.option("--store", "store_path", required=True, type=click.Path(), help="Output Zarr store.")
@click.option(
    "--strict", is_flag=True, help="Exit 1 when any feature file could not be used (default: report, exit 0)."
)
@user_errors
def import_pt_command(samples: str, root: str, store_path: str, strict: bool) -> None:
    """Import the release's ext_video_feats / ext_audio_feats .pt features (torch.load weights_only=True).

    Keypoint dicts become one stream per part (ext_pose, ext_face, ext_left_hand, ext_right_hand),
    ComParE functionals ext_audio; .pt bytes in v2 shard cells are read straight from the shard.
    Unusable files are recorded in the store and reported with the sample that needs them; the exit
    code is 0 unless --strict.

    \b
    Example:
        hba-descriptors import-pt --samples final_v8_train_cleaned.jsonl --root RELEASE --store release.zarr
        hba-descriptors import-pt --samples 'v2/data/train-*.parquet' --root v2 --store release.zarr
    """
    from hba_core.extras import require

    require("hba-descriptors import-pt", "descriptors", "zarr")
    require("hba-descriptors import-pt", "train", "torch")  # the release's .pt files
    from hba_core.descriptors.import_pt import import_pt
    from hba_core.descriptors.report import import_lines

    with _progress("import") as progress:
        summary = import_pt(samples, root, store_path, progress=progress)
    for line in import_lines(summary):
        info(line)
    click.echo(store_path)
    if strict and summary.errors:
        raise SystemExit(1)


@main.command()
@click.option("--store", "store_path", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--samples", required=True, type=click.Path(allow_dash=True), help="Samples whose vectors to write.")
@click.option("--streams", help="Comma-separated streams (default: all in the store).")
@click.option(
    "--out",
    default="-",
    show_default=True,
    type=click.Path(allow_dash=True),
    help="`.npz` (ids + one matrix per stream) or JSONL (`-` = stdout).",
)
@user_errors
def pool(store_path: str, samples: str, streams: str | None, out: str) -> None:
    """Pooled [mean, std] vectors per sample; missing media give NaN rows (counted on stderr).

    \b
    Example:
        hba-descriptors pool --store desc.zarr --samples atlas.jsonl --streams audio | head -1
        hba-descriptors pool --store desc.zarr --samples atlas.jsonl --out pooled.npz
    """
    from hba_core.extras import require

    require("hba-descriptors pool", "descriptors", "zarr")
    from hba_core.descriptors.report import sample_vectors, write_pooled
    from hba_core.descriptors.store import open_store

    store = open_store(store_path)
    names = tuple(s.strip() for s in streams.split(",")) if streams else tuple(store.streams)
    for name in names:
        store.counts(name)  # unknown stream -> error listing the valid ones
    ids, vectors, missing = sample_vectors(store, samples, names)
    write_pooled(out, ids, vectors)
    info(f"{len(ids)} samples x {len(names)} streams; {missing} (sample, stream) pairs without descriptors")


@main.command()
@click.option("--store", "store_path", required=True, type=click.Path(exists=True, file_okay=False))
@click.argument("key")
@user_errors
def show(store_path: str, key: str) -> None:
    """Print what the store holds for one media KEY (path as in the samples) as JSON.

    \b
    Example:
        hba-descriptors show --store desc.zarr video/clip0.mp4 | python -m json.tool
    """
    from hba_core.extras import require

    require("hba-descriptors show", "descriptors", "zarr")
    from hba_core.descriptors.report import show as show_key
    from hba_core.descriptors.store import open_store
    from hba_core.errors import InputError

    found = show_key(open_store(store_path), key)
    if not found["streams"] and not found["errors"]:
        raise InputError(key, f"not in {store_path}; keys are media paths as the samples write them")
    sys.stdout.buffer.write(dumps_line(found))


@main.command()
@click.option("--store", "store_path", required=True, type=click.Path(exists=True, file_okay=False))
@user_errors
def stats(store_path: str) -> None:
    """Coverage per dataset and stream (clips, frames, frames without a face, errors) as JSONL; a table on stderr.

    \b
    Example:
        hba-descriptors stats --store desc.zarr > coverage.jsonl
    """
    from hba_core.extras import require

    require("hba-descriptors stats", "descriptors", "zarr")
    from hba_core.descriptors.report import stats as store_stats
    from hba_core.descriptors.report import stats_table
    from hba_core.descriptors.store import open_store

    rows = store_stats(open_store(store_path))
    for row in rows:
        sys.stdout.buffer.write(dumps_line(row))
    for line in stats_table(rows):
        info(line)


if __name__ == "__main__":
    main()

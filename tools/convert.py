"""hba-convert: build the Atlas from the original releases; import/export the official release; stats, select."""

from __future__ import annotations

from pathlib import Path

import click

from hba_core import registry
from hba_core.convert.build import build_files, default_rejects_path
from hba_core.convert.release import export_release, import_release
from hba_core.convert.selection import select_samples, selector
from hba_core.convert.stats import render, table7
from hba_core.jsonl import LineError, atomic_output, dumps_line, iter_jsonl
from hba_core.samples import iter_samples
from hba_tools._cli import info, user_errors
from hba_tools.validate import report_files


@click.group()
def main() -> None:
    """Build and inspect Human Behavior Atlas sample files.

    \b
    Example:
        hba-convert build meld --raw raw/meld --out meld.jsonl
        hba-convert stats meld.jsonl
    """


@main.command()
@click.argument("dataset")
@click.option(
    "--raw",
    "raw",
    type=click.Path(file_okay=False, path_type=Path),
    help="The dataset's original release folder (for one DATASET).",
)
@click.option(
    "--raw-root",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder holding one release folder per source (<root>/meld, <root>/mosei, ...), for 'all'.",
)
@click.option("--out", default="-", show_default=True, help="Output JSONL (written atomically); - for stdout.")
@click.option(
    "--rejects",
    default=None,
    help="Rejects JSONL [default: <out>.rejects.jsonl; hba-convert-rejects.jsonl when --out is -].",
)
@click.option(
    "--no-media", is_flag=True, help="Build from the annotation files alone: media paths recorded, not checked."
)
@click.option(
    "--strict", is_flag=True, help="Fail on the first rejected row instead of writing it to the rejects file."
)
@user_errors
def build(
    dataset: str, raw: Path | None, raw_root: Path | None, out: str, rejects: str | None, no_media: bool, strict: bool
) -> None:
    """Convert DATASET (a source name, or 'all') from its original release into HBA samples.

    A source yields samples for each of its official datasets (mosei -> mosei_senti and mosei_emotion).
    Rows that cannot become samples (missing media, unreadable row, unknown label) go to the rejects
    file with the reason and are counted in the summary on stderr; --strict fails instead.

    \b
    Example:
        hba-convert build meld --raw MELD.Raw --out meld.jsonl
        hba-convert build all --raw-root raw --no-media --out - | hba-convert stats -
    """
    if dataset == "all":
        if raw_root is None or raw is not None:
            raise click.UsageError("build all needs --raw-root DIR (one folder per source), not --raw")
        jobs = [(name, raw_root / name) for name in registry.get().sources]
    else:
        registry.source(dataset)
        if raw is None or raw_root is not None:
            raise click.UsageError(f"build {dataset} needs --raw DIR (its original release folder)")
        jobs = [(dataset, raw)]
    report = build_files(
        jobs,
        out,
        default_rejects_path(out, rejects),
        check_media=not no_media,
        strict=strict,
        keep_going=dataset == "all",  # one broken or missing release does not sink 'build all'
        log=info,
    )
    info(report.line())


@main.command("import")
@click.option(
    "--from",
    "release_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="The downloaded release's root folder (final_v8_*.jsonl, or v2 Parquet shards), a shard, or a quoted glob.",
)
@click.option("--out", default="-", show_default=True, help="Output JSONL; - for stdout.")
@click.option(
    "--media-root",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the Parquet form's media and .pt bytes are written, named by content (paths relative to it).",
)
@user_errors
def import_(release_dir: Path, out: str, media_root: Path | None) -> None:
    """Read the official release into our JSONL (id, split and provenance added; nothing else changed).

    Parquet shards: every media and .pt cell is checked and written under --media-root as
    <dataset>/<column>/<sha256><ext>; a row with a bad cell is reported by shard and row and left out,
    every other row is written. A killed import re-run gives the same output (files are whole or absent).
    Ids are those of the shard read directly, so hba-score gives the same report on either.

    \b
    Example:
        hba-convert import --from human_behavior_atlas --out atlas.jsonl
        hba-convert import --from 'hba_v2/data/test-*.parquet' --media-root media --out test.jsonl
    """
    from hba_core.extras import require

    jsonl_release = release_dir.is_dir() and any(release_dir.glob("final_v8_*.jsonl"))
    if (release_dir.exists() and not jsonl_release) or "*" in str(release_dir):
        require("hba-convert import", "convert")  # the v2 Parquet form (a JSONL release needs nothing more)
    errors: list[LineError] = []
    count = 0
    with atomic_output(out) as sink:
        for row in import_release(release_dir, media_root, errors):
            sink.write(dumps_line(row))
            count += 1
    for problem in errors:
        info(f"skipped: {problem}")
    info(f"imported {count} samples to {out}; {len(errors)} unreadable lines or rows")
    if errors:
        raise SystemExit(1)


@main.command("import-predictions")
@click.argument("results", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--samples", "-s", required=True, help="The split the reference evaluated (JSONL, shard, glob, folder).")
@click.option("--out", default="-", show_default=True, help="Predictions JSONL (written atomically); - for stdout.")
@click.option("--model", "model_name", default=None, help="Model name stored on each row (default: none).")
@user_errors
def import_predictions(results: Path, samples: str, out: str, model_name: str | None) -> None:
    """Turn a reference result file (cls_val_generations_<step>.json or a QA preds file) into predictions.

    The reference's files hold no ids: entries are matched to --samples by dataset and position, and each
    entry's ground truth must equal its sample's label (or answer) - a mismatch is an error naming the
    entry, and nothing is written.

    \b
    Example:
        hba-convert import-predictions cls_val_generations_500.json -s 'data/validation-*.parquet' \
            --out ref.jsonl && hba-score --truth 'data/validation-*.parquet' --pred ref.jsonl
    """
    from hba_core.convert.reference_results import reference_predictions

    rows = reference_predictions(results, samples, model=model_name)
    with atomic_output(out) as sink:
        for row in rows:
            sink.write(dumps_line(row))
    info(f"wrote {len(rows)} predictions to {out} (ground truths agree with {samples})")


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(allow_dash=True))
@click.option(
    "--out-dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the final_v8_{train_cleaned_2,val_cleaned,test_cleaned}.jsonl files.",
)
@user_errors
def export(files: tuple[str, ...], out_dir: Path) -> None:
    """Write sample FILES in the official release layout (one file per split, official fields only).

    \b
    Example:
        hba-convert export atlas.jsonl --out-dir release
    """
    rows = (row for path in files for _, row in iter_jsonl(path))
    counts = export_release(rows, out_dir)
    info(f"exported {sum(counts.values())} samples to {out_dir} ({', '.join(f'{k} {v}' for k, v in counts.items())})")


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(allow_dash=True))
@click.option("--format", "fmt", type=click.Choice(["md", "json", "csv"]), default="md", show_default=True)
@user_errors
def stats(files: tuple[str, ...], fmt: str) -> None:
    """Print Table 7 (dataset x split counts with the paper's), label distributions and modality signatures.

    \b
    Example:
        hba-convert stats atlas.jsonl --format md
        hba-convert build meld --raw MELD.Raw --no-media | hba-convert stats - --format csv
    """
    rows = (row for path in files for _, row in iter_samples(path))  # shards: string columns only
    click.echo(render(table7(rows), fmt), nl=False)


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(allow_dash=True))
@click.option("--dataset", "datasets", multiple=True, help="Keep these datasets (repeat or comma-separate).")
@click.option("--task", "tasks", multiple=True, help="Keep these task codes (SEN, EMO, ...).")
@click.option("--split", "splits", multiple=True, help="Keep these splits (train, val, test).")
@click.option("--modality", "modalities", multiple=True, help="Keep samples whose signature has each modality.")
@click.option("--exclude", multiple=True, help="Drop these datasets or task codes.")
@user_errors
def select(
    files: tuple[str, ...],
    datasets: tuple[str, ...],
    tasks: tuple[str, ...],
    splits: tuple[str, ...],
    modalities: tuple[str, ...],
    exclude: tuple[str, ...],
) -> None:
    """Filter sample FILES to stdout by dataset, task, split and modality, with --exclude.

    \b
    Example (the transfer experiment's training set):
        hba-convert select atlas.jsonl --split train \\
            --exclude mosei_senti,meld_emotion,daicwoz,mmsd > transfer_train.jsonl
    """
    keep = selector(datasets=datasets, tasks=tasks, splits=splits, modalities=modalities, exclude=exclude)
    rows, seen = select_samples(files, keep)  # everything read and checked before the first row is written
    with atomic_output("-") as sink:
        for row in rows:
            sink.write(dumps_line(row))
    info(f"selected {len(rows)} of {seen} samples")


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(allow_dash=True))
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    help="Data root: check that every media path exists under it.",
)
@click.option("--max-problems", default=50, show_default=True, help="Print at most this many problems per file.")
@user_errors
def validate(files: tuple[str, ...], root: Path | None, max_problems: int) -> None:
    """Check sample FILES: schema, registry (dataset, label set) and media under --root; every problem by line.

    Exit status 1 when any problem is found.

    \b
    Example:
        hba-convert validate atlas.jsonl --root human_behavior_atlas
    """
    report_files("sample", files, root, max_problems)  # one validator with hba-validate sample


if __name__ == "__main__":
    main()

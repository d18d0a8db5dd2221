"""hba-validate: check files against the schemas in schemas/ (samples also against the registry and media)."""

from __future__ import annotations

from pathlib import Path

import click

from hba_core import schemas
from hba_core.convert.validate import validate_records
from hba_tools._cli import info, user_errors


def report_files(kind: str, files: tuple[str, ...], root: Path | None, max_problems: int) -> None:
    """Print every problem of ``files`` (stdout, one per line) and a count per file (stderr); exit 1 on any.

    The one report of ``hba-validate`` and ``hba-convert validate``.
    """
    failed = False
    for path in files:
        report = validate_records(path, kind, root)
        for problem in report.problems[:max_problems]:
            click.echo(str(problem))
        if len(report.problems) > max_problems:
            click.echo(f"{path}: ... and {len(report.problems) - max_problems} more problems")
        info(f"{path}: {report.count} records, {len(report.problems)} problems")
        failed = failed or bool(report.problems)
    if failed:
        raise SystemExit(1)


@click.command()
@click.argument("kind", type=click.Choice(schemas.kinds()))
@click.argument("files", nargs=-1, required=True, type=click.Path(allow_dash=True))
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    help="Samples only: also check that media exist under this data root (and stay inside it).",
)
@click.option("--max-problems", default=50, show_default=True, help="Print at most this many problems per file.")
@user_errors
def main(kind: str, files: tuple[str, ...], root: Path | None, max_problems: int) -> None:
    """Validate FILES of one KIND (sample, prediction, judgment, score-report, ...), every problem by line.

    JSON Lines files are checked line by line; score-report, run-config and descriptor-store files
    holding one JSON document are checked as that document. Samples are also checked against the
    registry (known dataset, label in its label set) and, with --root, their media; a repeated id -
    or, for rows without ids, repeated content - is reported with the first line. Exit status 1 when
    any problem is found. ``hba-convert validate`` is the same check for samples.

    \b
    Example:
        hba-validate sample final_v8_test_cleaned.jsonl --root human_behavior_atlas
        hba-predict ... --out - | hba-validate prediction -
        hba-validate score-report report.json
    """
    if root is not None and kind != "sample":
        raise click.UsageError("--root checks sample media; drop it for other kinds")
    report_files(kind, files, root, max_problems)


if __name__ == "__main__":
    main()

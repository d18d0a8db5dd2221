"""hba-validate: check JSONL files against the schemas in schemas/ (and samples against the registry)."""

from __future__ import annotations

import click

from hba_core import schemas
from hba_core.jsonl import LineError, display_name, iter_jsonl
from hba_core.samples import sample_id, sample_problems
from hba_tools._cli import info, user_errors


@click.command()
@click.argument("kind", type=click.Choice(schemas.kinds()))
@click.argument("files", nargs=-1, required=True, type=click.Path(allow_dash=True))
@click.option("--max-problems", default=50, show_default=True, help="Print at most this many problems per file.")
@user_errors
def main(kind: str, files: tuple[str, ...], max_problems: int) -> None:
    """Validate JSONL FILES of one KIND (sample, prediction, judgment, ...), reporting every problem by line.

    Samples are also checked against the registry (known dataset, label in its label set); a
    repeated id - or, for rows without ids, repeated content - is reported with the first line.
    Exit status 1 when any problem is found.

    \b
    Example:
        hba-validate sample final_v8_test_cleaned.jsonl
        hba-predict ... | hba-validate prediction -
    """
    failed = False
    for path in files:
        problems: list[LineError] = []
        count = 0
        first_line: dict[str, int] = {}
        for line, obj in iter_jsonl(path, problems):
            count += 1
            found = sample_problems(obj) if kind == "sample" else schemas.errors(obj, kind)
            key = sample_id(obj) if kind == "sample" else obj.get("id")
            if isinstance(key, str):
                if key in first_line:
                    what = "id" if obj.get("id") else "content (the same derived id)"
                    found.append(f"$.id: same {what} as line {first_line[key]}: {key!r}")
                else:
                    first_line[key] = line
            problems.extend(LineError(display_name(path), line, message) for message in found)
        problems.sort(key=lambda p: p.line)
        for problem in problems[:max_problems]:
            click.echo(str(problem))
        if len(problems) > max_problems:
            click.echo(f"{path}: ... and {len(problems) - max_problems} more problems")
        info(f"{path}: {count} records, {len(problems)} problems")
        failed = failed or bool(problems)
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()

"""hba-score: the benchmark's unified metrics for any model's outputs (never loads a model, never needs torch)."""

from __future__ import annotations

from pathlib import Path

import click
import orjson

from hba_core.errors import HbaError, InputError
from hba_core.jsonl import atomic_output, display_name
from hba_core.scoring import (
    PROTOCOLS,
    Predictions,
    Truth,
    embedded_predictions,
    judgment_plan,
    load_all,
    load_judgments,
    name_by_model_field,
    require_judgments,
)
from hba_tools._cli import info, user_errors

# delta: two models as in Table 6 (SFT vs BAM); intensity: sentiment at the full scale as in Table 19
FORMATS = ("json", "md", "csv", "latex", "delta", "intensity")


def _default_name(path: str) -> str:
    return "stdin" if path == "-" else Path(path).name.removesuffix(".gz").removesuffix(".jsonl")


@click.command()
@click.argument("predictions", nargs=-1, type=click.Path(allow_dash=True))
@click.option("--truth", required=True, type=click.Path(allow_dash=True), help="HBA samples JSONL (the ground truth).")
@click.option(
    "--pred",
    "preds",
    multiple=True,
    type=click.Path(allow_dash=True),
    help="Predictions JSONL ({id, prediction}); repeat for several models (before the PREDICTIONS args).",
)
@click.option("--name", "names", multiple=True, help="Model name per predictions file, in order (default: file name).")
@click.option(
    "--pred-field",
    "pred_fields",
    multiple=True,
    help="Score predictions stored in the truth file under this field (one model each).",
)
@click.option(
    "--judgments",
    "judgments",
    multiple=True,
    help="hba-judge output for the free-text tasks: [NAME=]FILE, one per model in order, "
    "or one file whose rows name their model.",
)
@click.option(
    "--strict",
    is_flag=True,
    help="Missing, duplicate, unknown or invalid records are errors, and so are free-text samples without judgments.",
)
@click.option(
    "--subset",
    is_flag=True,
    help="The truth is a subset of what was predicted on purpose (a cut test set): predictions for other ids "
    "are counted in one summary line, not listed, and are no error under --strict.",
)
@click.option(
    "--note",
    "notes",
    multiple=True,
    help="A line shown above the --format md table and under the --plot title (repeatable), "
    "e.g. that the models are tiny random fixtures.",
)
@click.option(
    "--protocol",
    type=click.Choice(PROTOCOLS),
    default="paper",
    show_default=True,
    help="paper: the paper's metric definitions and the strict answer reader; "
    "reference: the reference code's numbers (its parser and metrics), for comparison with published runs.",
)
@click.option(
    "--bootstrap",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="Bootstrap replicates for 95% intervals (0: none; 1000 is typical).",
)
@click.option("--seed", default=0, show_default=True, help="Seed of the bootstrap.")
@click.option("--compare", nargs=2, default=None, metavar="A B", help="Paired bootstrap test of model A against B.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="json", show_default=True)
@click.option(
    "-o",
    "--output",
    default="-",
    type=click.Path(allow_dash=True),
    show_default=True,
    help="Where the report goes (written atomically).",
)
@click.option("--plot", type=click.Path(dir_okay=False), help="Also draw the models x tasks heatmap to this PNG.")
@click.option("--examples", default=3, show_default=True, help="Unparseable answers quoted per dataset.")
@click.option(
    "--cache/--no-cache",
    default=True,
    show_default=True,
    help="Keep a large truth file's ids and labels under $HBA_CACHE_DIR (else ~/.cache/hba) for the next run; "
    "an entry is used only while the file is unchanged.",
)
@user_errors
def main(
    predictions: tuple[str, ...],
    truth: str,
    preds: tuple[str, ...],
    names: tuple[str, ...],
    pred_fields: tuple[str, ...],
    judgments: tuple[str, ...],
    strict: bool,
    subset: bool,
    notes: tuple[str, ...],
    protocol: str,
    bootstrap: int,
    seed: int,
    compare: tuple[str, str] | None,
    fmt: str,
    output: str,
    plot: str | None,
    examples: int,
    cache: bool,
) -> None:
    """Score predictions against the Human Behavior Atlas with the paper's unified metrics.

    Free-text answers are turned into labels (\\boxed{}, <answer>, "Answer: ...", else the reply when it
    names exactly one label, not negated or hedged); anything else counts as wrong and is reported
    with examples. --protocol reference reproduces the reference code's numbers. Free-text tasks
    (SOC, INT, NVC) are scored from hba-judge judgments. Counts of missing, duplicate and unknown
    ids go to stderr and into the report; --strict makes them errors.

    \b
    Examples:
        hba-score --truth test.jsonl --pred model_a.jsonl --pred model_b.jsonl \\
            --judgments a=judged_a.jsonl --judgments b=judged_b.jsonl --name a --name b --format md
        cat preds.jsonl | hba-score --truth atlas.jsonl -
        hba-score --truth test.jsonl --pred a.jsonl --pred b.jsonl --bootstrap 1000 --compare a b
        hba-score --truth cut.jsonl --subset full_preds.jsonl --format md --note "tiny random fixture"
    """
    from hba_core.extras import require

    if plot:
        require("hba-score --plot", "score")
    from hba_core.score_formats import plot_heatmap, to_csv, to_delta, to_intensity, to_latex, to_markdown
    from hba_core.scoring import score

    files = [*preds, *predictions]
    if not files and not pred_fields:
        raise HbaError("nothing to score: give a predictions file (or - for stdin), --pred FILE or --pred-field FIELD")
    if sum(p == "-" for p in [*files, truth, *(j.partition("=")[2] or j for j in judgments)]) > 1:
        raise HbaError("stdin (-) can be read only once: give the other inputs as files")
    if names and len(names) != len(files):
        raise HbaError(f"{len(names)} --name for {len(files)} predictions files: give one name per file, in order")
    gold: Truth
    models: list[Predictions]
    gold, models = load_all(
        truth, list(zip(files, names or [_default_name(p) for p in files])), strict, pred_fields, subset, cache=cache
    )
    cached = " (ids and labels from the truth cache; --no-cache reads the file)" if gold.cached else ""
    info(f"{display_name(truth)}: {len(gold.ids)} samples{cached}")
    if not names:
        name_by_model_field(models)
    models += [embedded_predictions(gold, f) for f in pred_fields]
    by_name = {m.name: m for m in models}
    for path, model, model_filter in judgment_plan(judgments, list(by_name)):
        load_judgments(path, by_name[model], gold, strict, model_filter)
    if strict:
        require_judgments(models, gold)
    report = score(gold, models, bootstrap=bootstrap, seed=seed, compare=compare, examples=examples, protocol=protocol)
    for m in report["models"]:
        c = m["counts"]
        info(
            f"{m['name']}: {c['matched']} matched, {c['missing']} missing, {c['unparseable']} unparseable, "
            f"{c['outside_labels']} outside their dataset's labels, "
            f"{c['duplicate']} duplicate, {c['unknown_id']} unknown ids, {c['invalid']} invalid lines"
        )
        if m["judgments"]:
            j = m["judgments"]
            info(
                f"{m['name']} judgments: {j['matched']} matched, {j['unjudged']} free-text samples unjudged, "
                f"{j['duplicate']} duplicate, {j['unknown_id']} unknown ids, {j['invalid']} invalid"
            )
        for problem in m["problems"][:5]:
            info(f"  {problem}")
        if subset and c["unknown_id"]:
            info(f"{m['name']}: {c['unknown_id']} predictions for ids outside the truth left out (--subset)")
    if fmt == "json":
        payload = orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY) + b"\n"
    elif fmt == "md":
        payload = to_markdown(report, notes=notes).encode()
    else:
        payload = {"md": to_markdown, "csv": to_csv, "latex": to_latex, "delta": to_delta, "intensity": to_intensity}[
            fmt
        ](report).encode()
    with atomic_output(output) as out:
        out.write(payload)
    if plot:
        try:
            info(f"heatmap: {plot_heatmap(report, plot, notes)}")
        except ImportError as exc:
            raise InputError("--plot", f"needs matplotlib ({exc}); pip install 'hba[score]'") from None


if __name__ == "__main__":
    main()

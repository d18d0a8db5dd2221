"""hba-transcribe: Whisper transcripts for samples that have none, into metadata and the prompt."""

from __future__ import annotations

import sys

import click

from hba_tools._cli import info, user_errors


@click.command()
@click.option("--samples", required=True, type=click.Path(allow_dash=True), help="Samples JSONL (or -).")
@click.option("--root", required=True, type=click.Path(file_okay=False), help="Data root of the media paths.")
@click.option("--out", required=True, type=click.Path(allow_dash=True), help="Output samples JSONL (or - for stdout).")
@click.option("--model", default="large-v3", show_default=True, help="Whisper model name or local checkpoint path.")
@click.option("--device", help="torch device (default: cuda if available, else cpu).")
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(1), help="Clips per decode batch.")
@click.option("--language", help="Force a language code (e.g. en); default: detect per clip.")
@click.option("--force", is_flag=True, help="Transcribe samples that already have a transcript too.")
@click.option(
    "--cache",
    type=click.Path(dir_okay=False),
    help="Per-media transcript cache, kept for resuming [default: OUT.transcripts.jsonl].",
)
@click.option(
    "--strict", is_flag=True, help="Exit 1 if any media file or row could not be transcribed (default: report, exit 0)."
)
@user_errors
def main(
    samples: str,
    root: str,
    out: str,
    model: str,
    device: str | None,
    batch_size: int,
    language: str | None,
    force: bool,
    cache: str | None,
    strict: bool,
) -> None:
    """Transcribe the audio (or video audio track) of every sample without a transcript.

    Samples with a transcript pass through untouched (--force redoes them). Transcripts go to
    metadata.transcript (with model and language in metadata.transcript_source) and into the
    prompt where the dataset's template has one. Killed runs resume from the cache. Media that
    cannot be decoded and rows that cannot be transcribed (no problem/dataset) pass through untouched
    and are reported on stderr; the exit code is 0 unless --strict (as in hba-descriptors extract).

    \b
    Example:
        hba-transcribe --samples atlas.jsonl --root DATA --out atlas.tx.jsonl --model large-v3
        hba-transcribe --samples atlas.jsonl --root DATA --out - --cache tx-cache.jsonl --model ckpt.pt \\
            | hba-validate sample -
    """
    from hba_core.extras import require

    require("hba-transcribe", "transcribe")
    from hba_core.transcribe import transcribe_samples

    if out == "-" and cache is None:
        raise click.UsageError("with --out - give --cache PATH too, so a killed run can resume")
    bar = click.progressbar(length=0, label="transcribe", file=sys.stderr)

    def progress(done: int, total: int) -> None:
        bar.length = total
        bar.update(done - bar.pos)

    with bar:
        summary = transcribe_samples(
            samples,
            root,
            out,
            model=model,
            device=device,
            batch_size=batch_size,
            language=language,
            force=force,
            cache=cache,
            progress=progress,
        )
    info(
        f"{summary.samples} samples: {summary.transcribed} transcribed ({summary.media_transcribed} media now, "
        f"{summary.media_cached} from the cache), {summary.had_transcript} already had one, "
        f"{summary.no_media} without audio or video, {len(summary.errors)} media errors, "
        f"{len(summary.bad_rows)} bad rows"
    )
    for key, reason in summary.errors[:20]:
        info(f"  error {key}: {reason}")
    for problem in summary.bad_rows[:20]:
        info(f"  bad row passed through: {problem}")
    if strict and (summary.errors or summary.bad_rows):
        raise SystemExit(1)


if __name__ == "__main__":
    main()

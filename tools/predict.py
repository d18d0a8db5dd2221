"""hba-predict: OmniSapiens / Qwen2.5-Omni predictions for HBA samples (heads or free-text generation)."""

from __future__ import annotations

import click

from hba_tools._cli import info, stderr_is_terminal, user_errors


@click.command()
@click.option("--model", "-m", required=True, help="hba checkpoint directory, or a hub id / path of a base model")
@click.option("--samples", "-s", required=True, type=click.Path(exists=True, dir_okay=False), help="samples JSONL")
@click.option(
    "--out",
    "-o",
    required=True,
    type=click.Path(dir_okay=False),
    help="predictions JSONL (appended; ids already there are skipped)",
)
@click.option(
    "--root",
    "--data-root",
    "data_root",
    default=".",
    show_default=True,
    help="directory the media paths are relative to",
)
@click.option(
    "--mode",
    type=click.Choice(["heads", "generate"]),
    default=None,
    help="heads: labels + probabilities from the task heads; generate: free text for every sample "
    "[heads for a checkpoint, generate otherwise]",
)
@click.option(
    "--template",
    type=click.Choice(["think"]),
    default=None,
    help="think: ask for <think> reasoning and a \\boxed{} answer (GRPO prompt, App. B.2)",
)
@click.option("--batch-size", default=8, show_default=True)
@click.option("--max-new-tokens", default=64, show_default=True)
@click.option("--dtype", type=click.Choice(["float32", "bfloat16"]), default="float32", show_default=True)
@click.option("--device", default=None, help="cuda, cuda:1, cpu [cuda when available]")
@click.option("--base-model", default=None, help="where the checkpoint's backbone lives, if not where it was trained")
@click.option("--fps", default=2.0, show_default=True)
@click.option("--max-frames", default=32, show_default=True)
@click.option("--max-pixels", default=256 * 28 * 28, show_default=True)
@click.option("--max-audio-seconds", default=30.0, show_default=True)
@click.option("--workers", default=2, show_default=True, help="DataLoader workers decoding media")
@click.option(
    "--bam",
    "bam_dir",
    default=None,
    type=click.Path(exists=True, file_okay=False),
    help="apply hba-bam adapters (e.g. CKPT/bam) to their datasets; needs --store",
)
@click.option(
    "--store", default=None, type=click.Path(exists=True), help="descriptor store the adapters read (hba-descriptors)"
)
@user_errors
def main(
    model: str,
    samples: str,
    out: str,
    data_root: str,
    mode: str | None,
    template: str | None,
    batch_size: int,
    max_new_tokens: int,
    dtype: str,
    device: str | None,
    base_model: str | None,
    fps: float,
    max_frames: int,
    max_pixels: int,
    max_audio_seconds: float,
    workers: int,
    bam_dir: str | None,
    store: str | None,
) -> None:
    """Predict every sample not yet in --out; print the output path.

    Example:

    \b
      hba-predict --model runs/qa/best --samples test.jsonl --data-root data --out preds.jsonl
      hba-predict --model Qwen/Qwen2.5-Omni-7B --mode generate --template think -s test.jsonl -o zs.jsonl
      hba-predict --model runs/cls/best --bam runs/cls/best/bam --store desc.zarr -s test.jsonl -o bam.jsonl
      hba-score --truth test.jsonl --pred preds.jsonl
    """
    import torch

    from hba_core.model.collate import MediaSettings
    from hba_core.model.predict import attach_bam, load_predictor, predict_file

    if (bam_dir is None) != (store is None):
        raise click.UsageError("--bam and --store go together: the adapters read the descriptor store")
    device = device or ("cuda" if torch.cuda.is_available() else None)
    predictor = load_predictor(model, dtype=dtype, base_model=base_model, device=device)
    if bam_dir is not None:
        attach_bam(predictor, bam_dir, store)
    chosen = mode or ("heads" if predictor.model is not None else "generate")
    media = MediaSettings(
        data_root=data_root, fps=fps, max_frames=max_frames, max_pixels=max_pixels, max_audio_seconds=max_audio_seconds
    )
    summary = predict_file(
        predictor,
        samples,
        out,
        media=media,
        mode=chosen,
        template=template,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        workers=workers,
        progress=stderr_is_terminal(),
    )
    info(
        f"{summary['written']} predictions written ({summary['already_done']} already there), "
        f"{summary['skipped']} skipped (undecodable media: {', '.join(summary['skipped_ids'][:5]) or 'none'}), "
        f"{summary['samples_per_s']} samples/s"
    )
    click.echo(out)


if __name__ == "__main__":
    main()

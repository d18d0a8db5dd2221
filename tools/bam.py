"""hba-bam: train Behavioral Adapter Modules per dataset on a frozen hba-sft checkpoint."""

from __future__ import annotations

import json

import click

from hba_tools._cli import comma_list, info, user_errors


@click.command()
@click.option(
    "--init",
    "checkpoint",
    required=True,
    type=click.Path(exists=True, file_okay=False),
    help="The frozen SFT checkpoint (hba-sft output, e.g. runs/sft/best).",
)
@click.option(
    "--samples",
    required=True,
    help="Samples with train and val splits of the datasets: JSONL, a v2 Parquet shard, a quoted glob of "
    "shards or a release folder.",
)
@click.option("--store", required=True, type=click.Path(exists=True), help="Descriptor store (hba-descriptors).")
@click.option("--datasets", required=True, help="Comma-separated dataset names, e.g. mmsd,urfunny.")
@click.option(
    "--root",
    "--data-root",
    "root",
    default=".",
    show_default=True,
    help="Data root the samples' media paths are relative to.",
)
@click.option("--out", default=None, help="Where to save adapters [default: <init>/bam].")
@click.option(
    "--streams",
    default="audio,video",
    show_default=True,
    help="Adapters to train: audio (OpenSMILE), video (MediaPipe face+pose) or both (Table 12).",
)
@click.option("--no-raw-media", is_flag=True, help="Backbone sees only text; descriptors carry audio/video (Table 10).")
@click.option("--hidden", default=256, show_default=True, help="Adapter hidden size (512 reproduces Table 11).")
@click.option(
    "--features",
    type=click.Choice(["hba", "reference"]),
    default="hba",
    show_default=True,
    help="hba: hba-descriptors' face/pose/audio; reference: the release's .pt features (import-pt) as the "
    "reference builds them (keypoints mean+std 3,318, ComParE functionals 6,373 L2-normalised).",
)
@click.option(
    "--arch",
    type=click.Choice(["hba", "reference"]),
    default="hba",
    show_default=True,
    help="hba: z-score, LayerNorm, GELU MLP; reference: its LayerNorm -> Linear -> ReLU -> Linear times alpha.",
)
@click.option(
    "--dropout",
    default=None,
    type=float,
    help="Feature dropout [default: 0.1; --arch reference: modality dropout 0.2].",
)
@click.option("--alpha-init", default=None, type=float, help="Initial alpha [default: 0.1; --arch reference: 4.0].")
@click.option("--epochs", default=4, show_default=True, help="Epochs; the one with the lowest val CE is kept.")
@click.option("--lr-adapter", default=5e-4, show_default=True)
@click.option("--lr-head", default=1e-4, show_default=True)
@click.option(
    "--batch-size",
    default=None,
    type=int,
    help="Effective batch [default: C.2's: 4 DAIC-WOZ, 16 MUStARD/MimeQA, else 32].",
)
@click.option("--seed", default=0, show_default=True)
@click.option("--no-cache", is_flag=True, help="Recompute pooled h_penult instead of reading the cache.")
@click.option("--cache", "cache_dir", default=None, help="Cache folder [default: <out>/.cache].")
@click.option("--fps", default=2.0, show_default=True, help="Video frames per second fed to the backbone.")
@click.option("--max-frames", default=32, show_default=True)
@click.option(
    "--report-to",
    type=click.Choice(["none", "tensorboard", "wandb"]),
    default="none",
    show_default=True,
    help="Also log each dataset's epochs there (they always go to <out>/metrics.jsonl).",
)
@user_errors
def main(
    checkpoint: str,
    samples: str,
    store: str,
    datasets: str,
    root: str,
    out: str | None,
    streams: str,
    no_raw_media: bool,
    hidden: int,
    features: str,
    arch: str,
    dropout: float | None,
    alpha_init: float | None,
    epochs: int,
    lr_adapter: float,
    lr_head: float,
    batch_size: int | None,
    seed: int,
    no_cache: bool,
    cache_dir: str | None,
    fps: float,
    max_frames: int,
    report_to: str,
) -> None:
    """Train, select and save one BAM set per dataset (paper §3.6, C.2); prints the saved folders.

    The backbone stays frozen: pooled h_penult of each sample is computed once and cached, so the
    epochs (and re-runs with other hyper-parameters) cost almost nothing. Apply the adapters with
    `hba-predict --bam <init>/bam`.

    \b
    Example:
        hba-bam --init runs/sft/best --samples atlas.jsonl --root DATA --store desc.zarr --datasets mmsd,urfunny
        hba-bam --init runs/sft/best --samples RELEASE --store release.zarr --datasets mmsd \\
            --features reference --arch reference      # the reference's BAM (release .pt features)
    """
    from hba_core.extras import require

    require("hba-bam", "train")
    from hba_core.bam.run import BamJob, run_bam
    from hba_core.bam.train import BamSettings

    settings = BamSettings(
        hidden=hidden,
        dropout=dropout if dropout is not None else (0.2 if arch == "reference" else 0.1),
        alpha_init=alpha_init if alpha_init is not None else (4.0 if arch == "reference" else 0.1),
        arch=arch,
        features=features,
        lr_adapter=lr_adapter,
        lr_head=lr_head,
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
    )
    job = BamJob(
        checkpoint=checkpoint,
        samples=samples,
        store=store,
        datasets=comma_list(datasets),
        data_root=root,
        out=out,
        streams=tuple(comma_list(streams)),
        no_raw_media=no_raw_media,
        settings=settings,
        cache_dir="" if no_cache else cache_dir,
        fps=fps,
        max_frames=max_frames,
        report_to=report_to,
    )
    summary = run_bam(job)
    for name, report in summary["datasets"].items():
        if "saved" in report:
            click.echo(report["saved"])
        unnamed = {k: v for k, v in report.get("no_feature_file", {}).items() if v}
        if unnamed:
            info(f"bam: {name}: samples naming no media / feature file (adapter adds nothing): {json.dumps(unnamed)}")
        for adapter, keys in report.get("not_in_store", {}).items():
            if keys:
                shown = ", ".join(sorted(set(keys))[:3])
                info(f"bam: {name}: {len(set(keys))} {adapter} keys not in the store (adapter adds nothing): {shown}")
        missing = {k: v for k, v in report.get("no_valid_frames", {}).items() if v}
        if missing:
            info(f"bam: {name}: clips without valid frames (adapter adds nothing): {json.dumps(missing)}")
        if report.get("media_failed"):
            info(f"bam: {name}: {len(report['media_failed'])} samples skipped, media could not be decoded")


if __name__ == "__main__":
    main()

"""hba-bam: train Behavioral Adapter Modules per dataset on a frozen hba-sft checkpoint."""

from __future__ import annotations

import json
from dataclasses import asdict, fields

import click

from hba_core.bam.settings import BamSettings, bam_settings
from hba_core.media_settings import MediaSettings
from hba_tools._cli import PlanRequest, comma_list, info, media_options, options_from, plan_options, user_errors

ARCH_DEPENDENT = ("dropout", "alpha_init")
OTHERS = tuple(f.name for f in fields(BamSettings) if f.name not in ARCH_DEPENDENT)


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
@click.option("--out", default=None, help="Where to save adapters [default: <init>/bam].")
@click.option(
    "--streams",
    default="audio,video",
    show_default=True,
    help="Adapters to train: audio (OpenSMILE), video (MediaPipe face+pose) or both (Table 12).",
)
@click.option("--no-raw-media", is_flag=True, help="Backbone sees only text; descriptors carry audio/video (Table 10).")
@options_from(BamSettings, exclude=ARCH_DEPENDENT)  # --hidden, --arch, --features, --epochs, --lr-adapter, ...
@options_from(BamSettings, exclude=OTHERS, unset=True)  # --dropout, --alpha-init: not given = the --arch's
@click.option("--no-cache", is_flag=True, help="Recompute pooled h_penult instead of reading the cache.")
@click.option("--cache", "cache_dir", default=None, help="Cache folder [default: <out>/.cache].")
@media_options  # --root/--data-root, --fps, --max-frames, ...: how the backbone reads media (MediaSettings)
@plan_options()
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
    media: MediaSettings,
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
    report_to: str,
    plan: PlanRequest | None,
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
        hba-bam --init runs/sft/best --samples atlas.jsonl --store desc.zarr --datasets mmsd --plan --gpu-memory 24
    """
    from hba_core.extras import require

    require("hba-bam", "train")
    from hba_core.bam.run import BamJob, run_bam

    settings = bam_settings(
        hidden=hidden,
        dropout=dropout,
        alpha_init=alpha_init,
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
        out=out,
        streams=tuple(comma_list(streams)),
        no_raw_media=no_raw_media,
        settings=settings,
        cache_dir="" if no_cache else cache_dir,
        report_to=report_to,
        **asdict(media),
    )
    if plan is not None:
        from hba_core.training.plan import plan_bam

        return plan.show(plan_bam(job, seq_len=plan.tokens or 4096))
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

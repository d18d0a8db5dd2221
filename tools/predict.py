"""hba-predict: OmniSapiens / Qwen2.5-Omni predictions for HBA samples (heads or free-text generation)."""

from __future__ import annotations

import os
from typing import Any

import click

from hba_core.media_settings import MediaSettings
from hba_tools._cli import info, media_options, stderr_is_terminal, user_errors


@click.command()
@click.option(
    "--model",
    "-m",
    required=True,
    help="hba checkpoint, reference SFT checkpoint (accelerate save_state), or a hub id / path of a "
    "Qwen2.5-Omni model (a full Omni release such as ddvd233/OmniSapiens-7B-RL works: only its Thinker is read)",
)
@click.option(
    "--samples", "-s", required=True, type=click.Path(), help="samples: JSONL, a Parquet shard, a quoted glob, a folder"
)
@click.option(
    "--out",
    "-o",
    required=True,
    type=click.Path(dir_okay=False, allow_dash=True),
    help="predictions JSONL (appended; ids already there are skipped); - streams to stdout",
)
@click.option(
    "--mode",
    type=click.Choice(["heads", "generate"]),
    default=None,
    help="heads: labels + probabilities from the task heads; generate: free text for every sample "
    "[heads for a checkpoint with trained heads, generate otherwise]",
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
@click.option(
    "--base-model",
    default=None,
    help="the checkpoint's backbone (dir or hub id), if not where it was trained; for a reference SFT checkpoint "
    "the Qwen2.5-Omni it was trained on [Qwen/Qwen2.5-Omni-7B]",
)
@media_options  # --root/--data-root, --fps, --max-frames, --max-pixels, ... (MediaSettings)
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
@click.option(
    "--endpoint",
    default=None,
    metavar="URL",
    help="an OpenAI-compatible server (vLLM serve, SGLang, a hosted API), e.g. http://127.0.0.1:8000/v1: "
    "--model is then the served model's name and nothing of torch is loaded",
)
@click.option(
    "--api-key-env",
    default="OPENAI_API_KEY",
    show_default=True,
    help="--endpoint: environment variable holding the key (none needed for a local vLLM); never written",
)
@click.option(
    "--send",
    default="video,audio,image",
    show_default=True,
    help="--endpoint: modalities the server takes; the others are substituted (frames, transcript) and reported",
)
@click.option("--max-part-mb", default=20.0, show_default=True, help="--endpoint: cap on one media part (base64)")
@click.option("--concurrency", default=16, show_default=True, help="--endpoint: requests in flight at once")
@click.option("--cache", "cache_path", default=None, type=click.Path(dir_okay=False), help="--endpoint: reply cache")
@click.option("--no-cache", is_flag=True, help="--endpoint: neither read nor write the reply cache")
@click.option(
    "--local_rank",
    "--local-rank",
    type=int,
    default=None,
    hidden=True,
    help="set by the deepspeed launcher (LOCAL_RANK in the environment is what is used)",
)
@user_errors
def main(
    model: str,
    samples: str,
    out: str,
    media: MediaSettings,
    mode: str | None,
    template: str | None,
    batch_size: int,
    max_new_tokens: int,
    dtype: str,
    device: str | None,
    base_model: str | None,
    workers: int,
    bam_dir: str | None,
    store: str | None,
    endpoint: str | None,
    api_key_env: str,
    send: str,
    max_part_mb: float,
    concurrency: int,
    cache_path: str | None,
    no_cache: bool,
    local_rank: int | None,
) -> None:
    """Predict every sample not yet in --out; print the output path.

    Example:

    \b
      hba-predict --model runs/qa/best --samples test.jsonl --data-root data --out preds.jsonl
      hba-predict --model Qwen/Qwen2.5-Omni-7B --mode generate --template think -s test.jsonl -o zs.jsonl
      hba-predict --model runs/cls/best --bam runs/cls/best/bam --store desc.zarr -s test.jsonl -o bam.jsonl
      hba-predict --model ddvd233/OmniSapiens-7B-RL --mode generate --template think -s test.jsonl -o rl.jsonl
      hba-predict --model omnisapiens_sft/ --base-model Qwen/Qwen2.5-Omni-7B -s test.jsonl -o sft.jsonl
      torchrun --nproc-per-node 8 -m hba_tools.predict --model runs/cls/best -s test.jsonl -o preds.jsonl
      hba-predict --endpoint http://127.0.0.1:8000/v1 -m Qwen/Qwen2.5-VL-7B-Instruct -s test.jsonl -o vl.jsonl
      hba-score --truth test.jsonl --pred preds.jsonl
    """
    from hba_core.extras import require

    if endpoint is not None:  # a served model: this path imports nothing of torch
        from hba_core import served as srv
        from hba_core.chat_client import ClientSettings

        require("hba-predict --endpoint", "judge", "aiohttp")
        require("hba-predict --endpoint", "media", "av")
        if mode == "heads" or bam_dir is not None:
            raise click.UsageError("--endpoint generates text: heads mode and --bam need a local hba checkpoint")
        summary = srv.predict_served(
            samples,
            out,
            model=model,
            client=ClientSettings(base_url=endpoint, model=model, concurrency=concurrency),
            api_key=os.environ.get(api_key_env) or "EMPTY",  # vLLM without --api-key takes any
            served=srv.ServedSettings(
                data_root=media.data_root,
                send=srv.parse_send(send),
                max_part_mb=max_part_mb,
                template=template,
                max_new_tokens=max_new_tokens,
                fps=media.fps,
                max_frames=media.max_frames,
                max_audio_seconds=media.max_audio_seconds,
                allow_outside_root=media.allow_outside_root,
            ),
            cache_path=None if no_cache else (cache_path or srv.default_cache_path()),
        )
        for line in srv.summary_lines(summary):
            info(line)
        if summary["failed"]:  # a recipe stage must not count a partial output as done
            raise click.ClickException(f"{summary['failed']} samples got no reply; re-run to ask for them again")
        if out != "-":
            click.echo(out)
        return
    require("hba-predict", "train", "torch", "transformers", "peft")
    from hba_core.training.distributed import init_distributed, launcher_env, shutdown_distributed

    if (bam_dir is None) != (store is None):
        raise click.UsageError("--bam and --store go together: the adapters read the descriptor store")
    world = launcher_env()[1]
    if world > 1 and out == "-":
        raise click.UsageError(f"--out - with {world} processes: give a file; rank 0 merges the ranks' parts into it")
    dist = init_distributed()  # under torchrun / deepspeed: the process group, and cuda:LOCAL_RANK
    try:
        summary = _predict(
            dist,
            model=model,
            samples=samples,
            out=out,
            media=media,
            mode=mode,
            template=template,
            batch_size=batch_size,
            max_new_tokens=max_new_tokens,
            dtype=dtype,
            device=device,
            base_model=base_model,
            workers=workers,
            bam_dir=bam_dir,
            store=store,
        )
    finally:
        shutdown_distributed()
    if dist.main:  # rank 0 reports for every rank
        _report(summary, out)


def _predict(
    dist: Any,
    *,
    model: str,
    dtype: str,
    device: str | None,
    base_model: str | None,
    bam_dir: str | None,
    store: str | None,
    media: MediaSettings,
    mode: str | None,
    **options: Any,
) -> dict[str, Any]:
    import torch

    from hba_core.predict import attach_bam, load_predictor, predict_file

    device = device or (str(dist.device) if torch.cuda.is_available() else None)  # cuda:LOCAL_RANK
    predictor = load_predictor(model, dtype=dtype, base_model=base_model, device=device)
    if bam_dir is not None:
        attach_bam(predictor, bam_dir, store)
    heads = predictor.model is not None and predictor.model.heads_trained  # e.g. not an hba-sft gen checkpoint
    chosen = mode or ("heads" if heads else "generate")
    return predict_file(predictor, media=media, mode=chosen, progress=stderr_is_terminal(), distributed=dist, **options)


def _report(summary: dict[str, Any], out: str) -> None:
    info(
        f"{summary['written']} predictions written ({summary['already_done']} already there), "
        f"{summary['skipped']} skipped (undecodable media: {', '.join(summary['skipped_ids'][:5]) or 'none'}), "
        f"{summary['samples_per_s']} samples/s"
    )
    if "missing_ids" in summary:  # a data-parallel run (or the end of one): the merge's check
        missing = summary["missing_ids"]
        info(
            f"merged {summary['processes']} process(es)' parts into {out}: "
            + (
                f"{len(missing)} sample(s) without a prediction: {', '.join(missing[:5])}"
                if missing
                else "every sample once"
            )
        )
    for problem in summary["bad_rows"][:20]:
        info(f"  bad row skipped: {problem}")
    if summary["substitutions"]:  # a backbone without some modality answered from what it takes
        info(f"modality substitutions ({summary['adapter']} backbone), per dataset:")
        for dataset, kinds in summary["substitutions"].items():
            info(f"  {dataset}: " + ", ".join(f"{n} {kind}" for kind, n in kinds.items()))
    if out != "-":  # with --out - stdout carries the predictions themselves
        click.echo(out)


if __name__ == "__main__":
    main()

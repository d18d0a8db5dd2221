"""hba-sft: supervised fine-tuning of OmniSapiens (Qwen2.5-Omni Thinker + task heads), stage by stage."""

from __future__ import annotations

import json
import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any

import click

from hba_tools._cli import comma_list, info, user_errors

_FLAGS: list[tuple[str, Any, str]] = [
    ("--data-root", str, "directory the samples' media paths are relative to"),
    ("--model", str, "backbone: hub id or local path [Qwen/Qwen2.5-Omni-7B]"),
    ("--init", str, "continue from an hba checkpoint (e.g. RUN/best of the cls stage)"),
    ("--lr", float, "peak learning rate [1e-4]"),
    ("--warmup-steps", int, "linear warm-up steps before the cosine decay [50]"),
    ("--epochs", float, "epochs [5]"),
    ("--batch-size", int, "effective batch = micro-batch x processes x accumulation [512]"),
    ("--micro-batch", int, "samples per forward pass and process [2]"),
    ("--dtype", click.Choice(["float32", "bfloat16"]), "weights/compute precision [float32, as in the paper]"),
    ("--lora-r", int, "LoRA rank [32]"),
    ("--lora-alpha", int, "LoRA alpha [64]"),
    ("--lora-dropout", float, "LoRA dropout [0.05]"),
    ("--fps", float, "video frames per second [2]"),
    ("--max-frames", int, "frames per video at most [32]"),
    ("--max-pixels", int, "pixels per frame at most [200704 = 256x28x28]"),
    ("--max-audio-seconds", float, "audio is cut here and counted [30]"),
    ("--workers", int, "DataLoader workers decoding media [2]"),
    ("--seed", int, "seed of initialisation, data order and dropout [0]"),
    ("--save-every", int, "optimizer steps between resumable states [50]"),
    ("--eval-every", int, "optimizer steps between validations; 0 = every epoch [0]"),
    ("--max-steps", int, "stop after this many optimizer steps (resumable)"),
    ("--deepspeed", str, "zero2, zero3 or a DeepSpeed JSON config (multi-process runs default to zero2)"),
    ("--report-to", click.Choice(["none", "tensorboard", "wandb"]), "also log metrics there [none]"),
]


def _options(func: Any) -> Any:
    for flag, kind, text in reversed(_FLAGS):
        names = ("--root", flag, "data_root") if flag == "--data-root" else (flag,)  # --root as in every tool
        func = click.option(*names, type=kind, default=None, help=text)(func)
    func = click.option(
        "--gradient-checkpointing/--no-gradient-checkpointing",
        default=None,
        help="recompute activations in backward: less memory, ~30% slower [on]",
    )(func)
    func = click.option("--resume", is_flag=True, help="continue RUN from its last saved state")(func)
    func = click.option(
        "--config",
        "config_file",
        type=click.Path(exists=True, dir_okay=False),
        help="JSON or TOML file of these options (flags override it)",
    )(func)
    func = click.option("--exclude", multiple=True, help="leave this dataset out (repeatable)")(func)
    func = click.option("--datasets", multiple=True, help="only these datasets (repeatable or comma-separated)")(func)
    func = click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="run directory")(func)
    # Any sample source: JSONL, a Parquet shard, a quoted glob of shards or a release folder (hba_core.sources).
    func = click.argument("samples", type=click.Path())(func)
    return func


def _run(
    stage: str,
    samples: str,
    out: str,
    config_file: str | None,
    datasets: tuple[str, ...],
    exclude: tuple[str, ...],
    **flags: Any,
) -> None:
    from hba_core.extras import require

    require(f"hba-sft {stage}", "train")
    from hba_core.errors import InputError
    from hba_core.model.train import SftOptions, run_sft

    known = {f.name for f in fields(SftOptions)}
    merged: dict[str, Any] = {}
    if config_file:
        text = Path(config_file).read_text()
        loaded = tomllib.loads(text) if config_file.endswith(".toml") else json.loads(text)
        unknown = sorted(set(loaded) - known)
        if unknown:
            raise InputError(config_file, f"unknown options {unknown}; valid: {', '.join(sorted(known))}")
        merged.update(loaded)
    merged.update({k: v for k, v in flags.items() if v is not None and v is not False})
    if flags.get("resume"):
        merged["resume"] = True
    if datasets:
        merged["datasets"] = comma_list(*datasets)
    if exclude:
        merged["exclude"] = comma_list(*exclude)
    merged.update(stage=stage, samples=samples, out=out)
    summary = run_sft(SftOptions(**merged))
    if not summary["main_process"]:
        return
    info(
        f"{stage}: {summary['steps']} steps, best validation CE {summary['best_val_ce']:.4f}, "
        f"{summary['skipped_samples']} samples skipped (undecodable media), "
        f"{summary['audio_clips_cut']} audio clips cut at the limit"
    )
    if summary["best"] is None:
        raise click.ClickException(
            f"{summary['run_dir']}: --max-steps stopped the run before any validation, so no "
            "best/ checkpoint was selected; add --eval-every N, or --resume to finish"
        )
    click.echo(summary["best"])


@click.group()
@click.option(
    "--local_rank",
    "--local-rank",
    type=int,
    default=None,
    hidden=True,
    help="set by the deepspeed launcher (LOCAL_RANK in the environment is what is used)",
)
def main(local_rank: int | None) -> None:
    """Supervised fine-tuning of OmniSapiens on HBA samples (paper App. B.1, C.2).

    Stages run in order, each continuing from the previous one's best checkpoint. Example:

    \b
      hba-sft cls atlas.jsonl --data-root data -o runs/cls
      hba-sft qa atlas.jsonl --data-root data -o runs/qa --init runs/cls/best
      hba-predict --model runs/qa/best --samples test.jsonl --data-root data --out preds.jsonl

    Multi-GPU: deepspeed --num_gpus 8 --module hba_tools.sft cls ... --deepspeed zero2 --dtype bfloat16
    (or: torchrun --nproc_per_node 8 -m hba_tools.sft cls ...)
    """


@main.command("cls")
@_options
@user_errors
def cls_stage(**kwargs: Any) -> None:
    """Train LoRA + one classifier head per task on every classification dataset.

    Example: hba-sft cls atlas.jsonl --data-root data -o runs/cls --epochs 5
    """
    _run("cls", **kwargs)


@main.command("qa")
@_options
@user_errors
def qa_stage(**kwargs: Any) -> None:
    """Train only the LM head (backbone and heads frozen) on the free-text datasets.

    Example: hba-sft qa atlas.jsonl --data-root data -o runs/qa --init runs/cls/best
    """
    _run("qa", **kwargs)


@main.command("joint")
@_options
@user_errors
def joint_stage(**kwargs: Any) -> None:
    """Train LoRA, heads and LM head together on L = L_cls + L_qa over all datasets.

    Example: hba-sft joint atlas.jsonl --data-root data -o runs/joint
    """
    _run("joint", **kwargs)


if __name__ == "__main__":
    main()

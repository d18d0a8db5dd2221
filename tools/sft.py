"""hba-sft: supervised fine-tuning of OmniSapiens (Qwen2.5-Omni Thinker + task heads), stage by stage."""

from __future__ import annotations

from typing import Any

import click

from hba_core.model.sft_options import SftOptions
from hba_tools._cli import MEDIA_FLAGS, PlanRequest, info, options_from, plan_options, user_errors

# Every SftOptions field is a flag (help and defaults from the dataclass) but these three: the stage is the
# subcommand, the samples an argument, --out has its short form. Flags not given stay None, so --config's
# values hold unless a flag is given.
_ARGUMENTS = ("stage", "samples", "out")


def _options(func: Any) -> Any:
    func = plan_options()(func)
    func = options_from(SftOptions, exclude=_ARGUMENTS, rename=MEDIA_FLAGS, unset=True)(func)
    func = click.option(
        "--config",
        "config_file",
        type=click.Path(exists=True, dir_okay=False),
        help="JSON or TOML file of these options, e.g. lr = 5e-5 (flags override it)",
    )(func)
    func = click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="run directory")(func)
    # Any sample source: JSONL, a Parquet shard, a quoted glob of shards or a release folder (hba_core.sources).
    func = click.argument("samples", type=click.Path())(func)
    return func


def _run(stage: str, samples: str, out: str, config_file: str | None, plan: PlanRequest | None, **flags: Any) -> None:
    from hba_core.extras import require

    require(f"hba-sft {stage}", "train")
    from hba_core.model.sft_options import sft_options

    opts = sft_options(stage, samples, out, config_file, **flags)
    if plan is not None:
        from hba_core.training.plan import plan_sft

        return plan.show(plan_sft(opts, seq_len=plan.tokens or 4096, gpus=plan.gpus))
    from hba_core.model.train import run_sft

    summary = run_sft(opts)
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
    (or: torchrun --nproc_per_node 8 -m hba_tools.sft cls ...). Will it fit? --plan prints the memory per
    GPU and loads nothing:

    \b
      hba-sft cls atlas.jsonl -o runs/cls --plan --plan-gpus 8 --dtype bfloat16 --plan-tokens 5000 --gpu-memory 80
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


@main.command("gen")
@_options
@user_errors
def gen_stage(**kwargs: Any) -> None:
    """Train only LoRA on the answer tokens (teacher forcing) of every dataset: the decoder answers all tasks.

    A classification sample's answer is its label text. The loss covers the answer and its end-of-turn
    token, nothing of the prompt. Predict with generation (hba-predict --mode generate, its default for
    such a checkpoint).

    Example: hba-sft gen atlas.jsonl --data-root data -o runs/gen --epochs 1
    """
    _run("gen", **kwargs)


if __name__ == "__main__":
    main()

"""hba-grpo: OmniSapiens-7B RL - GRPO (or RLOO) on the Thinker's decoder with the Eq. 5 reward."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any

import click

from hba_core.errors import InputError
from hba_core.rl.config import GrpoConfig
from hba_tools._cli import MEDIA_FLAGS, PlanRequest, info, options_from, plan_options, user_errors

# One --flag per GrpoConfig field, help and defaults from the dataclass (hba_tools._cli.options_from).
config_options = options_from(
    GrpoConfig,
    rename={**MEDIA_FLAGS, "reward_weights": "--reward-weight"},  # --root, as in every tool
)


def deepspeed_logs_to_stderr() -> None:
    """DeepSpeed's logger writes to stdout (and warns on import when no GPU): keep stdout for the result path."""
    with contextlib.redirect_stdout(sys.stderr):  # its handler binds to sys.stdout when created
        try:
            import deepspeed.utils  # noqa: F401
        except ImportError:
            return


def check_weights(weights: dict[str, float]) -> dict[str, float]:
    """``--reward-weight`` terms are Eq. 5's (the values are parsed as numbers by the option)."""
    from hba_core.rewards import WEIGHTS

    unknown = set(weights) - set(WEIGHTS)
    if unknown:
        raise InputError("--reward-weight", f"unknown term {sorted(unknown)[0]!r}; valid: {', '.join(WEIGHTS)}")
    return weights


@click.command(context_settings={"max_content_width": 120})
@config_options
@plan_options(tokens=False)  # tokens per sample: --max-prompt-tokens + --max-new-tokens
@click.option(
    "--local_rank",
    "--local-rank",
    "local_rank",
    type=int,
    default=None,
    hidden=True,
    help="set by the deepspeed launcher",
)
@user_errors
def main(local_rank: int | None, plan: PlanRequest | None, **options: Any) -> None:
    """Train OmniSapiens-7B RL with GRPO: sample --group-size responses per prompt, reward them
    (exact boxed answer + 0.2 format + 0.5 embedding similarity), update with the clipped surrogate.

    Re-running the same command resumes from the newest checkpoint in --out. Progress goes to
    stderr, one metrics line per step to OUT/metrics.jsonl; the trained model is OUT/final
    (hba-predict --mode generate --template think evaluates it). Prints the final model's path.

    \b
    Example:
        hba-grpo --init Qwen/Qwen2.5-Omni-7B --train train.jsonl --val val.jsonl --out runs/rl
        deepspeed --num_gpus 8 $(which hba-grpo) --init Qwen/Qwen2.5-Omni-7B --train train.jsonl \\
            --out runs/rl --deepspeed zero2 --gradient-checkpointing
        hba-grpo ... --estimator rloo --group-size 20 --lr 1e-6
        hba-grpo --init Qwen/Qwen2.5-Omni-7B --train train.jsonl --out runs/rl --plan --plan-gpus 8 \
            --deepspeed zero2 --dtype bfloat16 --gpu-memory 80      # memory per GPU; loads nothing
        tail -f runs/rl/metrics.jsonl | jq -c '{step, reward, format_rate}'
    """
    from hba_core.extras import require

    require("hba-grpo", "train")
    from hba_core.rl.trainer import train

    check_weights(options["reward_weights"])
    if plan is not None:
        from hba_core.training.plan import plan_grpo

        return plan.show(plan_grpo(GrpoConfig(**options), gpus=plan.gpus))
    deepspeed_logs_to_stderr()
    final = train(GrpoConfig(**options), log=info)
    if int(os.environ.get("RANK", "0")) == 0:  # under deepspeed, one line from the main process
        click.echo(str(final))


if __name__ == "__main__":
    main()

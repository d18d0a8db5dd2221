"""hba-grpo: OmniSapiens-7B RL - GRPO (or RLOO) on the Thinker's decoder with the Eq. 5 reward."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import types
import typing
from typing import Any

import click

from hba_core.errors import InputError
from hba_core.rl.config import GrpoConfig
from hba_tools._cli import info, user_errors


def _click_type(hint: Any) -> Any:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    base = args[0] if isinstance(hint, types.UnionType) and args else hint
    return {int: int, float: float, str: str}.get(base, str)


def config_options(fn: Any) -> Any:
    """One ``--flag`` per :class:`GrpoConfig` field, help and defaults from the dataclass."""
    hints = typing.get_type_hints(GrpoConfig)
    for f in reversed(dataclasses.fields(GrpoConfig)):
        flag = "--" + f.name.replace("_", "-")
        help_text = f.metadata.get("help", "")
        if f.name == "reward_weights":
            fn = click.option("--reward-weight", "reward_weights", multiple=True, metavar="TERM=W", help=help_text)(fn)
        elif hints[f.name] is bool:
            fn = click.option(f"{flag}/--no-{flag[2:]}", f.name, default=f.default, show_default=True, help=help_text)(
                fn
            )
        else:
            required = f.default is dataclasses.MISSING
            names = ("--root", flag) if flag == "--data-root" else (flag,)  # --root, as in every tool
            fn = click.option(
                *names,
                f.name,
                type=_click_type(hints[f.name]),
                required=required,
                default=None if required else f.default,
                show_default=not required,
                help=help_text,
            )(fn)
    return fn


def deepspeed_logs_to_stderr() -> None:
    """DeepSpeed's logger writes to stdout (and warns on import when no GPU): keep stdout for the result path."""
    with contextlib.redirect_stdout(sys.stderr):  # its handler binds to sys.stdout when created
        try:
            import deepspeed.utils  # noqa: F401
        except ImportError:
            return


def parse_weights(pairs: tuple[str, ...]) -> dict[str, float]:
    weights = {}
    for pair in pairs:
        term, _, value = pair.partition("=")
        try:
            weights[term.strip()] = float(value)
        except ValueError:
            raise InputError("--reward-weight", f"{pair!r} is not TERM=NUMBER, e.g. similarity=0") from None
    from hba_core.rewards import WEIGHTS

    unknown = set(weights) - set(WEIGHTS)
    if unknown:
        raise InputError("--reward-weight", f"unknown term {sorted(unknown)[0]!r}; valid: {', '.join(WEIGHTS)}")
    return weights


@click.command(context_settings={"max_content_width": 120})
@config_options
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
def main(local_rank: int | None, **options: Any) -> None:
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
        tail -f runs/rl/metrics.jsonl | jq -c '{step, reward, format_rate}'
    """
    from hba_core.extras import require

    require("hba-grpo", "train")
    from hba_core.rl.trainer import train

    deepspeed_logs_to_stderr()
    options["reward_weights"] = parse_weights(options["reward_weights"])
    final = train(GrpoConfig(**options), log=info)
    if int(os.environ.get("RANK", "0")) == 0:  # under deepspeed, one line from the main process
        click.echo(str(final))


if __name__ == "__main__":
    main()

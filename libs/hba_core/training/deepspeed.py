"""The one DeepSpeed config builder: a shipped ZeRO config (``configs/zero2.json``, ``configs/zero3.json``) or
the user's JSON file, with the run's batch sizes, clipping and precision filled in.

hba-sft accepts stages up to 3; hba-grpo passes ``max_stage=2`` (ZeRO-3 would make every decoding step
of the rollouts gather the whole model). Keys starting with ``_`` are comments and are dropped.

>>> config = deepspeed_config("zero2", micro_batch=2, accumulation=4, max_grad_norm=1.0, bf16=False)
>>> config["zero_optimization"]["stage"], config["train_micro_batch_size_per_gpu"], config["bf16"]
(2, 2, {'enabled': False})
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from hba_core.errors import InputError

SHIPPED = ("zero2", "zero3")


def load_deepspeed_json(name: str, *, flag: str = "--deepspeed") -> dict[str, Any]:
    """The config named ``name`` (``zero2``, ``zero3``) or read from the JSON file ``name``, comments dropped."""
    if name in SHIPPED:
        text = resources.files("hba_core.training").joinpath(f"configs/{name}.json").read_text()
        source = name
    else:
        path = Path(name)
        if not path.is_file():
            raise InputError(flag, f"no DeepSpeed config {name!r}; use {', '.join(SHIPPED)} or a JSON file")
        text, source = path.read_text(), str(path)
    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{source}:{exc.lineno}", f"not valid JSON ({exc.msg}); fix the DeepSpeed config") from None
    if not isinstance(config, dict):
        raise InputError(source, "a DeepSpeed config is a JSON object")
    return {k: v for k, v in config.items() if not k.startswith("_")}


def zero_stage(config: dict[str, Any]) -> int:
    return int(config.get("zero_optimization", {}).get("stage", 0))


def deepspeed_config(
    name: str,
    *,
    micro_batch: int,
    accumulation: int,
    max_grad_norm: float,
    bf16: bool,
    max_stage: int = 3,
    managed_accumulation: bool = True,
    tool: str = "hba-sft",
    flag: str = "--deepspeed",
) -> dict[str, Any]:
    """A ready ``deepspeed.initialize`` config.

    ``managed_accumulation=False`` (GRPO): the loop decides where a mini-batch ends, so DeepSpeed sees an
    accumulation of 1 and every ``engine.step()`` is a boundary. A stage above ``max_stage`` is refused.
    """
    config = load_deepspeed_json(name, flag=flag)
    stage = zero_stage(config)
    if stage > max_stage:
        raise InputError(
            flag,
            f"ZeRO stage {stage} is not supported by {tool} (rollouts would gather the weights at every "
            f"token); use zero{max_stage}, with --lora if memory is short",
        )
    config.update(
        train_micro_batch_size_per_gpu=micro_batch,
        gradient_accumulation_steps=accumulation if managed_accumulation else 1,
        gradient_clipping=max_grad_norm,
        steps_per_print=10**9,  # DeepSpeed's own progress lines would interleave with ours
    )
    if not managed_accumulation:
        config["managed_gradient_accumulation"] = False
    config["bf16"] = {**config.get("bf16", {}), "enabled": bf16}
    return config

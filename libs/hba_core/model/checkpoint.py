"""OmniSapiens checkpoints: peft LoRA adapter + heads + (trained) LM head + label space + run config + model card.

A checkpoint directory holds::

    adapter_config.json, adapter_model.safetensors   # peft format: loads with PeftModel.from_pretrained
    heads.safetensors                                # heads.<TASK>.weight / .bias
    lm_head.safetensors                              # only when the stage trained the LM head (qa, joint)
    config.json                                      # run config (schemas/run-config.schema.json), label space
    README.md                                        # generated model card
    processor files                                  # the Qwen2.5-Omni processor, so predict needs nothing else

The backbone weights are not copied: ``config.json``'s ``base_model`` names them (hub id or path).
Loading gives bit-identical logits. :func:`merge_lora` folds LoRA into the backbone for serving.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from hba_core import schemas
from hba_core.errors import InputError
from hba_core.manifest import package_versions
from hba_core.model.backbone import base_thinker, load_lora, load_processor, load_thinker
from hba_core.model.omnisapiens import OmniSapiens

CONFIG = "config.json"


def is_checkpoint(path: str | os.PathLike[str]) -> bool:
    """True for a directory written by :func:`save_checkpoint` (a config.json with a ``tool`` field)."""
    config = Path(path) / CONFIG
    if not config.is_file():
        return False
    return "tool" in json.loads(config.read_text())


def versions() -> dict[str, str]:
    return package_versions(("hba", "torch", "transformers", "peft", "deepspeed"))


def run_config(
    *,
    tool: str,
    stage: str,
    base_model: str,
    init: str | None,
    label_space: dict[str, list[str]],
    datasets: list[str],
    options: dict[str, Any],
    seed: int,
) -> dict[str, Any]:
    """The run config written into run directories and checkpoints, validated against its schema."""
    config = {
        "tool": tool,
        "stage": stage,
        "hba_version": versions().get("hba", "0"),
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "base_model": base_model,
        "init": init,
        "label_space": label_space,
        "datasets": datasets,
        "options": options,
        "seed": seed,
        "versions": versions(),
    }
    problems = schemas.errors(config, "run-config")
    if problems:
        raise ValueError(f"run config does not match its schema: {problems}")
    return config


def _state(module: torch.nn.Module, prefix: str) -> dict[str, torch.Tensor]:
    return {f"{prefix}{k}": v.detach().to("cpu").contiguous().clone() for k, v in module.state_dict().items()}


def save_checkpoint(
    model: OmniSapiens,
    out_dir: str | os.PathLike[str],
    config: dict[str, Any],
    *,
    processor: Any = None,
    lm_head_trained: bool = False,
    metrics: dict[str, Any] | None = None,
) -> Path:
    """Write the checkpoint atomically (temp dir + rename; an existing ``out_dir`` is replaced)."""
    from safetensors.torch import save_file

    target = Path(out_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        model.thinker.save_pretrained(str(tmp))  # peft: adapter only
        save_file(_state(model.heads.heads, ""), str(tmp / "heads.safetensors"))
        if lm_head_trained:
            save_file(_state(model.lm_head(), ""), str(tmp / "lm_head.safetensors"))
        if processor is not None:
            processor.save_pretrained(str(tmp))
        full = {**config, "lm_head_trained": lm_head_trained, "metrics": metrics or {}}
        (tmp / CONFIG).write_text(json.dumps(full, indent=2) + "\n")
        (tmp / "README.md").write_text(model_card(full))
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            target.rename(old)
            tmp.rename(target)
            shutil.rmtree(old)
        else:
            tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def load_checkpoint(
    path: str | os.PathLike[str], *, dtype: str = "float32", trainable: bool = False, base_model: str | None = None
) -> tuple[OmniSapiens, dict[str, Any]]:
    """(model, config) from a checkpoint directory; ``base_model`` overrides the backbone location."""
    from safetensors.torch import load_file

    root = Path(path)
    if not is_checkpoint(root):
        raise InputError(
            str(root), "not an hba checkpoint (no config.json with a 'tool' field); pass a directory written by hba-sft"
        )
    config = json.loads((root / CONFIG).read_text())
    thinker = load_thinker(base_model or config["base_model"], dtype=dtype)
    if (root / "lm_head.safetensors").exists():
        head = thinker.get_output_embeddings()
        saved = load_file(str(root / "lm_head.safetensors"))
        head.load_state_dict({k: v.to(head.weight.dtype) for k, v in saved.items()})
    wrapped = load_lora(thinker, str(root), trainable=trainable)
    model = OmniSapiens(wrapped, config["label_space"])
    model.heads.heads.load_state_dict(load_file(str(root / "heads.safetensors")))
    return model.eval(), config


def load_checkpoint_processor(path: str | os.PathLike[str], config: dict[str, Any]) -> Any:
    """The processor saved with the checkpoint, else the base model's."""
    root = Path(path)
    return load_processor(str(root) if (root / "tokenizer_config.json").exists() else config["base_model"])


def merge_lora(model: OmniSapiens) -> Any:
    """The Thinker with LoRA folded into its weights (a plain ``Qwen2_5OmniThinkerForConditionalGeneration``)."""
    from peft import PeftModel

    if isinstance(model.thinker, PeftModel):
        return model.thinker.merge_and_unload()
    return base_thinker(model.thinker)


def model_card(config: dict[str, Any]) -> str:
    """A short README for the checkpoint: what it is, how it was trained, how to use it."""
    heads = "\n".join(f"- {code}: {', '.join(labels)}" for code, labels in config.get("label_space", {}).items())
    metrics = "\n".join(f"- {k}: {v}" for k, v in sorted(config.get("metrics", {}).items())) or "- (none)"
    options = config.get("options", {})
    return f"""# OmniSapiens SFT checkpoint ({config.get("stage")})

Written by `{config["tool"]}` (hba {config["hba_version"]}) on {config["created"]}.

- Base model: `{config["base_model"]}` (Qwen2.5-Omni Thinker; the Talker is not used)
- Initialised from: `{config.get("init")}`
- LoRA (peft): r={options.get("lora_r")}, alpha={options.get("lora_alpha")}, dropout={options.get("lora_dropout")},
  on the LLM's q/k/v/o/gate/up/down projections; audio and vision encoders frozen, no LoRA
- LM head trained in this checkpoint: {config.get("lm_head_trained")}
- Datasets: {", ".join(config.get("datasets", []))}

## Classifier heads (masked-mean pooled penultimate hidden state)
{heads or "- (none)"}

## Validation metrics of this checkpoint
{metrics}

## Use
```
hba-predict --model THIS_DIR --samples test.jsonl --data-root DATA --out preds.jsonl
```
The base weights are read from `base_model`; override with `--base-model PATH` when they live elsewhere.
"""

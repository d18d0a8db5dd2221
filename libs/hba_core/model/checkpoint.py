"""OmniSapiens checkpoints: peft LoRA adapter + heads + (trained) LM head + label space + run config + model card.

A checkpoint directory holds::

    adapter_config.json, adapter_model.safetensors   # peft format: loads with PeftModel.from_pretrained
    heads.safetensors                                # heads.<TASK>.weight / .bias
    lm_head.safetensors                              # only when the stage trained the LM head (qa, joint)
    config.json                                      # run config (schemas/run-config.schema.json), label space
    README.md                                        # generated model card
    processor files                                  # the backbone's processor (or tokenizer): predict needs no other

The backbone weights are not copied: ``config.json``'s ``base_model`` names them (hub id or absolute
path), ``base_model_fingerprint`` identifies their files, so the checkpoint loads from any folder, and
``adapter`` records its family (:mod:`hba_core.model.backbones`: ``omni_thinker``, ``image_text_to_text``,
``causal_lm``...); loading chooses the loader from the backbone's own ``config.json`` all the same.
Loading gives bit-identical logits. :func:`merge_lora` folds LoRA into the backbone for serving.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

import torch

from hba_core import schemas
from hba_core.errors import InputError
from hba_core.model.backbone import base_thinker, load_lora, load_processor, load_thinker
from hba_core.model.backbones import backbone_for
from hba_core.model.omnisapiens import OmniSapiens
from hba_core.model.source import fingerprint, locate
from hba_core.versions import package_versions

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
    heads_trained: bool = True,
) -> Path:
    """Write the checkpoint atomically (:func:`~hba_core.training.state.atomic_dir`: an existing ``out_dir`` is
    replaced in one step, a reader sees the old checkpoint or the new one). ``heads_trained=False`` (hba-sft
    gen: the heads are their random initialisation) makes hba-predict refuse heads mode for it."""
    from safetensors.torch import save_file

    from hba_core.training.state import atomic_dir

    target = Path(out_dir)
    with atomic_dir(target) as tmp:
        model.thinker.save_pretrained(str(tmp))  # peft: adapter only
        save_file(_state(model.heads.heads, ""), str(tmp / "heads.safetensors"))
        if lm_head_trained:
            save_file(_state(model.lm_head(), ""), str(tmp / "lm_head.safetensors"))
        if processor is not None:
            processor.save_pretrained(str(tmp))
        full = {**config, **backbone_record(config["base_model"]), "lm_head_trained": lm_head_trained}
        full["heads_trained"] = heads_trained
        full["metrics"] = metrics or {}
        (tmp / CONFIG).write_text(json.dumps(full, indent=2) + "\n")
        (tmp / "README.md").write_text(model_card(full))
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
    source = locate_base_model(root, config, base_model)
    backbone = None  # the Omni Thinker
    if backbone_for(source.config).adapter == "omni_thinker":
        thinker = load_thinker(source.location, dtype=dtype)
    else:
        from hba_core.model.generic import load_generic

        gm = load_generic(source.load_from, source.config, name=source.name, dtype=dtype, device=None)
        thinker, backbone = gm.model, gm.backbone
    if (root / "lm_head.safetensors").exists():
        head = thinker.get_output_embeddings()
        saved = load_file(str(root / "lm_head.safetensors"))
        head.load_state_dict({k: v.to(head.weight.dtype) for k, v in saved.items()})
    wrapped = load_lora(thinker, str(root), trainable=trainable)
    model = OmniSapiens(wrapped, config["label_space"], backbone)
    model.heads.heads.load_state_dict(load_file(str(root / "heads.safetensors")))
    model.heads_trained = bool(config.get("heads_trained", True))  # checkpoints before the flag: cls/qa/joint
    return model.eval(), config


def require_omni(path: str | os.PathLike[str], config: dict[str, Any], tool: str) -> None:
    """Refuse, in one line, a checkpoint on another backbone (``config["adapter"]``) for a tool that runs the
    Qwen2.5-Omni Thinker only (hba-bam, hba-grpo); checkpoints from before the adapter was recorded are Omni."""
    adapter = config.get("adapter", "omni_thinker")
    if adapter != "omni_thinker":
        raise InputError(
            str(path),
            f"{tool} needs a Qwen2.5-Omni checkpoint; this one was trained on a {adapter} backbone "
            f"({config.get('base_model')}); use hba-predict for it",
        )


def load_checkpoint_processor(
    path: str | os.PathLike[str], config: dict[str, Any], *, base_model: str | None = None
) -> Any:
    """The processor saved with the checkpoint, else the base model's (a causal LM's: its tokenizer)."""
    root = Path(path)
    if config.get("adapter", "omni_thinker") != "omni_thinker":
        from hba_core.model.generic import load_generic_processor

        source = locate_base_model(root, config, base_model)
        has_own = (root / "tokenizer_config.json").exists()
        return load_generic_processor(str(root.resolve()) if has_own else source.load_from, source.config)[0]
    if (root / "tokenizer_config.json").exists():
        return load_processor(str(root.resolve()))
    return load_processor(config["base_model"], base_dirs=(str(root),))


def backbone_record(base_model: str) -> dict[str, Any]:
    """How a checkpoint names its backbone so that it loads from any folder: the absolute directory (or
    the hub id) and a fingerprint of its files (:func:`hba_core.model.source.fingerprint`)."""
    source = locate(base_model)
    return {
        "base_model": source.location,
        "base_model_fingerprint": fingerprint(source),
        "adapter": backbone_for(source.config).adapter,
    }


def locate_base_model(root: str | os.PathLike[str], config: dict[str, Any], override: str | None = None) -> Any:
    """The checkpoint's backbone: ``override`` (``--base-model``) if given, else the recorded one.

    A relative path (checkpoints before backbones were recorded absolutely) is tried relative to the
    checkpoint directory, then the working directory. A recorded fingerprint that does not match the
    files found is an error (or a warning when the user chose ``--base-model`` explicitly).
    """
    import warnings

    if override is not None:
        source = locate(override)
    else:
        source = locate(config["base_model"], base_dirs=(str(root),))
    recorded, found = config.get("base_model_fingerprint"), fingerprint(source)
    if recorded and found and recorded != found:
        message = (
            f"the backbone at {source.location} is not the one {root} was trained on "
            f"(fingerprint {found[:19]}... vs recorded {recorded[:19]}...)"
        )
        if override is None:
            raise InputError(str(root), f"{message}; pass --base-model DIR of the original backbone")
        warnings.warn(f"{root}: {message}; using it because --base-model was given", stacklevel=2)
    return source


def merge_lora(model: OmniSapiens) -> Any:
    """The backbone with LoRA folded into its weights (a plain ``Qwen2_5OmniThinkerForConditionalGeneration``,
    or the other family's own transformers model)."""
    from peft import PeftModel

    if isinstance(model.thinker, PeftModel):
        return model.thinker.merge_and_unload()
    return base_thinker(model.thinker)


_BACKBONE_NOTE = {
    "omni_thinker": "Qwen2.5-Omni Thinker; the Talker is not used",
    "image_text_to_text": "an image-text-to-text model, adapter image_text_to_text",
    "audio_lm": "an audio LM, adapter audio_lm",
    "causal_lm": "a text-only causal LM, adapter causal_lm",
}


def model_card(config: dict[str, Any]) -> str:
    """A short README for the checkpoint: what it is, how it was trained, how to use it."""
    heads = "\n".join(f"- {code}: {', '.join(labels)}" for code, labels in config.get("label_space", {}).items())
    metrics = "\n".join(f"- {k}: {v}" for k, v in sorted(config.get("metrics", {}).items())) or "- (none)"
    options = config.get("options", {})
    adapter = config.get("adapter", "omni_thinker")
    return f"""# OmniSapiens SFT checkpoint ({config.get("stage")})

Written by `{config["tool"]}` (hba {config["hba_version"]}) on {config["created"]}.

- Base model: `{config["base_model"]}` ({_BACKBONE_NOTE.get(adapter, adapter)})
- Initialised from: `{config.get("init")}`
- LoRA (peft): r={options.get("lora_r")}, alpha={options.get("lora_alpha")}, dropout={options.get("lora_dropout")},
  on the LLM's q/k/v/o/gate/up/down projections; audio and vision encoders frozen, no LoRA
- LM head trained in this checkpoint: {config.get("lm_head_trained")}
- Task heads trained: {config.get("heads_trained", True)} (False: an hba-sft gen model, predict with --mode generate)
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

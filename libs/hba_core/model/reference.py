"""Checkpoints of the reference SFT trainer (MIT-MI/human_behavior_atlas) loaded as an :class:`OmniSapiens`.

The reference trainer (``training/sft/trainer/base_trainer.py``) saves ``MultiHeadOmniClassifier``
(``training/sft/models/qwen2_5_omni_classifier_heads_decoder.py``) with ``accelerate.save_state``:
the module's whole ``state_dict`` in one file - ``model.safetensors`` (plain accelerate),
``pytorch_model.bin`` (``safe_serialization=False``) or ``pytorch_model_fsdp.bin`` (FSDP with
``FULL_STATE_DICT``, the reference's accelerate config) - next to ``meta.json``, optimizer and RNG
states. The parameter names are:

- ``heads.<d>.weight`` / ``.bias``: one ``Linear(hidden, K_d)`` per *domain*, in the order of
  ``unified_label_map.json``'s ``meta.global_classes`` (sentiment_intensity, emotion, PTSD, depression,
  anxiety, sarcasm, humour); output ``k`` of head ``d`` is that domain's ``k``-th class;
- ``backbone.base_model.model.<thinker key>``: the peft-wrapped Thinker, in the naming of
  transformers 4.5x (``model.layers.*``, ``visual.*``, ``audio_tower.*``, ``lm_head.*``); LoRA'd
  modules hold ``<m>.base_layer.weight`` and ``<m>.lora_A.default.weight`` / ``lora_B``.

Here the LoRA is folded into the weights (W + alpha/r * B A; the state dict does not record alpha,
the reference configs use alpha = 2r, so that is the default), the heads become hba's task heads with
rows reordered to hba's label order, and every other backbone tensor in the file replaces the base
model's (the QA stage trains the LM head). Tensors are read one at a time. The backbone's
architecture and processor come from ``base_model`` (accelerate stores no config).
A sharded FSDP save (``pytorch_model_fsdp_0/``) is refused: merge it with accelerate first.

>>> reference_thinker_key("model.layers.0.mlp.up_proj.weight")
'model.language_model.layers.0.mlp.up_proj.weight'
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from hba_core.errors import InputError

WEIGHT_FILES = ("model.safetensors", "pytorch_model_fsdp.bin", "pytorch_model.bin")
# unified_label_map.json's meta.global_classes order, when the checkpoint ships no label map.
REFERENCE_DOMAINS = (
    "sentiment_intensity",
    "emotion",
    "mental_health_ptsd",
    "mental_health_depression",
    "mental_health_anxiety",
    "sarcasm",
    "humour",
)
_PREFIXES = (("audio_tower.", "model.audio_tower."), ("visual.", "model.visual."), ("model.", "model.language_model."))
_LORA = re.compile(r"^(?P<module>.+)\.lora_(?P<part>[AB])\.(?P<adapter>[^.]+)\.weight$")


def reference_thinker_key(key: str) -> str:
    """A Thinker parameter name of transformers 4.5x (the reference's) -> this transformers' name."""
    if key.startswith(("model.language_model.", "model.audio_tower.", "model.visual.", "lm_head.")):
        return key
    for old, new in _PREFIXES:
        if key.startswith(old):
            return new + key[len(old) :]
    raise KeyError(key)


def _weights_file(root: Path) -> Path | None:
    return next((root / name for name in WEIGHT_FILES if (root / name).is_file()), None)


def find_reference_checkpoint(path: str | os.PathLike[str]) -> Path | None:
    """The directory holding a reference checkpoint's weights (``path`` or its latest ``step_N``), or None.

    A directory with an hba or transformers ``config.json`` is not one.
    """
    root = Path(path)
    if not root.is_dir() or (root / "config.json").exists():
        return None
    if (root / "pytorch_model_fsdp_0").is_dir() and _weights_file(root) is None:
        raise InputError(
            str(root),
            "a sharded FSDP save (pytorch_model_fsdp_0/) cannot be read directly; merge it into one file "
            "with `accelerate merge-weights` and pass the merged directory",
        )
    if _weights_file(root) is not None:
        return root
    steps = sorted(
        (p for p in root.glob("step_*") if p.is_dir() and p.name[5:].isdigit()), key=lambda p: int(p.name[5:])
    )
    return find_reference_checkpoint(steps[-1]) if steps else None


def _tensors(path: Path) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) one at a time: safetensors lazily; a torch pickle memory-mapped, weights only."""
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt", device="cpu") as handle:
            for name in handle.keys():  # safe_open is not a dict: no plain iteration
                yield name, handle.get_tensor(name)
        return
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # not a pickled state dict of plain tensors
        raise InputError(str(path), f"cannot read the reference checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict):
        raise InputError(str(path), "holds no state dict; expected the file accelerate.save_state writes")
    yield from state.items()


def _label_map(root: Path) -> list[tuple[str, list[str]]]:
    """(domain, labels in head order) from ``unified_label_map.json`` next to the checkpoint (or one level
    up), else the reference's order with hba's domain labels (they are the same lists)."""
    from hba_core import registry

    for candidate in (root / "unified_label_map.json", root.parent / "unified_label_map.json"):
        if candidate.is_file():
            classes = json.loads(candidate.read_text())["meta"]["global_classes"]
            return [(domain, [entry["label"] for entry in entries]) for domain, entries in classes.items()]
    by_name = {t.domain.name: list(t.domain.labels) for t in registry.get().tasks.values() if t.domain}
    aliases = {
        "mental_health_ptsd": "ptsd",
        "mental_health_depression": "depression",
        "mental_health_anxiety": "anxiety",
    }
    return [(domain, by_name[aliases.get(domain, domain)]) for domain in REFERENCE_DOMAINS]


def _task_of(labels: list[str], label_space: dict[str, list[str]], where: str) -> str:
    for code, ours in label_space.items():
        if set(ours) == set(labels):
            return code
    raise InputError(where, f"no hba task has the labels {labels}; the label map does not match hba's registry")


def load_reference_checkpoint(
    path: str | os.PathLike[str],
    *,
    base_model: str,
    dtype: str = "float32",
    lora_alpha: float | None = None,
) -> tuple[Any, dict[str, int]]:
    """(:class:`~hba_core.model.omnisapiens.OmniSapiens` with a plain Thinker and LoRA merged, counts) from a
    reference SFT checkpoint directory; ``base_model`` gives the architecture (and any tensor the file lacks)."""
    from hba_core.model.backbone import load_thinker
    from hba_core.model.heads import default_label_space
    from hba_core.model.omnisapiens import OmniSapiens

    root = find_reference_checkpoint(path)
    if root is None:
        raise InputError(str(path), f"not a reference SFT checkpoint (no {', '.join(WEIGHT_FILES)})")
    weights = _weights_file(root)
    assert weights is not None
    thinker = load_thinker(base_model, dtype=dtype)
    params = dict(thinker.named_parameters()) | dict(thinker.named_buffers())
    heads: dict[int, dict[str, torch.Tensor]] = {}
    lora: dict[str, dict[str, torch.Tensor]] = {}
    replaced = 0
    for name, tensor in _tensors(weights):
        key = name.removeprefix("module.")
        if key.startswith("heads."):
            index, _, part = key[len("heads.") :].partition(".")
            heads.setdefault(int(index), {})[part] = tensor
            continue
        if not key.startswith("backbone."):
            raise InputError(
                f"{weights}: {name}", "unexpected parameter: not a head nor the backbone of MultiHeadOmniClassifier"
            )
        key = key[len("backbone.") :].removeprefix("base_model.model.")
        match = _LORA.match(key)
        if match:
            lora.setdefault(match["module"], {})[match["part"]] = tensor
            continue
        try:
            ours = reference_thinker_key(key.replace(".base_layer.", "."))
        except KeyError:
            raise InputError(f"{weights}: {name}", "not a Qwen2.5-Omni Thinker parameter") from None
        target = params.get(ours)
        if target is None or target.shape != tensor.shape:
            why = "no such parameter" if target is None else f"shape {tuple(tensor.shape)} vs {tuple(target.shape)}"
            raise InputError(
                f"{weights}: {name}",
                f"does not fit the backbone {base_model!r} ({why}); pass --base-model DIR of the Qwen2.5-Omni "
                "it was trained on",
            )
        with torch.no_grad():
            target.copy_(tensor.to(target.dtype))
        replaced += 1
    _merge_lora(params, lora, weights, lora_alpha)
    label_space = default_label_space()
    model = OmniSapiens(thinker, label_space)
    _load_heads(model, heads, _label_map(root), str(weights))
    return model.eval(), {"tensors_replaced": replaced, "lora_modules_merged": len(lora), "heads": len(heads)}


def _merge_lora(
    params: dict[str, torch.Tensor], lora: dict[str, dict[str, torch.Tensor]], where: Path, alpha: float | None
) -> None:
    """W += alpha/r * B A for every LoRA'd module (r from A's rows; alpha defaults to 2r, the reference's)."""
    for module, parts in lora.items():
        if set(parts) != {"A", "B"}:
            raise InputError(f"{where}: {module}", "LoRA module without both lora_A and lora_B")
        ours = reference_thinker_key(module) + ".weight"
        target = params.get(ours)
        a, b = parts["A"].float(), parts["B"].float()  # (r, in), (out, r)
        if target is None or target.shape != (b.shape[0], a.shape[1]):
            raise InputError(f"{where}: {module}", "LoRA matrices do not fit the backbone; pass --base-model")
        scale = (alpha if alpha is not None else 2 * a.shape[0]) / a.shape[0]
        with torch.no_grad():
            target.add_((scale * (b @ a)).to(target.dtype))


def _load_heads(
    model: Any, heads: dict[int, dict[str, torch.Tensor]], domains: list[tuple[str, list[str]]], where: str
) -> None:
    """Reference head ``d`` (one per domain) -> hba's head of that domain's task, rows in hba's label order."""
    if sorted(heads) != list(range(len(domains))):
        raise InputError(
            where,
            f"{len(heads)} heads, but the label map has {len(domains)} domains ({', '.join(d for d, _ in domains)})",
        )
    for index, (domain, labels) in enumerate(domains):
        code = _task_of(labels, model.label_space, where)
        weight, bias = heads[index].get("weight"), heads[index].get("bias")
        if weight is None or bias is None or weight.shape[0] != len(labels):
            raise InputError(where, f"head {index} ({domain}) does not have {len(labels)} outputs with weight and bias")
        order = [labels.index(label) for label in model.label_space[code]]  # hba row j <- reference row order[j]
        head = model.heads.heads[code]
        if weight.shape[1] != head.in_features:
            raise InputError(
                where, f"head {index} is {weight.shape[1]} wide, the backbone {head.in_features}; pass --base-model"
            )
        with torch.no_grad():
            head.weight.copy_(weight[order].float())
            head.bias.copy_(bias[order].float())

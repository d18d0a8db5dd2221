"""The released OmniSapiens BAM adapters (``keentomato/omnisapiens_bam_*``) as hba BAM sets.

The reference trains BAM with ``training/sft/trainer/bam_trainer.py`` and saves with accelerate's
``save_state``: the base classifier (LoRA backbone + one head per label domain) is model 0, and the
adapters, prepared separately (``--bam_fresh_start``, as its ``run_bam.sh`` runs), are models 1, 2, ...
in the order of ``meta.json``'s ``model_order`` (``["base", "video", "audio"]``, absent modalities
left out). File names follow accelerate: ``pytorch_model_fsdp[_<i>].bin`` under FSDP with
``FULL_STATE_DICT`` (the reference's accelerate config), ``model[_<i>].safetensors`` or
``pytorch_model[_<i>].bin`` without FSDP. An adapter's state dict is the reference's
``BehavioralAdapterModule``: ``ln_feats.{weight,bias}`` (D,), ``mlp.0.{weight,bias}`` (hidden, D),
``mlp.2.{weight,bias}`` (H, hidden), ``alpha`` (1,). Its input is the reference feature vector
(:func:`hba_core.bam.features.reference_features`: 3,318 keypoint values, 6,373 functionals).

What public code does not pin down, and how it is handled:

- the files the hub repositories hold: every accelerate layout above is accepted; a sharded FSDP
  state (``pytorch_model_fsdp_<i>/`` folders) or a folder with none of them is one clear error;
- which model is which when ``meta.json`` is missing: told apart by input width (3,318 video,
  6,373 audio), else an error;
- the dataset: the folder's name - a released repository name (``RELEASED``), ``bam_<dataset>`` (what
  ``run_bam.sh`` writes) or the dataset name itself;
- the head: ``bam_and_classifier_heads_only`` retrains the heads with the adapters, so the dataset's
  domain head ``heads.<d>`` is read from model 0 (``d`` = the domain's position in the unified label
  map, the registry's domain order - the same seven domains and labels, in the same order, as the
  reference's ``unified_label_map.json``). A folder without model 0 is refused: the SFT checkpoint's
  head was not trained with these adapters.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch

from hba_core import registry
from hba_core.bam.adapter import AdapterSet, ReferenceAdapter
from hba_core.bam.features import REFERENCE_DIMS
from hba_core.errors import InputError

RELEASED = {  # the reference README's model table -> hba dataset
    "omnisapiens_bam_humour_detection": "urfunny",
    "omnisapiens_bam_sentiment_polarity_mosei": "mosei_senti",
    "omnisapiens_bam_sarcasm_detection": "mmsd",
}
_WRAPPERS = ("_fsdp_wrapped_module.", "_orig_mod.", "_checkpoint_wrapped_module.")
_HEAD = re.compile(r"(?:^|\.)heads\.(\d+)\.(weight|bias)$")
ADAPTER_KEYS = ("ln_feats.weight", "ln_feats.bias", "mlp.0.weight", "mlp.0.bias", "mlp.2.weight", "mlp.2.bias", "alpha")


def model_files(folder: Path, index: int) -> list[Path]:
    """accelerate's names for model ``index`` of a ``save_state`` folder, those that exist."""
    tail = "" if index == 0 else f"_{index}"
    names = (f"pytorch_model_fsdp{tail}.bin", f"model{tail}.safetensors", f"pytorch_model{tail}.bin")
    return [folder / n for n in names if (folder / n).is_file()]


def is_reference_bam(folder: str | Path) -> bool:
    """A reference BAM checkpoint folder: accelerate's ``meta.json`` with a ``model_order``, or adapter files."""
    root = Path(folder)
    meta = root / "meta.json"
    if meta.is_file():
        try:
            return "model_order" in json.loads(meta.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            return False
    return bool(model_files(root, 1))


def reference_dataset(folder: Path) -> str:
    """The dataset of a reference BAM folder, from its name (see the module docstring)."""
    names = registry.dataset_names()
    name = folder.resolve().name
    for candidate in (RELEASED.get(name), name.removeprefix("bam_"), name):
        if candidate in names:
            return candidate
    raise InputError(
        str(folder),
        "cannot tell which dataset this reference BAM is for; name the folder after it "
        f"(bam_<dataset> or <dataset>, e.g. bam_mmsd) or as released ({', '.join(RELEASED)})",
    )


def _clean(key: str) -> str:
    for wrapper in _WRAPPERS:
        key = key.replace(wrapper, "")
    return key.removeprefix("module.")


def read_state(path: Path, wanted: Any = None) -> dict[str, torch.Tensor]:
    """Tensors of one weight file whose cleaned name passes ``wanted`` (all when None), names cleaned.

    ``.safetensors`` is read key by key; ``.bin`` with ``torch.load(weights_only=True, mmap=True)``, so
    a 16 GB model 0 costs only the tensors kept.
    """
    out: dict[str, torch.Tensor] = {}
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            for key in fh.keys():
                if wanted is None or wanted(_clean(key)):
                    out[_clean(key)] = fh.get_tensor(key)
        return out
    import pickle

    try:
        try:
            state = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # legacy (non-zip) pickles cannot be memory-mapped
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(str(path), f"cannot load with torch.load(weights_only=True): {reason}") from None
    if not isinstance(state, dict):
        raise InputError(str(path), f"expected a state dict, found a {type(state).__name__}")
    return {_clean(k): v.clone() for k, v in state.items() if wanted is None or wanted(_clean(k))}


def _adapter(state: dict[str, torch.Tensor], where: str) -> tuple[ReferenceAdapter, int]:
    """A :class:`ReferenceAdapter` holding ``state`` (the reference's key names), and its input width."""
    missing = [k for k in ("mlp.0.weight", "mlp.0.bias", "mlp.2.weight", "mlp.2.bias", "alpha") if k not in state]
    if missing:
        found = ", ".join(sorted(state)[:6]) or "no tensors"
        raise InputError(where, f"not a reference BAM adapter: no {', '.join(missing)} (found {found})")
    hidden, feat_dim = state["mlp.0.weight"].shape
    out_dim = state["mlp.2.weight"].shape[0]
    module = ReferenceAdapter(feat_dim, out_dim, hidden, use_ln="ln_feats.weight" in state)
    module.load_state_dict({k: v.float() for k, v in state.items() if k in ADAPTER_KEYS})
    return module, int(feat_dim)


def _adapters(root: Path, order: list[str] | None) -> dict[str, ReferenceAdapter]:
    found: dict[str, ReferenceAdapter] = {}
    by_width = {dim: name for name, dim in REFERENCE_DIMS.items()}
    index = 1
    while files := model_files(root, index):
        module, width = _adapter(read_state(files[0]), str(files[0]))
        name = order[index] if order and index < len(order) else by_width.get(width)
        if name not in REFERENCE_DIMS:
            raise InputError(
                str(files[0]), f"cannot tell whether this adapter is video or audio (input width {width}, no meta.json)"
            )
        found[name] = module
        index += 1
    if not found:  # the reference's normal (non-fresh) resume keeps them inside model 0
        for file in model_files(root, 0)[:1]:
            state = read_state(file, lambda k: k.startswith(("video_adapter.", "audio_adapter.")))
            for name in ("video", "audio"):
                part = {k.removeprefix(f"{name}_adapter."): v for k, v in state.items() if k.startswith(f"{name}_")}
                if part:
                    found[name] = _adapter(part, f"{file} ({name}_adapter)")[0]
    return found


def load_reference_bam(folder: str | Path, dataset: str | None = None) -> Any:
    """One released (reference-layout) BAM folder as a :class:`~hba_core.bam.apply.LoadedBam`."""
    from hba_core.bam.apply import LoadedBam

    root = Path(folder)
    if any(root.glob("pytorch_model_fsdp_*/")) and not model_files(root, 1):
        raise InputError(
            str(root),
            "a sharded FSDP state (pytorch_model_fsdp_<i>/ folders) is not supported; "
            "save it with fsdp_state_dict_type FULL_STATE_DICT or merge it with `accelerate merge-weights`",
        )
    name = dataset or reference_dataset(root)
    ds = registry.dataset(name)
    if ds.is_free_text or ds.task.domain is None:
        raise InputError(str(root), f"{name} is a free-text dataset: released free-text BAM sets are not supported")
    meta_path = root / "meta.json"
    order = json.loads(meta_path.read_text()).get("model_order") if meta_path.is_file() else None
    adapters = _adapters(root, order)
    if not adapters:
        raise InputError(
            str(root),
            "no BAM adapters found (expected model_1.safetensors, pytorch_model_fsdp_1.bin "
            "or pytorch_model_1.bin beside meta.json)",
        )
    base = model_files(root, 0)
    if not base:
        raise InputError(
            str(root),
            "no model 0 (pytorch_model_fsdp.bin, model.safetensors or pytorch_model.bin): "
            "its retrained classifier heads belong to these adapters, and are needed",
        )
    domain = list(registry.get().domains).index(ds.task.domain.name)
    heads = read_state(base[0], lambda k: (m := _HEAD.search(k)) is not None and int(m.group(1)) == domain)
    weight = next((v for k, v in heads.items() if k.endswith("weight")), None)
    bias = next((v for k, v in heads.items() if k.endswith("bias")), None)
    labels = list(ds.task.domain.labels)
    if weight is None or bias is None or weight.shape[0] != len(labels):
        shape = None if weight is None else tuple(weight.shape)
        raise InputError(str(base[0]), f"no heads.{domain} of {len(labels)} labels for {name} (found {shape})")
    hidden_size = int(weight.shape[1])
    for stream, module in adapters.items():
        if module.mlp[2].weight.shape[0] != hidden_size:
            raise InputError(
                str(root),
                f"the {stream} adapter outputs {module.mlp[2].weight.shape[0]} values, the head reads {hidden_size}",
            )
    widths = {s: int(m.mlp[0].weight.shape[1]) for s, m in adapters.items()}
    hidden = next(iter(adapters.values())).mlp[0].weight.shape[0]
    bam_set = AdapterSet(widths, hidden_size, int(hidden), 0.2, 4.0, arch="reference")
    for stream, module in adapters.items():
        bam_set.adapters[stream] = module  # widths of the MLPs may differ per stream (audio 512 in its config)
    head = torch.nn.Linear(hidden_size, len(labels))
    head.load_state_dict({"weight": weight.float(), "bias": bias.float()})
    meta = {
        "kind": "cls",
        "dataset": name,
        "task": ds.task.code,
        "labels": labels,
        "adapters": list(adapters),
        "feat_dims": widths,
        "settings": {"arch": "reference", "features": "reference", "hidden": int(hidden)},
        "source": f"reference BAM checkpoint {root}",
        "model_order": order,
    }
    return LoadedBam(name, labels, bam_set.eval(), head.eval(), meta)

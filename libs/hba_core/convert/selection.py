"""Select samples by dataset, task, split and modality, or hold some out (``exclude``).

Names are checked against the registry (an unknown name lists the valid ones). ``exclude`` takes
dataset names or task codes; the transfer experiment's training set is the train split without
MOSEI-SEN, MELD-EMO, DAIC-WOZ and MUStARD:

>>> keep = selector(splits=["train"], exclude=["mosei_senti", "meld_emotion", "daicwoz", "mmsd"])
>>> keep({"dataset": "mmsd", "split": "train"}), keep({"dataset": "cremad", "split": "train"})
(False, True)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from hba_core import registry
from hba_core.errors import InputError, UnknownNameError, first_few
from hba_core.jsonl import PathLike, display_name
from hba_core.samples import iter_samples

MODALITIES = ("text", "video", "audio", "image")


def expand(names: Iterable[str]) -> list[str]:
    """Split comma-separated values: ``["a,b", "c"]`` -> ``["a", "b", "c"]``."""
    return [part.strip() for name in names for part in name.split(",") if part.strip()]


def _datasets_named(names: Iterable[str]) -> set[str]:
    """Dataset names for dataset names or task codes (``SAR`` -> every sarcasm dataset)."""
    reg = registry.get()
    out: set[str] = set()
    for name in expand(names):
        if name in reg.datasets:
            out.add(name)
        elif name.upper() in reg.tasks:
            out.update(d.name for d in registry.datasets_of_task(name))
        else:
            raise UnknownNameError("dataset or task", name, [*reg.datasets, *reg.tasks])
    return out


def selector(
    *,
    datasets: Iterable[str] = (),
    tasks: Iterable[str] = (),
    splits: Iterable[str] = (),
    modalities: Iterable[str] = (),
    exclude: Iterable[str] = (),
) -> Callable[[dict[str, Any]], bool]:
    """A predicate over samples: every given filter must hold and the dataset must not be excluded.

    ``modalities``: the sample's modality signature must contain each one (``audio`` keeps text_audio
    and text_video_audio).
    """
    want_ds = _datasets_named(datasets) if expand(datasets) else None
    want_task = {registry.task(t).code for t in expand(tasks)} or None
    want_split = set(expand(splits)) or None
    for split in want_split or ():
        if split not in registry.SPLITS:
            raise UnknownNameError("split", split, list(registry.SPLITS))
    want_mod = set(expand(modalities))
    for mod in want_mod:
        if mod not in MODALITIES:
            raise UnknownNameError("modality", mod, list(MODALITIES))
    drop = _datasets_named(exclude)

    def keep(row: dict[str, Any]) -> bool:
        name = row.get("dataset")
        if name in drop or (want_ds is not None and name not in want_ds):
            return False
        if want_split is not None and row.get("split") not in want_split:
            return False
        if want_task is not None:
            ds = registry.get().datasets.get(name)
            if ds is None or ds.task.code not in want_task:
                return False
        return not want_mod or want_mod <= set((row.get("modality_signature") or "").split("_"))

    return keep


def select_samples(
    files: Iterable[PathLike], keep: Callable[[dict[str, Any]], bool]
) -> tuple[list[dict[str, Any]], int]:
    """``(kept rows, rows read)`` over ``files``, all read before anything is returned.

    A bad line or a row with a missing or unknown dataset (which no filter can place) is an error
    before any row is written, so a failed run never leaves half an output on stdout.
    """
    known = registry.get().datasets
    kept: list[dict[str, Any]] = []
    bad: list[str] = []
    seen = 0
    for path in files:
        name = display_name(path)
        for line, row in iter_samples(path):
            seen += 1
            dataset = row.get("dataset")
            if not isinstance(dataset, str) or dataset not in known:
                bad.append(f"{name}:{line} (dataset {dataset!r})")
            elif keep(row):
                kept.append(row)
    if bad:
        raise InputError(
            bad[0],
            f"{len(bad)} samples have a missing or unknown dataset: {first_few(bad)}; "
            "fix them first (hba-validate sample lists every problem)",
        )
    return kept, seen

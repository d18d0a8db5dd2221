"""hba-bam's samples: read and checked, grouped by dataset and split, as the backbone will see them.

Every row is checked, as hba-score checks its truth: features and cached hidden states are keyed
by sample id, so a repeated id would silently replace a sample, and a row without a known dataset
would silently drop out. Both are errors naming file:line.
"""

from __future__ import annotations

from typing import Any

from hba_core import registry
from hba_core.sample_checks import require_sample
from hba_core.samples import MODALITY_TAG, iter_samples


def text_only(sample: dict[str, Any]) -> dict[str, Any]:
    """The sample as the backbone sees it under ``--no-raw-media``: prompt without modality tags, no media."""
    problem = "\n".join(line for line in MODALITY_TAG.sub("", sample["problem"]).splitlines() if line.strip())
    return {**sample, "problem": problem, "videos": [], "audios": [], "images": [], "modality_signature": "text"}


def read_bam_samples(
    path: str, datasets: list[str], *, no_raw_media: bool = False
) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """The train and val samples of ``datasets``, by dataset and split.

    Every row of the file is checked, as hba-score checks its truth: a row without a dataset, with an
    unknown one, or repeating an earlier row's id (features and cached hidden states are keyed by id)
    is an error naming file:line - never a sample silently left out or replaced.
    """
    from hba_core.errors import InputError
    from hba_core.jsonl import display_name

    names = registry.dataset_names()
    known, wanted = set(names), set(datasets)
    first_line: dict[str, int] = {}
    by_dataset: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for line, sample in iter_samples(path, media=True):
        where = f"{display_name(path)}:{line}"
        name = sample.get("dataset")
        if not isinstance(name, str) or not name:
            raise InputError(where, f"sample {sample['id']!r} has no dataset; give one of: {', '.join(names)}")
        if name not in known:
            raise InputError(where, f"unknown dataset {name!r} (sample {sample['id']!r}); valid: {', '.join(names)}")
        sid = sample["id"]
        if sid in first_line:
            raise InputError(where, f"sample id {sid!r} repeats line {first_line[sid]}; ids must be unique")
        first_line[sid] = line
        require_sample(sample, f"{where} ({sid})")  # a prompt and media lists, as every tool needs
        if name in wanted and sample.get("split") in ("train", "val"):
            row = text_only(sample) if no_raw_media else sample
            by_dataset.setdefault(name, {}).setdefault(sample["split"], []).append(row)
    return by_dataset

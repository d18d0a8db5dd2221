"""What one judge run judges: the predictions by id, the selected datasets, and one :class:`Item` per
selected sample (question, candidate, reference; or already decided: skipped, with the reason).

Samples without a usable prediction are not sent: they get ``status: skipped`` with the reason. With the
``reference`` protocol the reference answer is lowercased and the candidate is its first box, ``<think>`` kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hba_core import registry
from hba_core.errors import InputError
from hba_core.jsonl import LineError, PathLike, display_name, iter_jsonl
from hba_core.judge import protocols
from hba_core.judge.prompts import PromptVariant
from hba_core.judge.questions import candidate_answer, dataset_question
from hba_core.judge.summary import Summary
from hba_core.samples import iter_samples


@dataclass
class Item:
    """One selected sample, ready to judge (or already decided: skipped)."""

    id: str
    dataset: str
    question: str
    candidate: str
    reference: str
    key: str | None = None  # cache key; None for skipped items
    record: dict[str, Any] | None = None  # the judgment fields once known
    cached: bool = False


def read_predictions(
    path: PathLike, problems: list[LineError], models: set[str] | None = None
) -> dict[str, str | None]:
    """id -> prediction text. A line without a string id, or a second line for one id, is an error.

    The rows' ``model`` names are collected into ``models`` when given.
    """
    found: dict[str, str | None] = {}
    name = display_name(path)
    for line, row in iter_jsonl(path, problems):
        if models is not None and isinstance(row.get("model"), str):
            models.add(row["model"])
        pid = row.get("id")
        if not isinstance(pid, str) or not pid:
            problems.append(LineError(name, line, "prediction has no 'id' (it must name the sample's id)"))
            continue
        if pid in found:
            raise InputError(f"{name}:{line}", f"a second prediction for id {pid!r}; keep one per sample")
        value = row.get("prediction")
        if value is not None and not isinstance(value, str):
            problems.append(LineError(name, line, f"'prediction' must be a string or null, got {type(value).__name__}"))
            continue
        found[pid] = value
    return found


def select_datasets(datasets: Sequence[str] | None, variant: PromptVariant) -> set[str]:
    """The datasets to judge: the named ones (checked against the registry), else every free-text dataset."""
    reg = registry.get()
    names = list(datasets) if datasets else [d.name for d in reg.datasets.values() if d.is_free_text]
    for name in names:
        registry.dataset(name)  # unknown -> UnknownNameError with the valid names
        variant.system_for(name)  # the variant must have instructions for it
    return set(names)


def collect_items(
    truth: PathLike,
    predictions: dict[str, str | None],
    selected: set[str],
    summary: Summary,
    *,
    keep_think: bool = False,
    protocol: str = "hba",
) -> list[Item]:
    """The selected samples in input order, each with its question, candidate and reference."""
    items: list[Item] = []
    seen: set[str] = set()
    every_id: set[str] = set()
    name = display_name(truth)
    for line, sample in iter_samples(truth, summary.bad_lines):
        every_id.add(sample["id"])
        ds = sample.get("dataset")
        if ds not in selected:
            if not isinstance(ds, str) or ds not in registry.get().datasets:
                summary.bad_lines.append(LineError(name, line, f"unknown dataset {ds!r}"))
            else:
                summary.not_selected += 1
            continue
        sid = sample["id"]
        if sid in seen:
            raise InputError(f"{name}:{line}", f"sample id {sid!r} appears twice; ids must be unique")
        seen.add(sid)
        question = dataset_question(sample)
        summary.no_question += not question
        reference = sample.get("answer") if isinstance(sample.get("answer"), str) else ""
        if protocol == "reference":  # first box, <think> kept; the reference answer lowercased, not stripped
            candidate, reference = protocols.reference_candidate(predictions.get(sid)), reference.lower()
        else:
            candidate, reference = candidate_answer(predictions.get(sid), keep_think=keep_think), reference.strip()
        item = Item(sid, ds, question, candidate, reference)
        if sid not in predictions:
            item.record = skipped("no prediction with this id")
        elif not item.candidate:
            item.record = skipped("the prediction is empty (null, blank, or only <think> reasoning)")
        elif not item.reference.strip():
            item.record = skipped(f"{name}:{line}: the sample has no reference answer")
        items.append(item)
    summary.unmatched = [pid for pid in predictions if pid not in every_id]
    return items


def skipped(reason: str) -> dict[str, Any]:
    return {"status": "skipped", "correct": None, "explanation": None, "raw": None, "latency_s": None, "error": reason}

"""The adapter interface: what every source module yields, and the one loop that runs an adapter.

An adapter is a module ``hba_core.convert.<source>`` (source names from the registry's [sources])
with ``build(raw_dir, *, check_media=True)`` yielding samples (made with :func:`make_sample`) and
:class:`Reject` records. :func:`build_source` runs it and checks every sample (known label, media
present); nothing is dropped silently: a bad sample becomes a reject with its reason, or, with
``strict``, an error.

Media paths in samples are ``<source>/<path inside the raw release>``, so with the raw releases
laid out as ``ROOT/<source>/...`` the samples' data root is ``ROOT``.
"""

from __future__ import annotations

import hashlib
import importlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from hba_core import registry
from hba_core.errors import InputError
from hba_core.prompts import build_problem, has_transcript_parts, options_text, render_instruction
from hba_core.samples import Sample, modality_signature, sample_id


@dataclass
class Reject:
    """A source row that did not become a sample: where it came from, why, and what we know of it."""

    source: str
    where: str
    reason: str
    row: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"source": self.source, "where": self.where, "reason": self.reason, "row": self.row}


@dataclass
class BuildSummary:
    source: str
    samples: Counter = field(default_factory=Counter)  # (dataset, split) -> count
    rejects: Counter = field(default_factory=Counter)  # reason kind -> count

    def line(self) -> str:
        made = sum(self.samples.values())
        per = ", ".join(f"{d}/{s}={n}" for (d, s), n in sorted(self.samples.items()))
        rej = sum(self.rejects.values())
        why = "; ".join(f"{k}: {n}" for k, n in self.rejects.most_common())
        return f"{self.source}: {made} samples ({per}); {rej} rejects" + (f" ({why})" if rej else "")


def adapter(source_name: str) -> Any:
    """The adapter module of a registry source (unknown names list the valid ones)."""
    registry.source(source_name)
    return importlib.import_module(f"hba_core.convert.{source_name}")


def require(path: Path) -> Path:
    """An annotation file of the raw release, or a clear error naming it."""
    if not path.is_file():
        raise InputError(str(path), "annotation file not found; point --raw at the dataset's original release folder")
    return path


def label_instruction(dataset_name: str, context: str, question: str, *, labels: tuple[str, ...] | None = None) -> str:
    """``<context> <question> Answer with one word from the following: a, b, c`` (the release's wording).

    Multi-word label sets ("not sarcasm") say "one of the following" instead.
    """
    ds = registry.dataset(dataset_name)
    labels = labels or ds.labels
    lead = "one word from" if all(" " not in label for label in labels) else "one of"
    return f"{context} {question} Answer with {lead} the following: {options_text(labels)}".strip()


def qa_instruction(context: str, question: str, options: list[str] | None = None) -> str:
    """A free-text question, with its multiple-choice options when the dataset provides them."""
    text = f"{context} {question}".strip()
    if options:
        text += " Options: " + " ".join(f"({chr(65 + i)}) {o}" for i, o in enumerate(options))
    return text


def make_sample(
    dataset_name: str,
    *,
    split: str,
    instruction: str,
    question: str,
    answer: str,
    class_label: str | None,
    video: str | None = None,
    audio: str | None = None,
    transcript: str | None = None,
    transcript_slot: bool = True,
    source_ids: dict[str, Any],
    original_label: Any = None,
    extra: dict[str, Any] | None = None,
) -> Sample:
    """One HBA sample in the paper's prompt-target format; media paths relative to the raw release.

    ``instruction`` may hold ``[[...]]`` parts shown only when there is a transcript (see
    :func:`hba_core.prompts.render_instruction`). The prompt parts are kept in ``metadata`` so that
    hba-transcribe can re-render the prompt with a new transcript.
    """
    ds = registry.dataset(dataset_name)
    prefix = ds.source
    tags = (["video"] if video else []) + (["audio"] if audio else [])
    text = transcript if transcript_slot and transcript and transcript.strip() else None
    template = instruction if has_transcript_parts(instruction) else None
    instruction = render_instruction(instruction, has_transcript=text is not None)
    row: Sample = {
        "problem": build_problem(tags, text, instruction),
        "answer": answer,
        "images": [],
        "videos": [f"{prefix}/{video}"] if video else [],
        "audios": [f"{prefix}/{audio}"] if audio else [],
        "dataset": dataset_name,
        "texts": [],
        "modality_signature": modality_signature(
            text=text is not None or not (video or audio), video=bool(video), audio=bool(audio)
        ),
        "ext_video_feats": [],
        "ext_audio_feats": [],
        "task": ds.release_task,
        "class_label": class_label,
        "split": split,
        "metadata": {
            "question": question,
            "instruction": instruction,
            "instruction_template": template,
            "transcript": text,
            "transcript_slot": transcript_slot,
            "source_ids": source_ids,
            "original_label": original_label,
            **(extra or {}),
        },
    }
    row["id"] = built_sample_id(row)
    return row


def built_sample_id(row: Sample) -> str:
    """``<dataset>-<16 hex>`` over the record's source identifiers and its content.

    Two source records with the same content (two MMPsy students who gave the same answers) still get
    different ids; a record repeated in the source (same identifiers, same content) gets the same id
    and is rejected as a duplicate by :func:`build_source`.
    """
    key = [row["metadata"].get("source_ids") or {}, sample_id(row)]
    digest = hashlib.sha256(orjson.dumps(key, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]
    return f"{row['dataset']}-{digest}"


def standard_label(dataset_name: str, value: str) -> str | None:
    """The dataset's canonical label for a source label (synonyms consolidated), or None."""
    return registry.canonical_label(value, dataset_name)


def _media_problem(raw_dir: Path, sample: Sample) -> str | None:
    for path in dict.fromkeys([*sample.get("videos", []), *sample.get("audios", [])]):  # a clip is often both
        inside = path.split("/", 1)[1]
        if not (raw_dir / inside).is_file():
            return f"media missing: {inside}"
    return None


def build_source(
    source_name: str,
    raw_dir: str | Path,
    *,
    check_media: bool = True,
    strict: bool = False,
    summary: BuildSummary | None = None,
) -> Iterator[Sample | Reject]:
    """Run one adapter: yield its samples and rejects, checking labels and (unless ``check_media`` is off) media.

    With ``strict`` the first reject raises :class:`InputError` instead.
    """
    raw = Path(raw_dir)
    if not raw.is_dir():
        raise InputError(str(raw), "raw release folder not found")
    module = adapter(source_name)
    summary = summary if summary is not None else BuildSummary(source_name)
    seen: set[str] = set()
    for item in module.build(raw, check_media=check_media):
        if isinstance(item, dict):
            ds = registry.dataset(item["dataset"])
            label = item.get("class_label")
            problem = None
            if item["id"] in seen:
                problem = "duplicate record: same source identifiers and content as an earlier row"
            elif not ds.is_free_text and label not in ds.labels:
                problem = f"label {label!r} not in the {ds.name} label set"
            elif check_media:
                problem = _media_problem(raw, item)
            if problem is not None:
                item = Reject(source_name, item["id"], problem, {"dataset": ds.name, **item["metadata"]["source_ids"]})
        if isinstance(item, Reject):
            if strict:
                raise InputError(item.where, f"{item.reason} (drop --strict to write it to the rejects file)")
            summary.rejects[item.reason.split(":")[0]] += 1
        else:
            seen.add(item["id"])
            summary.samples[(item["dataset"], item["split"])] += 1
        yield item

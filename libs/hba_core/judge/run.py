"""One judge run: samples + predictions in, one judgment per selected sample out, in input order.

Reads the samples (ids as everywhere: given or derived from content) and the predictions (by id),
selects the free-text datasets (or ``datasets``), answers what the cache already holds, asks the
judge for the rest (each reply committed to the cache as it arrives), and writes the judgments
atomically, each one validated against ``schemas/judgment.schema.json``.

Samples without a usable prediction are not sent: they get ``status: skipped`` with the reason.

The variant's protocol decides the request layout and readings (``protocols.py``): with ``reference``
the reference answer is lowercased, the question is looked up by it, and the reference's lenient reading
of non-JSON replies is applied only when asked for, and counted apart.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import orjson

from hba_core import registry
from hba_core.errors import HbaError, InputError
from hba_core.jsonl import LineError, PathLike, display_name, iter_jsonl, output_lock, write_jsonl
from hba_core.judge import protocols
from hba_core.judge.cache import JudgmentCache, cache_key
from hba_core.judge.client import ClientSettings, JudgeClient, Reply, check_base_url
from hba_core.judge.progress import Progress
from hba_core.judge.prompts import PromptVariant
from hba_core.judge.questions import candidate_answer, dataset_question
from hba_core.judge.replies import RATING_NAMES, RATINGS_SCHEMA, VERDICT_SCHEMA, parse_ratings, parse_verdict
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


@dataclass
class Summary:
    judged: int = 0  # judgments written
    by_status: Counter[str] = field(default_factory=Counter)
    cached: int = 0
    requests: int = 0  # HTTP requests, retries included
    not_selected: int = 0  # samples of other datasets
    bad_lines: list[LineError] = field(default_factory=list)
    no_question: int = 0
    unmatched: list[str] = field(default_factory=list)  # prediction ids that match no sample of --truth
    accuracy: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # dataset -> (correct, ok, all)
    ratings: dict[str, float] = field(default_factory=dict)  # rater mode: mean per dimension
    elapsed_s: float = 0.0
    protocol: str = "hba"
    lenient: int = 0  # reference protocol, --lenient-reference-fallback: non-JSON replies read as verdicts
    lenient_correct: int = 0  # ... of which counted correct ("true" somewhere in the reply)
    lenient_available: int = 0  # without the flag: replies the reference would have read leniently
    reference_would_drop: int | None = None  # rows the reference drops (answer not in its annotations)
    question_lookup_changed: int = 0  # rows whose looked-up question is another row's (shared answer)

    def _reference_lines(self) -> list[str]:
        out = [
            f"  reference lenient fallback: {self.lenient} non-JSON replies read as verdicts "
            f"({self.lenient_correct} correct because they contain 'true')"
            + ("" if self.lenient else f"; off: {self.lenient_available} such replies stay unparseable")
        ]
        if self.reference_would_drop is None:
            out.append(
                "  the reference drops rows whose answer is not in its annotation tables from the denominator; "
                "pass --reference-annotations DIR to count them (hba keeps every row)"
            )
        else:
            out.append(
                f"  the reference would drop {self.reference_would_drop} rows (answer not in its annotations) "
                "from the denominator; hba keeps them, judged with their own question"
            )
        if self.question_lookup_changed:
            out.append(f"  {self.question_lookup_changed} rows were judged with a looked-up question unlike their own")
        return out

    @property
    def all_failed(self) -> bool:
        """Requests were made and not one got an answer (dead server, wrong model...): the run is a failure."""
        s = self.by_status
        return s["error"] > 0 and s["ok"] == 0 and s["unparseable"] == 0

    def lines(self) -> list[str]:
        """The end-of-run report for stderr."""
        s = self.by_status
        out = [
            f"{self.judged} judgments: ok {s['ok']}, unparseable {s['unparseable']}, error {s['error']}, "
            f"skipped {s['skipped']}; {self.cached} from cache, {self.requests} requests in {self.elapsed_s:.1f} s"
        ]
        for name, (right, ok, total) in sorted(self.accuracy.items()):
            # The paper's accuracy counts every sample (unparseable, error, skipped = not correct); hba-score
            # computes the official figure, this is a preview.
            out.append(f"  {name}: {right}/{total} correct ({right / total:.3f}); {ok} judged ok")
        if self.ratings:
            out.append("  mean ratings: " + ", ".join(f"{k} {v:.3f}" for k, v in self.ratings.items()))
        if self.protocol == "reference":
            out.extend(self._reference_lines())
        if self.not_selected:
            out.append(f"  {self.not_selected} samples of other datasets were not judged (see --datasets)")
        if self.unmatched:
            shown = ", ".join(repr(i) for i in self.unmatched[:5]) + (" ..." if len(self.unmatched) > 5 else "")
            out.append(f"  {len(self.unmatched)} predictions match no sample id and were not judged: {shown}")
        if self.no_question:
            out.append(f"  warning: {self.no_question} samples had no recoverable question (judged without one)")
        if self.all_failed:
            out.append("  every judgment request failed: nothing was judged (see the 'error' field of --out)")
        for problem in self.bad_lines[:20]:
            out.append(f"  bad line skipped: {problem}")
        if len(self.bad_lines) > 20:
            out.append(f"  ... and {len(self.bad_lines) - 20} more bad lines")
        return out


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
            item.record = _skipped("no prediction with this id")
        elif not item.candidate:
            item.record = _skipped("the prediction is empty (null, blank, or only <think> reasoning)")
        elif not item.reference.strip():
            item.record = _skipped(f"{name}:{line}: the sample has no reference answer")
        items.append(item)
    summary.unmatched = [pid for pid in predictions if pid not in every_id]
    return items


def _skipped(reason: str) -> dict[str, Any]:
    return {"status": "skipped", "correct": None, "explanation": None, "raw": None, "latency_s": None, "error": reason}


def _record_from_reply(reply: Reply, rater: bool) -> dict[str, Any]:
    if reply.error is not None:
        return {
            "status": "error",
            "correct": None,
            "explanation": None,
            "raw": None,
            "latency_s": None,
            "error": reply.error,
        }
    verdict = parse_ratings(reply.content) if rater else parse_verdict(reply.content)
    record = {
        "status": verdict.status,
        "correct": verdict.correct,
        "explanation": verdict.explanation,
        "raw": reply.content,
        "latency_s": round(reply.latency_s or 0.0, 4),
        "error": verdict.error,
    }
    if verdict.ratings is not None:
        record["ratings"] = verdict.ratings
    return record


async def _judge_pending(
    pending: dict[str, Item],
    client: JudgeClient,
    variant: PromptVariant,
    cache: JudgmentCache | None,
    progress: Progress,
    duplicates: Counter[str],
) -> None:
    rater = variant.mode == "rater"
    schema = RATINGS_SCHEMA if rater else VERDICT_SCHEMA
    extra: dict[str, Any] = {}
    if variant.protocol == "reference":
        schema = protocols.REFERENCE_VERDICT_SCHEMA
        extra = {"max_completion_tokens": protocols.REFERENCE_MAX_COMPLETION_TOKENS}

    async def one(key: str, item: Item) -> None:
        def render(json_instruction: bool) -> list[dict[str, str]]:
            return variant.messages(
                item.dataset,
                question=item.question,
                candidate=item.candidate,
                reference=item.reference,
                json_instruction=json_instruction,
            )

        record = _record_from_reply(await client.ask(render, schema, extra=extra), rater)
        if cache is not None and record["status"] != "error":
            cache.put(key, record)  # committed now: a kill after this line loses nothing
        item.record = record
        for _ in range(duplicates[key] + 1):
            progress.update(record["status"], requests=client.requests)

    tasks = [asyncio.create_task(one(key, item)) for key, item in pending.items()]
    try:
        await asyncio.gather(*tasks)
    finally:  # on a fatal error (bad key): stop the rest, and collect their outcomes so none is logged as lost
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def judge(
    truth: PathLike,
    pred: PathLike,
    out: PathLike,
    *,
    settings: ClientSettings,
    api_key: str,
    variant: PromptVariant,
    cache_path: PathLike | None,
    datasets: Sequence[str] | None = None,
    keep_think: bool = False,
    show_progress: bool = True,
    model_name: str | None = None,
    lenient_reference_fallback: bool = False,
    reference_annotations: PathLike | None = None,
) -> Summary:
    """Judge every selected sample of ``truth`` against its prediction in ``pred``; write ``out``; return counts.

    Each judgment names the predicting model (``model``): ``model_name``, else the one ``model`` the
    prediction rows carry, else the predictions file's name - so one file can hold several models'
    judgments for hba-score.

    ``lenient_reference_fallback`` and ``reference_annotations`` belong to the ``reference`` protocol:
    the reference's reading of non-JSON replies, and its annotation tree for the question lookup.
    """
    check_base_url(settings.base_url)
    if variant.protocol != "reference" and (lenient_reference_fallback or reference_annotations is not None):
        raise HbaError(
            "--lenient-reference-fallback and --reference-annotations belong to the reference protocol: "
            f"add --prompts reference (the variant is {variant.name!r})"
        )
    with output_lock(out):  # two runs on one --out would each replace the other's file
        return _judge_locked(
            truth,
            pred,
            out,
            settings=settings,
            api_key=api_key,
            variant=variant,
            cache_path=cache_path,
            datasets=datasets,
            keep_think=keep_think,
            show_progress=show_progress,
            model_name=model_name,
            lenient=lenient_reference_fallback,
            annotations=reference_annotations,
        )


def _judge_locked(
    truth: PathLike,
    pred: PathLike,
    out: PathLike,
    *,
    settings: ClientSettings,
    api_key: str,
    variant: PromptVariant,
    cache_path: PathLike | None,
    datasets: Sequence[str] | None,
    keep_think: bool,
    show_progress: bool,
    model_name: str | None,
    lenient: bool,
    annotations: PathLike | None,
) -> Summary:
    started = time.perf_counter()
    summary = Summary(protocol=variant.protocol)
    selected = select_datasets(datasets, variant)
    models: set[str] = set()
    predictions = read_predictions(pred, summary.bad_lines, models)
    if model_name is None:
        model_name = models.pop() if len(models) == 1 else Path(display_name(pred)).name.removesuffix(".gz")
        model_name = model_name.removesuffix(".jsonl")
    items = collect_items(truth, predictions, selected, summary, keep_think=keep_think, protocol=variant.protocol)
    if variant.protocol == "reference":
        summary.reference_would_drop, summary.question_lookup_changed = protocols.lookup_questions(items, annotations)
    fingerprint = variant.fingerprint
    for item in items:
        if item.record is None:  # where the judge is served is not part of the key: another port stays cached
            item.key = cache_key(settings.model, fingerprint, item.question, item.candidate, item.reference)
    cache = JudgmentCache(cache_path) if cache_path is not None else None
    try:
        hits = cache.get_many(i.key for i in items if i.key) if cache is not None else {}
        pending: dict[str, Item] = {}
        duplicates: Counter[str] = Counter()  # identical (question, candidate, reference) in one run: asked once
        for item in items:
            if item.key is None:
                continue
            if item.key in hits:
                item.record, item.cached = hits[item.key], True
            elif item.key in pending:
                duplicates[item.key] += 1
            else:
                pending[item.key] = item
        progress = Progress(len(pending) + sum(duplicates.values()), enabled=show_progress)
        if pending:
            summary.requests = asyncio.run(
                _run_client(pending, settings, api_key, variant, cache, progress, duplicates)
            )
        progress.close()
        for item in items:  # duplicates take the record of the item that was asked
            if item.record is None and item.key in pending:
                item.record = pending[item.key].record
        if cache is not None:  # row shapes validated by an earlier run need no jsonschema (~0.15 s to import)
            _VALID_SHAPES.update(cache.validated_shapes(_schema_tag()))
        rows = [_judgment(item, settings.model, variant, model_name, lenient, summary) for item in items]
        if cache is not None:
            cache.add_validated_shapes(_schema_tag(), _VALID_SHAPES)
    finally:
        if cache is not None:
            cache.close()
    summary.judged = write_jsonl(out, rows)
    _tally(summary, items, rows, rater=variant.mode == "rater")
    summary.elapsed_s = time.perf_counter() - started
    return summary


async def _run_client(
    pending: dict[str, Item],
    settings: ClientSettings,
    api_key: str,
    variant: PromptVariant,
    cache: JudgmentCache | None,
    progress: Progress,
    duplicates: Counter[str],
) -> int:
    async with JudgeClient(settings, api_key) as client:
        await client.check_endpoint()
        await _judge_pending(pending, client, variant, cache, progress, duplicates)
        return client.requests


def _judgment(
    item: Item, model: str, variant: PromptVariant, predicting_model: str, lenient: bool, summary: Summary
) -> dict[str, Any]:
    record = item.record
    if record is None:  # every item is decided by now; anything else is a bug
        raise RuntimeError(f"sample {item.id} was never judged")
    lenient_row = False
    if (
        variant.protocol == "reference"
        and record["status"] == "unparseable"
        and record.get("error") in protocols.LENIENT_REASONS
    ):
        # Read after the cache, so the cache holds the reply itself and the flag can change between runs.
        if lenient:
            correct = protocols.lenient_verdict(record.get("raw"))
            record = {
                **record,
                "status": "ok",
                "correct": correct,
                "explanation": "Error parsing JSON, content: " + (record.get("raw") or ""),  # the reference's text
            }
            lenient_row = True
            summary.lenient += 1
            summary.lenient_correct += correct
        else:
            summary.lenient_available += 1
    row = {
        "id": item.id,
        "model": predicting_model,
        "dataset": item.dataset,
        "correct": record.get("correct"),
        "status": record["status"],
        "explanation": record.get("explanation"),
        "judge_model": model,
        "prompt_variant": variant.name,
        "prompt_version": variant.prompt_version,
        "raw": record.get("raw"),
        "latency_s": record.get("latency_s"),
        "error": record.get("error"),
        "cached": item.cached,
    }
    if "ratings" in record:
        row["ratings"] = record["ratings"]
    if lenient_row:
        row["lenient"] = True  # correct comes from the reference's "true"-anywhere reading, not from JSON
    _validate(row)
    return row


_VALID_SHAPES: set[str] = set()  # JSON arrays of row shapes that passed judgment.schema.json


@functools.cache
def _schema_tag() -> str:
    """A hash of judgment.schema.json: validated shapes are remembered in the cache under it."""
    text = resources.files("hba_core.schema_files").joinpath("judgment.schema.json").read_bytes()
    return hashlib.sha256(text).hexdigest()


def _validate(row: dict[str, Any]) -> None:
    """Check a judgment against judgment.schema.json; a failure is a bug in hba-judge, not bad input.

    The schema constrains types, enums and numeric ranges only, so rows with the same shape (field
    types, status, sign of the latency, rating values) validate alike: each shape is validated once,
    which keeps a cached re-run of 10,000 judgments fast. The shapes are also kept in the judgment cache
    (under a hash of the schema file), so a re-run whose rows all have known shapes never imports jsonschema.
    """
    latency = row.get("latency_s")
    shape = orjson.dumps(
        (
            tuple((k, type(v).__name__) for k, v in row.items()),
            row["status"],
            bool(row["id"]),
            isinstance(latency, (int, float)) and latency < 0,
            tuple(sorted(row.get("ratings", {}).items())),
        )
    ).decode()
    if shape in _VALID_SHAPES:
        return
    from hba_core import schemas  # jsonschema is imported only when a new shape needs checking

    problems = schemas.errors(row, "judgment")
    if problems:
        raise RuntimeError(f"judgment for {row['id']} breaks judgment.schema.json: {problems}")
    _VALID_SHAPES.add(shape)


def _tally(summary: Summary, items: list[Item], rows: list[dict[str, Any]], *, rater: bool) -> None:
    ratings: dict[str, list[int]] = {name: [] for name in RATING_NAMES}
    for item, row in zip(items, rows):
        summary.by_status[row["status"]] += 1
        summary.cached += item.cached
        if not rater:
            right, ok, total = summary.accuracy.get(item.dataset, (0, 0, 0))
            summary.accuracy[item.dataset] = (right + (row["correct"] is True), ok + (row["status"] == "ok"), total + 1)
        for name, value in row.get("ratings", {}).items():
            ratings[name].append(value)
    summary.ratings = {name: sum(v) / len(v) for name, v in ratings.items() if v}

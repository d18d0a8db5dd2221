"""One judge run: samples + predictions in, one judgment per selected sample out, in input order.

Reads the samples (ids as everywhere: given or derived from content) and the predictions (by id),
selects the free-text datasets (or ``datasets``), answers what the cache already holds, asks the
judge for the rest (each reply committed to the cache as it arrives), and writes the judgments
atomically, each one validated against ``schemas/judgment.schema.json``.

Samples without a usable prediction are not sent: they get ``status: skipped`` with the reason.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hba_core import registry, schemas
from hba_core.errors import InputError
from hba_core.jsonl import LineError, PathLike, display_name, iter_jsonl, write_jsonl
from hba_core.judge.cache import JudgmentCache, cache_key
from hba_core.judge.client import OPENAI_URL, ClientSettings, JudgeClient, Reply
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
    accuracy: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # dataset -> (correct, ok, all)
    ratings: dict[str, float] = field(default_factory=dict)  # rater mode: mean per dimension
    elapsed_s: float = 0.0

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
        if self.not_selected:
            out.append(f"  {self.not_selected} samples of other datasets were not judged (see --datasets)")
        if self.no_question:
            out.append(f"  warning: {self.no_question} samples had no recoverable question (judged without one)")
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
) -> list[Item]:
    """The selected samples in input order, each with its question, candidate and reference."""
    items: list[Item] = []
    seen: set[str] = set()
    name = display_name(truth)
    for line, sample in iter_samples(truth, summary.bad_lines):
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
        item = Item(sid, ds, question, candidate_answer(predictions.get(sid), keep_think=keep_think), reference.strip())
        if sid not in predictions:
            item.record = _skipped("no prediction with this id")
        elif not item.candidate:
            item.record = _skipped("the prediction is empty (null, blank, or only <think> reasoning)")
        elif not item.reference:
            item.record = _skipped(f"{name}:{line}: the sample has no reference answer")
        items.append(item)
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

    async def one(key: str, item: Item) -> None:
        def render(json_instruction: bool) -> tuple[str, str]:
            return variant.render(
                item.dataset,
                question=item.question,
                candidate=item.candidate,
                reference=item.reference,
                json_instruction=json_instruction,
            )

        record = _record_from_reply(await client.ask(render, schema), rater)
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
) -> Summary:
    """Judge every selected sample of ``truth`` against its prediction in ``pred``; write ``out``; return counts.

    Each judgment names the predicting model (``model``): ``model_name``, else the one ``model`` the
    prediction rows carry, else the predictions file's name - so one file can hold several models'
    judgments for hba-score.
    """
    started = time.perf_counter()
    summary = Summary()
    selected = select_datasets(datasets, variant)
    models: set[str] = set()
    predictions = read_predictions(pred, summary.bad_lines, models)
    if model_name is None:
        model_name = models.pop() if len(models) == 1 else Path(display_name(pred)).name.removesuffix(".gz")
        model_name = model_name.removesuffix(".jsonl")
    items = collect_items(truth, predictions, selected, summary, keep_think=keep_think)
    base_url = (settings.base_url or OPENAI_URL).rstrip("/")
    fingerprint = variant.fingerprint
    for item in items:
        if item.record is None:
            item.key = cache_key(base_url, settings.model, fingerprint, item.question, item.candidate, item.reference)
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
    finally:
        if cache is not None:
            cache.close()
    for item in items:  # duplicates take the record of the item that was asked
        if item.record is None and item.key in pending:
            item.record = pending[item.key].record
    rows = [_judgment(item, settings.model, variant.name, model_name) for item in items]
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
        await _judge_pending(pending, client, variant, cache, progress, duplicates)
        return client.requests


def _judgment(item: Item, model: str, variant_name: str, predicting_model: str) -> dict[str, Any]:
    record = item.record
    if record is None:  # every item is decided by now; anything else is a bug
        raise RuntimeError(f"sample {item.id} was never judged")
    row = {
        "id": item.id,
        "model": predicting_model,
        "dataset": item.dataset,
        "correct": record.get("correct"),
        "status": record["status"],
        "explanation": record.get("explanation"),
        "judge_model": model,
        "prompt_variant": variant_name,
        "raw": record.get("raw"),
        "latency_s": record.get("latency_s"),
        "error": record.get("error"),
        "cached": item.cached,
    }
    if "ratings" in record:
        row["ratings"] = record["ratings"]
    _validate(row)
    return row


_VALID_SHAPES: set[tuple[Any, ...]] = set()


def _validate(row: dict[str, Any]) -> None:
    """Check a judgment against judgment.schema.json; a failure is a bug in hba-judge, not bad input.

    The schema constrains types, enums and numeric ranges only, so rows with the same shape (field
    types, status, sign of the latency, rating values) validate alike: each shape is validated once,
    which keeps a cached re-run of 10,000 judgments fast.
    """
    latency = row.get("latency_s")
    shape = (
        tuple((k, type(v).__name__) for k, v in row.items()),
        row["status"],
        bool(row["id"]),
        isinstance(latency, (int, float)) and latency < 0,
        tuple(sorted(row.get("ratings", {}).items())),
    )
    if shape in _VALID_SHAPES:
        return
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

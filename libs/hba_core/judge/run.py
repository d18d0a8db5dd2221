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
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hba_core.errors import HbaError
from hba_core.jsonl import PathLike, display_name, output_lock, write_jsonl
from hba_core.judge import protocols
from hba_core.judge.cache import JudgmentCache, cache_key
from hba_core.judge.client import ClientSettings, JudgeClient, check_base_url
from hba_core.judge.items import Item, collect_items, read_predictions, select_datasets
from hba_core.judge.judgments import VALID_SHAPES, judgment_row, record_from_reply, schema_tag
from hba_core.judge.progress import Progress
from hba_core.judge.prompts import PromptVariant
from hba_core.judge.replies import RATINGS_SCHEMA, VERDICT_SCHEMA
from hba_core.judge.summary import Summary, tally


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

        record = record_from_reply(await client.ask(render, schema, extra=extra), rater)
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
            lookup = protocols.lookup_questions(items, reference_annotations)
            summary.reference_would_drop, summary.question_lookup_changed = lookup
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
                VALID_SHAPES.update(cache.validated_shapes(schema_tag()))
            lenient = lenient_reference_fallback
            rows = [judgment_row(item, settings.model, variant, model_name, lenient, summary) for item in items]
            if cache is not None:
                cache.add_validated_shapes(schema_tag(), VALID_SHAPES)
        finally:
            if cache is not None:
                cache.close()
        summary.judged = write_jsonl(out, rows)
        tally(summary, items, rows, rater=variant.mode == "rater")
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

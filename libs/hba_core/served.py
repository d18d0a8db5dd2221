"""Served prediction: ``hba-predict --endpoint URL --model NAME`` on any OpenAI-compatible chat server.

Each sample becomes one user message (:mod:`hba_core.served_messages`: media as base64 parts, substitutions
counted per dataset) sent through the judge's client (:mod:`hba_core.chat_client`). Rows are hba-predict's
generate rows (``schemas/prediction.schema.json``), appended through :class:`~hba_core.jsonl.ResumableWriter`;
replies are cached in SQLite under a hash of what decides them (model name, messages with their media bytes,
generation settings; not the URL, never the key), so a killed run resumes and a re-run of finished work sends
no request. No torch: a ``[judge,media]`` install predicts with a served model.
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from hba_core import schemas
from hba_core.answers import answer_span, strip_think
from hba_core.chat_client import ChatClient, ChatServerError, ClientSettings, check_base_url
from hba_core.errors import InputError, MediaError
from hba_core.jsonl import PathLike, ResumableWriter
from hba_core.sample_checks import sample_problem, where_of
from hba_core.samples import iter_samples
from hba_core.served_messages import MODALITIES, MessageBuilder, ServedSettings, parse_send  # noqa: F401
from hba_core.substitutions import Substitutions

_KEY_FORMAT = "hba-served-key-1"


class ServedServerError(ChatServerError):
    """The model server refuses every request (bad key, unknown model, wrong URL): the run stops."""


def reply_key(model: str, messages: list[dict[str, Any]], generation: dict[str, Any]) -> str:
    """sha256 of what decides the reply: the model name, the messages (media bytes included, as base64)
    and the generation settings. Not the URL (the same model on another port stays cached), never the key."""
    return hashlib.sha256(orjson.dumps([_KEY_FORMAT, model, messages, generation])).hexdigest()


class ReplyCache:
    """SQLite (WAL, autocommit): key -> reply text, committed the moment it arrives."""

    def __init__(self, path: PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=10000")
            self._db.execute("CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, reply TEXT NOT NULL)")
        except sqlite3.DatabaseError as exc:
            raise InputError(str(self.path), f"not a reply cache ({exc}); pass another --cache or --no-cache") from None

    def get(self, key: str) -> str | None:
        row = self._db.execute("SELECT reply FROM replies WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def put(self, key: str, reply: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO replies (key, reply) VALUES (?, ?)", (key, reply))

    def close(self) -> None:
        self._db.close()


def think_prediction(text: str) -> str | None:
    """The prediction of a ``--template think`` reply: the answer span hba-score reads (reasoning stripped
    first, so a box inside ``<think>`` is no answer), else the text after the reasoning; None when empty.

    >>> think_prediction(r"<think>\\boxed{anger}</think> I cannot tell.")
    'I cannot tell.'
    """
    span = answer_span(text)
    return (span if span is not None else strip_think(text)) or None


_VALID_SHAPES: set[tuple[Any, ...]] = set()  # shapes of rows without probs that passed prediction.schema.json


def checked_row(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` when it matches schemas/prediction.schema.json; a bug otherwise.

    Without ``probs`` the schema constrains only field types, a non-empty id and the mode's value, so
    rows of one shape (those three) validate alike: each shape is checked once (jsonschema cost ~12 % of
    a served run's client CPU per row). Rows with ``probs`` (value ranges) are always checked.
    """
    shape = None
    if "probs" not in row:
        mode = row.get("mode")
        kinds = tuple((k, type(v).__name__) for k, v in row.items())
        shape = (kinds, bool(row.get("id")), mode if isinstance(mode, str) else type(mode).__name__)
        if shape in _VALID_SHAPES:
            return row
    problems = schemas.errors(row, "prediction")
    if problems:
        raise ValueError(f"prediction row does not match its schema: {problems}")
    if shape is not None:
        _VALID_SHAPES.add(shape)
    return row


def generated_row(
    sample_id: str, dataset: str, model: str, text: str, template: str | None, *, mode: str = "generate"
) -> dict[str, Any]:
    """The prediction row of generated ``text``: the one builder of local and served hba-predict."""
    row: dict[str, Any] = {"id": sample_id, "dataset": dataset, "model": model, "mode": mode}
    if template == "think":
        row["prediction"] = think_prediction(text)
        row["raw_output"] = text
    else:
        row["prediction"] = text.strip() or None
    return checked_row(row)


def prediction_row(sample: dict[str, Any], model: str, text: str, template: str | None) -> dict[str, Any]:
    """A generate row exactly as local hba-predict writes it."""
    return generated_row(sample["id"], sample["dataset"], model, text, template)


def read_samples(samples: PathLike) -> tuple[list[dict[str, Any]], list[str]]:
    """(predictable samples in file order, one message per bad row); a repeated id is an error."""
    seen: dict[str, int] = {}
    good, bad_rows = [], []
    for line, sample in iter_samples(samples, media=True):
        if sample["id"] in seen:
            raise InputError(f"{samples}:{line}", f"id {sample['id']!r} already used on line {seen[sample['id']]}")
        seen[sample["id"]] = line
        if (problem := sample_problem(sample)) is not None:
            bad_rows.append(f"{where_of(samples, line, sample)}: {problem}")
            continue
        good.append(sample)
    return good, bad_rows


@dataclass
class _Run:
    written: int = 0
    cached: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (id, error): not written, a re-run retries
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (id, media error)
    subs: Substitutions = field(default_factory=Substitutions)
    pending_rows: list[dict[str, Any]] = field(default_factory=list)
    last_flush: float = 0.0


def predict_served(
    samples: PathLike,
    out: PathLike,
    *,
    model: str,
    client: ClientSettings,
    api_key: str,
    served: ServedSettings | None = None,
    cache_path: PathLike | None = None,
) -> dict[str, Any]:
    """Predict every sample of ``samples`` not yet in ``out`` with the model ``model`` served at
    ``client.base_url``; returns a summary (written, cached, requests, failures, substitutions, samples/s).

    Example: ``predict_served("test.jsonl", "preds.jsonl", model="Qwen/Qwen2.5-VL-7B-Instruct",
    client=ClientSettings(base_url="http://127.0.0.1:8000/v1", model="Qwen/Qwen2.5-VL-7B-Instruct"), api_key="")``
    """
    check_base_url(client.base_url, "--endpoint")
    served = served or ServedSettings()
    good, bad_rows = read_samples(samples)
    start = time.perf_counter()
    run = _Run()
    cache = ReplyCache(cache_path) if cache_path is not None else None
    try:
        with ResumableWriter(out) as writer:  # holds the output lock: two runs never append to one file
            already = len(writer.done)
            todo = [s for s in good if s["id"] not in writer.done]
            requests = 0
            if todo:
                requests = asyncio.run(_predict_all(todo, writer, model, client, api_key, served, cache, run))
    finally:
        if cache is not None:
            cache.close()
    elapsed = time.perf_counter() - start
    return {
        "out": str(out),
        "written": run.written,
        "already_done": already,
        "cached": run.cached,
        "requests": requests,
        "failed": len(run.failed),
        "failures": [f"{sid}: {error}" for sid, error in run.failed],
        "skipped": len(run.skipped),
        "skipped_ids": [sid for sid, _ in run.skipped],
        "bad_rows": bad_rows,
        "substitutions": run.subs.as_dict(),
        "seconds": round(elapsed, 3),
        "samples_per_s": round(run.written / elapsed, 3) if elapsed else None,
    }


async def _call(fn: Any, *args: Any) -> Any:
    return fn(*args)


def _flush(writer: ResumableWriter, run: _Run, *, force: bool = False) -> None:
    # Rows go out in small groups, not one fsync per reply: a kill loses at most the unflushed rows, whose
    # replies are already in the cache (a re-run answers them without a request).
    now = time.perf_counter()
    if run.pending_rows and (force or len(run.pending_rows) >= 64 or now - run.last_flush > 0.25):
        writer.write(run.pending_rows)
        run.written += len(run.pending_rows)
        run.pending_rows, run.last_flush = [], now


async def _predict_all(
    todo: Iterable[dict[str, Any]],
    writer: ResumableWriter,
    model: str,
    settings: ClientSettings,
    api_key: str,
    served: ServedSettings,
    cache: ReplyCache | None,
    run: _Run,
) -> int:
    builder = MessageBuilder(served)
    generation = served.generation()
    preparing = asyncio.Semaphore(max(8, 2 * settings.concurrency))  # bounds the encoded media held at once
    checked = asyncio.Lock()
    endpoint_ok = False
    chat = ChatClient(settings, api_key, who="model server", url_flag="--endpoint", error=ServedServerError)
    async with chat:

        async def check_once() -> None:  # only when a request is due: a fully cached re-run sends none
            nonlocal endpoint_ok
            async with checked:
                if not endpoint_ok:
                    await chat.check_endpoint()
                    endpoint_ok = True

        async def one(sample: dict[str, Any]) -> None:
            async with preparing:
                local = Substitutions()
                try:  # media decoding and base64 in a thread, so the event loop keeps the other requests moving;
                    # text alone is built in place (a thread hop can wait a GIL switch interval, 5 ms)
                    has_media = any(sample.get(f"{kind}s") for kind in MODALITIES)
                    build = asyncio.to_thread if has_media else _call
                    messages = await build(builder.messages, sample, local)
                except MediaError as exc:
                    run.skipped.append((sample["id"], str(exc)))
                    return
                key = reply_key(model, messages, generation)
                text = cache.get(key) if cache is not None else None
                if text is not None:
                    run.cached += 1
                else:
                    await check_once()
                    reply = await chat.ask(messages, extra=generation)
                    if reply.error is not None:
                        run.failed.append((sample["id"], reply.error))
                        return
                    text = reply.content or ""
                    if cache is not None:
                        cache.put(key, text)  # committed now: a kill after this line loses no request
                del messages
            run.subs.merge(local.as_dict())
            run.pending_rows.append(prediction_row(sample, model, text, served.template))
            _flush(writer, run)

        tasks = [asyncio.create_task(one(sample)) for sample in todo]
        try:
            await asyncio.gather(*tasks)
        finally:  # a fatal server error stops the rest; what was answered is still written
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            _flush(writer, run, force=True)
        return chat.requests


def default_cache_path() -> Path:
    """``served.sqlite`` next to the judge cache (``$HBA_CACHE_DIR``, else ``$XDG_CACHE_HOME/hba``)."""
    from hba_core.cache_dir import cache_root

    return cache_root() / "served.sqlite"


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """The end-of-run report for stderr."""
    out = [
        f"{summary['written']} predictions written ({summary['already_done']} already there, "
        f"{summary['cached']} from cache, {summary['requests']} requests), {summary['samples_per_s']} samples/s"
    ]
    if summary["failed"]:
        out.append(f"{summary['failed']} samples got no reply (not written; a re-run asks again):")
        out += [f"  {line}" for line in summary["failures"][:10]]
    if summary["skipped"]:
        out.append(f"{summary['skipped']} skipped (undecodable media): {', '.join(summary['skipped_ids'][:5])}")
    out += [f"  bad row skipped: {problem}" for problem in summary["bad_rows"][:20]]
    if summary["substitutions"]:
        out.append("modality substitutions (served model), per dataset:")
        for dataset, kinds in summary["substitutions"].items():
            out.append(f"  {dataset}: " + ", ".join(f"{n} {kind}" for kind, n in kinds.items()))
    return out

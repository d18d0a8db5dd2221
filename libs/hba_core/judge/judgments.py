"""Judgments: a reply becomes a record (what the cache holds), a record becomes a row of ``--out``
(``schemas/judgment.schema.json``), validated once per row shape.

The reference protocol's lenient reading of non-JSON replies is applied here, after the cache, so the
cache holds the reply itself and ``--lenient-reference-fallback`` can change between runs.
"""

from __future__ import annotations

import functools
import hashlib
from importlib import resources
from typing import Any

import orjson

from hba_core.judge import protocols
from hba_core.judge.client import Reply
from hba_core.judge.items import Item
from hba_core.judge.prompts import PromptVariant
from hba_core.judge.replies import parse_ratings, parse_verdict
from hba_core.judge.summary import Summary


def record_from_reply(reply: Reply, rater: bool) -> dict[str, Any]:
    """The record of one reply (a failed request: ``status: error``); ``rater``: read ratings, not a verdict."""
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


def judgment_row(
    item: Item, model: str, variant: PromptVariant, predicting_model: str, lenient: bool, summary: Summary
) -> dict[str, Any]:
    """The ``--out`` row of a decided item, validated; lenient readings (reference protocol) count in ``summary``."""
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
    validate(row)
    return row


VALID_SHAPES: set[str] = set()  # JSON arrays of row shapes that passed judgment.schema.json


@functools.cache
def schema_tag() -> str:
    """A hash of judgment.schema.json: validated shapes are remembered in the cache under it."""
    text = resources.files("hba_core.schema_files").joinpath("judgment.schema.json").read_bytes()
    return hashlib.sha256(text).hexdigest()


def validate(row: dict[str, Any]) -> None:
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
    if shape in VALID_SHAPES:
        return
    from hba_core import schemas  # jsonschema is imported only when a new shape needs checking

    problems = schemas.errors(row, "judgment")
    if problems:
        raise RuntimeError(f"judgment for {row['id']} breaks judgment.schema.json: {problems}")
    VALID_SHAPES.add(shape)

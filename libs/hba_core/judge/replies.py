"""Reading a judge's reply strictly: a JSON object with the expected fields, or ``unparseable``.

Nothing is guessed. Prose, a reply that merely contains the word "true", ``"correct": "true"`` (a
string) or a missing field is unparseable, and the caller keeps the raw reply with ``correct: null``.

>>> parse_verdict('{"explanation": "Same meaning.", "correct": true}')
Verdict(status='ok', correct=True, explanation='Same meaning.', ratings=None, error=None)
>>> parse_verdict("I think this is true.").status
'unparseable'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from hba_core.answers import strip_think

RATING_NAMES = ("fluency", "coherence", "relevance")

# Structured output (OpenAI `response_format` json_schema, strict): what the server is asked to produce.
VERDICT_SCHEMA: dict[str, Any] = {
    "name": "judgment",
    "strict": True,
    "schema": {
        "type": "object",
        "properties": {"explanation": {"type": "string"}, "correct": {"type": "boolean"}},
        "required": ["explanation", "correct"],
        "additionalProperties": False,
    },
}
RATINGS_SCHEMA: dict[str, Any] = {
    "name": "ratings",
    "strict": True,
    "schema": {
        "type": "object",
        # enum rather than minimum/maximum: strict structured output accepts enum everywhere.
        "properties": {name: {"type": "integer", "enum": [1, 2, 3, 4, 5]} for name in RATING_NAMES},
        "required": list(RATING_NAMES),
        "additionalProperties": False,
    },
}

# A whole reply that is one fenced block: ```json\n{...}\n``` (some local servers wrap JSON this way).
_FENCED = re.compile(r"\A```(?:json)?\s*\n(.*)\n```\Z", re.DOTALL)


@dataclass(frozen=True)
class Verdict:
    status: str  # ok | unparseable
    correct: bool | None
    explanation: str | None
    ratings: dict[str, int] | None
    error: str | None


def _json_object(reply: str) -> tuple[dict[str, Any] | None, str | None]:
    text = strip_think(reply).strip()
    fenced = _FENCED.match(text)
    if fenced:
        text = fenced.group(1).strip()
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None, "the reply is not JSON"
    if not isinstance(obj, dict):
        return None, f"the reply is JSON {type(obj).__name__}, not an object"
    return obj, None


def _unparseable(error: str) -> Verdict:
    return Verdict("unparseable", None, None, None, error)


def parse_verdict(reply: str | None) -> Verdict:
    """A judge reply -> ok with ``correct`` a real JSON boolean, else unparseable (with the reason)."""
    if not reply or not reply.strip():
        return _unparseable("the reply is empty")
    obj, error = _json_object(reply)
    if obj is None:
        return _unparseable(error or "unreadable")
    correct = obj.get("correct")
    if not isinstance(correct, bool):
        got = "missing" if "correct" not in obj else f"{type(correct).__name__} {correct!r}"
        return _unparseable(f"'correct' must be a JSON boolean, got {got}; fields: {', '.join(sorted(obj))}")
    explanation = obj.get("explanation")
    if explanation is not None and not isinstance(explanation, str):
        return _unparseable(f"'explanation' must be a string, got {type(explanation).__name__}")
    return Verdict("ok", correct, explanation, None, None)


def parse_ratings(reply: str | None) -> Verdict:
    """A rater reply -> ok with integer 1-5 fluency, coherence and relevance, else unparseable."""
    if not reply or not reply.strip():
        return _unparseable("the reply is empty")
    obj, error = _json_object(reply)
    if obj is None:
        return _unparseable(error or "unreadable")
    ratings: dict[str, int] = {}
    for name in RATING_NAMES:
        value = obj.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 5:
            return _unparseable(f"{name!r} must be an integer 1-5, got {value!r}")
        ratings[name] = value
    return Verdict("ok", None, None, ratings, None)

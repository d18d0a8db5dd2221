"""Judge protocols: how a prompt variant becomes a request, and how the candidate and question are chosen.

``hba`` (paper, paraphrased, rater and template files): a system and a user message, the verdict schema
with ``explanation`` before ``correct``, the candidate with ``<think>`` removed and the last ``\\boxed{}``.

``reference`` reproduces MIT-MI/human_behavior_atlas ``evaluation/llm_grader/llm_judge_eval.py``
(commit 9cd5ced), line numbers below:

- the grading instruction goes as a first *user* message, then the grade prompt (lines 139-150);
- the ``Evaluation`` schema, ``correct`` before ``explanation``, and ``max_completion_tokens`` 2048 (153-173);
- the candidate is the first ``\\boxed{...}`` up to the first ``}``, ``<think>`` kept, else the stripped
  text (``extract_boxed_answer``, 273-275; applied at 280);
- the reference answer is lowercased (281, 471) and the question is looked up by it in a map of
  lowercased answer -> question (``load_annotations``, 254-256; the last row of an answer wins);
- rows whose answer is not in that map are dropped from the denominator (``augment_results_with_questions``,
  310-313). hba judges them with their own question and counts them instead;
- a reply that is not JSON counts as correct when "true" appears anywhere in it (212-213). hba applies
  this only on request (``lenient=True``) and counts those judgments apart.

>>> reference_candidate("<think>maybe \\\\boxed{cat}</think> so \\\\boxed{dog}")
'cat'
>>> reference_candidate("  He waves. ")
'He waves.'
>>> lenient_verdict("The candidate is correct, this is true.")
True
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import orjson

from hba_core.errors import InputError

PROTOCOLS = ("hba", "reference")

# llm_judge_eval.py lines 157-172, key order included (the order is what the model is asked to write).
REFERENCE_VERDICT_SCHEMA: dict[str, Any] = {
    "name": "Evaluation",
    "schema": {
        "type": "object",
        "additionalProperties": False,
        "required": ["correct", "explanation"],
        "properties": {"correct": {"type": "boolean"}, "explanation": {"type": "string"}},
    },
    "strict": True,
}
REFERENCE_MAX_COMPLETION_TOKENS = 2048  # line 156

_REFERENCE_BOX = re.compile(r"\\boxed\{([^}]+)\}")  # line 274: no nesting, stops at the first }
# The reasons replies.parse_verdict gives for a reply json.loads would also refuse (line 196): the only
# replies the reference reads leniently. Other unparseable replies (JSON without the fields) crash it.
LENIENT_REASONS = frozenset({"the reply is empty", "the reply is not JSON"})


def reference_candidate(prediction: str | None) -> str:
    """The candidate as the reference extracts it: first box content (unstripped), else the stripped text."""
    if prediction is None:
        return ""
    match = _REFERENCE_BOX.search(prediction)
    return match.group(1) if match else prediction.strip()


def lenient_verdict(raw: str | None) -> bool:
    """The reference's reading of a reply that is not JSON: correct when "true" occurs anywhere in it."""
    return "true" in (raw or "").lower()


def question_map(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Lowercased answer -> question, the last pair of an answer winning (``dict(zip(...))`` in the reference)."""
    return {answer.lower(): question for answer, question in pairs}


def _csv_rows(path: Path) -> list[dict[str, str]]:
    try:
        with path.open(newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    except FileNotFoundError:
        raise InputError(str(path), "missing: --reference-annotations needs the reference's annotation tree") from None


def _jsonl_rows(path: Path) -> list[dict[str, Any]]:
    try:
        lines = path.read_bytes().splitlines()
    except FileNotFoundError:
        raise InputError(str(path), "missing: --reference-annotations needs the reference's annotation tree") from None
    rows = []
    for n, line in enumerate(lines, start=1):
        if line.strip():
            try:
                rows.append(orjson.loads(line))
            except orjson.JSONDecodeError as exc:
                raise InputError(f"{path}:{n}", f"not JSON ({exc})") from None
    return rows


def _pairs(rows: list[dict[str, Any]], answer: str, question: str, path: Path) -> list[tuple[str, str]]:
    out = []
    for n, row in enumerate(rows, start=1):
        a, q = row.get(answer), row.get(question)
        if not isinstance(a, str) or not isinstance(q, str):
            raise InputError(f"{path}:{n}", f"needs string columns {answer!r} and {question!r}")
        out.append((a, q))
    return out


def annotation_question_maps(root: str | Path) -> dict[str, dict[str, str]]:
    """The reference's answer -> question maps from its annotation tree (``load_annotations``, lines 233-262)."""
    base = Path(root)
    mime = base / "mimeqa" / "metadata.csv"
    maps = {"mimeqa": question_map(_pairs(_csv_rows(mime), "reference_answer", "question", mime))}
    siq: list[tuple[str, str]] = []
    for split in ("qa_train.json", "qa_val.json"):  # the reference reads no siq2 test file
        path = base / "siq2" / "qa" / split
        siq += _pairs(_jsonl_rows(path), "ans_corr", "q", path)
    maps["siq2"] = question_map(siq)
    intent: list[tuple[str, str]] = []
    for split in ("train.csv", "val.csv", "test.csv"):
        path = base / "intentqa" / "annotations" / split
        for n, row in enumerate(_csv_rows(path), start=2):  # line 1 is the header
            column = f"a{row.get('answer', '').strip()}"
            if column not in row or not isinstance(row.get("question"), str):
                raise InputError(f"{path}:{n}", f"'answer' must name one of the a0..a4 columns, got {column!r}")
            intent.append((row[column], row["question"]))
    maps["intentqa"] = question_map(intent)
    return maps


def lookup_questions(items: Sequence[Any], annotations: str | Path | None) -> tuple[int | None, int]:
    """The reference's question lookup on hba's items (``.dataset``, ``.reference``, ``.question``), in place.

    The map is the reference's annotation tables when given, else built from the items themselves (the
    last item with an answer wins, as the reference's ``dict(zip(...))`` does). An item whose answer is in
    no table keeps its own question and is counted: the reference would drop it. Returns (would drop, or
    None without annotations; items given another question).
    """
    if annotations is not None:
        maps = annotation_question_maps(annotations)
    else:
        maps = {}
        for item in items:
            maps.setdefault(item.dataset, {})[item.reference.lower()] = item.question
    dropped, changed = 0, 0
    for item in items:
        found = maps.get(item.dataset, {}).get(item.reference.lower())
        if found is None:
            dropped += 1
        elif found != item.question:
            changed += 1
            item.question = found
    return (dropped if annotations is not None else None), changed

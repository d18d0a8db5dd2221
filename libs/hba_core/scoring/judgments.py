"""hba-judge judgments joined to one model's predictions, and which judgments file belongs to which model.

The judgment statuses are declared once, :data:`hba_core.scoring.join.JUDGE_STATUSES` (a test checks
the schemas' enums against it). A free-text sample without a TRUE judgment is not TRUE.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from hba_core import registry
from hba_core.errors import HbaError, InputError
from hba_core.jsonl import LineError, PathLike, display_name, iter_jsonl
from hba_core.scoring.join import _J_FALSE, _J_NONE, _J_TRUE, JUDGE_STATUSES, MAX_PROBLEMS, Predictions, Truth, _problem


def attach_judgments(
    preds: Predictions,
    rows: Iterable[tuple[int, dict[str, Any]]],
    truth: Truth,
    source: str,
    strict: bool = False,
    model: str | None = None,
) -> None:
    """Read hba-judge rows into ``preds.judgments``; with ``model``, only rows whose ``model`` field names it."""
    counts = dict.fromkeys(
        ("lines", "matched", "duplicate", "unknown_id", "invalid", "not_free_text", "other_model", "unjudged"), 0
    )
    free = np.array([registry.dataset(n).is_free_text for n in truth.names])[truth.dataset]
    ids = truth.ids
    # judgments are of free-text samples: an index of those only (a few in ten), the full one for the rest
    free_index = {ids[i]: i for i in np.flatnonzero(free).tolist()}
    is_free = free.tolist()
    got = bytearray(len(ids))  # the judgment code per sample: plain bytes, far cheaper per item than numpy
    ok_codes = {True: _J_TRUE, False: _J_FALSE}
    lines = 0
    for line, row in rows:  # the hot loop of a few hundred thousand judgments: keep it lean
        if model is not None:
            if not isinstance(row.get("model"), str):
                raise InputError(
                    f"{source}:{line}",
                    'judgment has no "model" field, so it cannot be told which of several '
                    "models it judges; give one --judgments NAME=FILE per model",
                )
            if row["model"] != model:
                counts["other_model"] += 1
                continue
        lines += 1
        get = row.get
        sid, status, correct = get("id"), get("status"), get("correct")
        if sid.__class__ is not str or status not in JUDGE_STATUSES or (status == "ok") != (correct.__class__ is bool):
            _problem(
                f"{source}:{line}",
                "not a judgment: needs id, status (ok|unparseable|error|skipped) and correct "
                "(true/false when ok, else null)",
                preds.problems,
                counts,
                "invalid",
                strict,
            )
            continue
        i = free_index.get(sid)
        if i is None:
            i = truth.index.get(sid)
        if i is None:
            where = f"{source}:{line}"
            _problem(where, f"judged id {sid!r} is not in the truth", preds.problems, counts, "unknown_id", strict)
        elif not is_free[i]:
            counts["not_free_text"] += 1
        elif got[i] != _J_NONE:
            _problem(
                f"{source}:{line}",
                f"duplicate judgment for {sid!r}" + ("" if strict else " (the first one is kept)"),
                preds.problems,
                counts,
                "duplicate",
                strict,
            )
        else:
            got[i] = ok_codes[correct] if status == "ok" else 2 + JUDGE_STATUSES.index(status)
    counts["lines"] = lines
    codes = np.frombuffer(got, dtype=np.uint8).astype(np.int8)
    counts["matched"] = int((codes != _J_NONE).sum())
    counts["unjudged"] = int((free & (codes == _J_NONE)).sum())
    if strict and counts["unjudged"]:
        raise InputError(source, f"{counts['unjudged']} free-text samples have no judgment (--strict)")
    preds.judgments, preds.judgment_counts = codes, counts


def load_judgments(
    path: PathLike, preds: Predictions, truth: Truth, strict: bool = False, model: str | None = None
) -> None:
    bad: list[LineError] = []
    rows = iter_jsonl(path, None if strict else bad)
    attach_judgments(preds, rows, truth, display_name(path), strict, model)
    for err in bad:
        preds.judgment_counts["invalid"] += 1  # type: ignore[index]
        if len(preds.problems) < MAX_PROBLEMS:
            preds.problems.append(str(err))


def judgment_plan(items: tuple[str, ...], names: list[str]) -> list[tuple[str, str, str | None]]:
    """(file, model it belongs to, model field to filter by) for each ``--judgments [NAME=]FILE`` value.

    >>> judgment_plan(("a=j.jsonl",), ["a", "b"])
    [('j.jsonl', 'a', None)]
    """
    plan: list[tuple[str, str, str | None]] = []
    plain = []
    for item in items:
        prefix, sep, rest = item.partition("=")
        if sep and prefix in names:
            plan.append((rest, prefix, None))
        elif sep and not Path(item).exists():
            raise HbaError(f"--judgments {item}: no model named {prefix!r}; models: {', '.join(names)}")
        else:
            plain.append(item)
    assigned = {model for _, model, _ in plan}
    open_names = [n for n in names if n not in assigned]
    if len(plain) == len(open_names):
        plan += [(path, name, None) for path, name in zip(plain, open_names)]
    elif len(plain) == 1:  # one shared file: each row's "model" field says whose answer it judged
        if plain[0] == "-":
            raise HbaError("--judgments -: stdin cannot be shared by several models; give one file per model")
        plan += [(plain[0], name, name) for name in open_names]
    elif plain:
        raise HbaError(
            f"{len(plain)} --judgments files for {len(open_names)} models: give one per model "
            '(in --pred order, or as NAME=FILE), or one file whose rows carry a "model" field'
        )
    return plan


def require_judgments(models: list[Predictions], truth: Truth) -> None:
    """--strict: a model without judgments while the truth has free-text samples is an error (docs/score.md)."""
    free = [n for n in truth.names if registry.dataset(n).is_free_text]
    count = int(np.isin(truth.dataset, [truth.names.index(n) for n in free]).sum()) if free else 0
    if not count:
        return
    for m in models:
        if m.judgments is None:
            raise InputError(
                "--judgments",
                f"model {m.name!r} has no judgments for the {count} free-text samples (--strict): "
                "run hba-judge and pass --judgments, or drop --strict",
            )

"""The one validator behind ``hba-validate`` and ``hba-convert validate``: every problem of a file, by line.

Records of any schema kind are checked against ``schemas/<kind>.schema.json``; samples also against
the registry (known dataset, label in its label set), for repeated ids (or, without ids, repeated
content) and, given a data root, for media that are missing or outside it. JSON Lines files are read
line by line; a kind that is one JSON document (``score-report``, ``run-config``, ``descriptor-store``)
is read as a document when the file holds exactly one - hba-score writes its report pretty-printed.
Nothing stops at the first problem.

>>> import tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "s.jsonl"
>>> _ = p.write_text('{"id": "a", "dataset": "nosuch"}\\n{"id": "a"}\\n')
>>> report = validate_records(p, "sample")
>>> report.count, [problem.line for problem in report.problems][-1]
(2, 2)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from hba_core import schemas
from hba_core.errors import MediaError
from hba_core.jsonl import LineError, PathLike, display_name, iter_jsonl, open_binary_input
from hba_core.media import resolve_media
from hba_core.samples import iter_samples, sample_id, sample_problems
from hba_core.sources import expand_source, is_cell_ref, is_parquet, read_cell

MEDIA_KEYS = ("images", "videos", "audios", "texts", "ext_video_feats", "ext_audio_feats")
DOCUMENT_KINDS = frozenset({"score-report", "run-config", "descriptor-store"})


@dataclass
class Report:
    """What :func:`validate_records` found in one file."""

    count: int = 0  # records read
    problems: list[LineError] = field(default_factory=list)  # sorted by line


def media_problems(row: dict, root: Path) -> list[str]:
    """Missing or escaping media paths of one sample, relative to ``root``."""
    problems = []
    for key in MEDIA_KEYS:
        paths = row.get(key)
        if not isinstance(paths, list):
            continue
        for index, rel in enumerate(paths):
            if not isinstance(rel, str):
                continue
            try:
                path = resolve_media(root, rel)
                if is_cell_ref(path):  # a shard's cell: it must hold bytes
                    read_cell(str(path))
                    continue
            except MediaError as exc:
                problems.append(f"$.{key}[{index}]: {exc.message}")
                continue
            if not path.is_file():
                problems.append(f"$.{key}[{index}]: media file not found under {root}: {rel}")
    return problems


def _document(path: PathLike) -> Any:
    """The file's single JSON value, or None when it is not one JSON document (then it is read as lines)."""
    with open_binary_input(path) as fh:
        data = fh.read()
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None


def _duplicate_key(obj: dict[str, Any], kind: str) -> Any:
    if kind == "sample":
        return sample_id(obj)
    rid = obj.get("id")
    # One predictions or judgments file may hold several models' rows for one id.
    return (obj.get("model"), rid) if isinstance(rid, str) else None


def _records(
    path: PathLike, kind: str, problems: list[LineError], *, media: bool
) -> Iterator[tuple[str, int, dict[str, Any]]]:
    """``(file, line, record)``: samples from any source (:mod:`hba_core.sources`; a shard's rows with their
    ids, its binary columns read only to check media), other kinds from JSON Lines."""
    if kind != "sample":
        name = display_name(path)
        for line, obj in iter_jsonl(path, problems):
            yield name, line, obj
        return
    for file in expand_source(path):
        if is_parquet(file):
            for line, obj in iter_samples(file, media=media):
                yield file, line, obj
        else:
            for line, obj in iter_jsonl(file, problems):
                yield display_name(file), line, obj


def validate_records(path: PathLike, kind: str, root: Path | None = None) -> Report:
    """Every problem of one file of records of ``kind`` (see the module docstring); ``root`` checks media."""
    schemas.schema(kind)  # unknown kind -> the valid names
    name = display_name(path)
    report = Report()
    if kind in DOCUMENT_KINDS and str(path) != "-":
        document = _document(path)
        if isinstance(document, dict):
            report.count = 1
            report.problems = [LineError(name, 1, message) for message in schemas.errors(document, kind)]
            return report
    first_line: dict[Any, int] = {}
    for name, line, obj in _records(path, kind, report.problems, media=root is not None):
        report.count += 1
        found = sample_problems(obj) if kind == "sample" else schemas.errors(obj, kind)
        if kind == "sample" and root is not None:
            found += media_problems(obj, root)
        key = _duplicate_key(obj, kind)
        if key is not None:
            if key in first_line:
                what = "id" if obj.get("id") else "content (the same derived id)"
                found.append(f"$.id: same {what} as line {first_line[key]}: {obj.get('id') or key!r}")
            else:
                first_line[key] = line
        report.problems.extend(LineError(name, line, message) for message in found)
    report.problems.sort(key=lambda p: p.line)
    return report

"""JSON Schemas of everything the tools exchange (the files live in the repository's schemas/).

>>> from hba_core import schemas
>>> schemas.errors({"id": "x"}, "prediction")
["$: 'prediction' is a required property"]
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import orjson
from jsonschema import Draft202012Validator

from hba_core.errors import UnknownNameError


def kinds() -> list[str]:
    """Names of the shipped schemas: sample, prediction, judgment, ..."""
    files = resources.files("hba_core.schema_files").iterdir()
    return sorted(f.name.removesuffix(".schema.json") for f in files if f.name.endswith(".schema.json"))


@cache
def schema(kind: str) -> dict[str, Any]:
    if kind not in kinds():
        raise UnknownNameError("schema", kind, kinds())
    return orjson.loads(resources.files("hba_core.schema_files").joinpath(f"{kind}.schema.json").read_bytes())


@cache
def validator(kind: str) -> Draft202012Validator:
    return Draft202012Validator(schema(kind), format_checker=Draft202012Validator.FORMAT_CHECKER)


def errors(obj: Any, kind: str) -> list[str]:
    """Every problem of ``obj`` against schema ``kind``, as 'path: message' strings (empty if valid)."""
    found = sorted(validator(kind).iter_errors(obj), key=lambda e: list(e.absolute_path))
    return [f"{e.json_path}: {e.message}" for e in found]

"""The fields every tool needs in a sample, checked in one place so that a bad row is one clear line.

Tools read ``sample["dataset"]``, ``sample["problem"]`` and iterate ``videos``/``audios``; a row without
them used to surface as a ``KeyError`` traceback (after half an output was written), and a path given
as a string was iterated character by character. :func:`sample_problem` says what is wrong with a row
(or ``None``); :func:`require_sample` raises it as an :class:`~hba_core.errors.InputError` at ``where``.

>>> sample_problem({"dataset": "cremad", "problem": "<audio>\\nWhat emotion?", "audios": ["a.wav"]}) is None
True
>>> print(sample_problem({"dataset": "cremad", "problem": "x", "audios": "a.wav"}))
'audios' must be a list of paths, got a string ('a.wav'); write ["a.wav"]
"""

from __future__ import annotations

from typing import Any

from hba_core import registry
from hba_core.errors import InputError, UnknownNameError

REQUIRED: tuple[str, ...] = ("dataset", "problem")
MEDIA_LISTS: tuple[str, ...] = ("videos", "audios", "images")


def media_list_problem(sample: dict[str, Any], name: str) -> str | None:
    """What is wrong with ``sample[name]`` as a list of media paths (absent and null are fine: no media)."""
    value = sample.get(name)
    if value is None:
        return None
    if isinstance(value, str):
        return f'{name!r} must be a list of paths, got a string ({value!r}); write ["{value}"]'
    if not isinstance(value, list):
        return f"{name!r} must be a list of paths, got {type(value).__name__}"
    for item in value:
        if not isinstance(item, str) or not item:
            return f"{name!r} must hold non-empty path strings, got {item!r}"
    return None


def sample_problem(sample: dict[str, Any], required: tuple[str, ...] = REQUIRED, *, media: bool = True) -> str | None:
    """The first problem that stops tools using ``sample``: a missing or non-string required field, an
    unknown dataset (with the valid names), a media field that is not a list of paths; ``None`` if fine."""
    for name in required:
        value = sample.get(name)
        if value is None:
            return f"no {name!r} field (every sample needs {', '.join(repr(r) for r in required)})"
        if not isinstance(value, str):
            return f"{name!r} must be a string, got {type(value).__name__}"
    dataset = sample.get("dataset")
    if "dataset" in required and isinstance(dataset, str):
        try:
            registry.dataset(dataset)
        except UnknownNameError as exc:
            return str(exc)
    if media:
        for name in MEDIA_LISTS:
            problem = media_list_problem(sample, name)
            if problem is not None:
                return problem
    return None


def where_of(path: Any, line: int, sample: dict[str, Any]) -> str:
    """``file:line (id)``: where a sample is, for messages."""
    sid = sample.get("id")
    return f"{path}:{line}" + (f" ({sid})" if isinstance(sid, str) and sid else "")


def require_sample(sample: dict[str, Any], where: str, required: tuple[str, ...] = REQUIRED) -> dict[str, Any]:
    """``sample`` itself, or an :class:`InputError` at ``where`` naming what is wrong and how to fix it."""
    problem = sample_problem(sample, required)
    if problem is not None:
        raise InputError(where, f"{problem}; fix the row or remove it")
    return sample

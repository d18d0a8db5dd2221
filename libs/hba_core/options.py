"""An options dataclass from a JSON or TOML config file plus flags: flags win, unknown keys are errors.

>>> from dataclasses import dataclass
>>> @dataclass
... class Opts:
...     lr: float = 1e-4
...     epochs: int = 5
>>> merge_options(Opts, None, {"epochs": 1, "lr": None})
Opts(lr=0.0001, epochs=1)
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import field, fields
from pathlib import Path
from typing import Any, TypeVar

from hba_core.errors import InputError

T = TypeVar("T")


def option(default: Any, help: str, **metadata: Any) -> Any:
    """A dataclass field whose metadata carries its CLI help (``hba_tools._cli.options_from`` reads it, with
    ``choices`` and the rest of ``metadata``); a list default is copied for each instance."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help, **metadata})
    return field(default=default, metadata={"help": help, **metadata})


def read_config_file(path: str | Path, known: set[str]) -> dict[str, Any]:
    """The options a ``.toml`` or ``.json`` file sets; a parse error or an unknown key is one line naming the file."""
    path = str(path)
    text = Path(path).read_text()
    try:
        loaded = tomllib.loads(text) if path.endswith(".toml") else json.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(path, f"not valid TOML: {exc}") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}:{exc.lineno}", f"not valid JSON: {exc.msg} (a .toml file is read as TOML)") from None
    if not isinstance(loaded, dict):
        raise InputError(path, f"a config file holds one object of options, not {type(loaded).__name__}")
    unknown = sorted(set(loaded) - known)
    if unknown:
        raise InputError(path, f"unknown options {unknown}; valid: {', '.join(sorted(known))}")
    return loaded


def merge_options(cls: type[T], config_file: str | Path | None, overrides: dict[str, Any]) -> T:
    """``cls(**(file options | overrides))``: an override of ``None`` means "not given" and keeps the file's
    value (or the dataclass default), so a flag's default never hides what the file says."""
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    merged = read_config_file(config_file, known) if config_file else {}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TypeError(f"{cls.__name__} has no options {unknown}")  # a bug in the caller, not user input
    merged.update({k: v for k, v in overrides.items() if v is not None})
    return cls(**merged)

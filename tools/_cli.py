"""What every hba-* command shares: turning user errors into one clear line, and stderr reporting."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from hba_core.errors import HbaError

F = TypeVar("F", bound=Callable[..., Any])


def user_errors(fn: F) -> F:
    """Report :class:`HbaError` (bad input or options) as ``Error: <one line>``, exit code 1.

    Anything else is a bug and keeps its traceback.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except HbaError as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper  # type: ignore[return-value]


def comma_list(*values: str) -> list[str]:
    """Names from options given as ``a,b`` and/or repeated: ``comma_list("a, b", "c") == ["a", "b", "c"]``."""
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def info(message: str) -> None:
    """A line for the person at the terminal (stderr): data goes to stdout only."""
    click.echo(message, err=True)


def stderr_is_terminal() -> bool:
    return sys.stderr.isatty()

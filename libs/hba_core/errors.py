"""User-facing errors. A tool turns these into one line on stderr and a non-zero exit; anything else is a bug.

Each message says what went wrong, where (file:line or sample id) and, where it helps, what to do.
"""

from __future__ import annotations

import difflib


class HbaError(Exception):
    """Base of every error that is the user's input or options, not a bug in hba."""


class UnknownNameError(HbaError, KeyError):
    """An unknown dataset, task, metric, ... name."""

    def __init__(self, kind: str, name: str, valid: list[str]):
        self.kind, self.name, self.valid = kind, name, valid
        close = difflib.get_close_matches(name, valid, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        super().__init__(f"unknown {kind} {name!r}.{hint} Valid: {', '.join(valid)}")

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


def first_few(places: list[str], shown: int = 3) -> str:
    """The first ``shown`` of ``places`` for a one-line message, and how many more there are.

    >>> first_few(["a.jsonl:1", "a.jsonl:4", "a.jsonl:9", "a.jsonl:12", "a.jsonl:20"])
    'a.jsonl:1, a.jsonl:4, a.jsonl:9 and 2 more'
    """
    more = f" and {len(places) - shown} more" if len(places) > shown else ""
    return ", ".join(places[:shown]) + more


class InputError(HbaError):
    """Bad input data at a known place: ``where`` is 'file:line' or a sample id."""

    def __init__(self, where: str, message: str):
        self.where, self.message = where, message
        super().__init__(f"{where}: {message}")


class MediaError(InputError):
    """A media file is missing, unreadable, or outside the data root."""

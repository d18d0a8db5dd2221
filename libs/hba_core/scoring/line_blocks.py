"""Whole lines of a JSONL file a block at a time, and a block decoded by msgspec in one call (hba-score's readers).

>>> import msgspec
>>> decode_lines(msgspec.json.Decoder(dict), b'{"a": 1}\\n{"b": 2}\\n')
[{'a': 1}, {'b': 2}]
>>> decode_lines(msgspec.json.Decoder(dict), b'{"a": 1}\\n\\n') is None  # a blank line: line by line
True
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator
from typing import Any, BinaryIO

import msgspec
import numpy as np

BLOCK_BYTES = 512 * 1024  # lines decoded by msgspec in one call


def whole_lines(data: bytes | bytearray) -> int | None:
    """The number of lines of ``data`` when each is exactly one JSON object, else None (blank lines, two
    objects on a line or one object over two lines are left to the line-by-line readers, which number
    the lines). A check of a few vectorised passes: "}\\n{" never occurs inside a JSON value."""
    a = np.frombuffer(data, dtype=np.uint8)
    if not a.size or a[0] != 123:  # "{"
        return None
    newline = np.flatnonzero(a == 10)
    before = a[newline - 1]
    # "}\n{" (or "}\r\n{") never occurs inside a JSON value: so every newline ends one object, the next starts
    if not ((before == 125) | ((before == 13) & (a[newline - 2] == 125))).all() or (a[newline[:-1] + 1] != 123).any():
        return None
    lines = newline.size
    if a[-1] != 10:
        if a[-1] != 125:
            return None
        lines += 1
    return lines


def decode_lines(decoder: msgspec.json.Decoder, data: bytes | bytearray, lines: int | None = None) -> list[Any] | None:
    """One object per line of ``data`` (whole lines) in one msgspec call, or None unless every line is exactly
    one JSON object of the decoder's type (see :func:`whole_lines`; ``lines``: its answer, when known)."""
    if lines is None and (lines := whole_lines(data)) is None:
        return None
    try:
        if not data.isascii():
            data.decode()  # msgspec skips unread fields without checking their UTF-8; orjson did
        rows = decoder.decode_lines(data)
    except (UnicodeDecodeError, msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None
    return rows if len(rows) == lines else None  # two objects on a line make one more


def blocks(fh: BinaryIO, start: int = 0, end: int | None = None) -> Iterator[bytearray]:
    """Whole lines, about :data:`BLOCK_BYTES` at a time: those that start in ``[start, end)``, or all when
    ``end`` is None (a stream, read from where it is). Small blocks stay in the CPU's cache for the
    few passes over them (counting lines, checking UTF-8, decoding)."""
    if end is not None:
        fh.seek(start)
    pos = start
    while end is None or pos < end:
        size = BLOCK_BYTES if end is None else min(BLOCK_BYTES, end - pos)
        data = bytearray(size)
        got = fh.readinto(data)
        if not got:
            break
        if got < size:
            del data[got:]
        if data[-1] != 10:
            data += fh.readline()  # the last line started here: read it whole
        pos += len(data)
        yield data


@contextlib.contextmanager
def no_gc() -> Iterator[None]:
    """The cycle collector off while JSON is read: decoded values hold no cycles, and with a block of rows
    alive each collection walks them all (half the time of reading the truth, measured)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()

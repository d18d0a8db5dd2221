"""JSON Lines in and out: files, ``.gz`` files and ``-`` (stdin/stdout), parsed with orjson.

Reading names the file and line of every bad line; writing a file is atomic (temp file + rename),
and :class:`ResumableWriter` appends durably so that a killed job resumes with nothing lost or doubled.

>>> import tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "rows.jsonl"
>>> write_jsonl(p, [{"id": "a"}, {"id": "b"}])
2
>>> [row["id"] for _, row in iter_jsonl(p)]
['a', 'b']
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from hba_core.errors import InputError

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class LineError:
    """One bad line: where it is and what is wrong with it."""

    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


def display_name(path: PathLike) -> str:
    return "<stdin>" if str(path) == "-" else str(path)


@contextlib.contextmanager
def open_binary_input(path: PathLike) -> Iterator[IO[bytes]]:
    """Open a file, a ``.gz`` file or ``-`` (stdin) for binary reading."""
    if str(path) == "-":
        yield sys.stdin.buffer
        return
    p = Path(path)
    if not p.exists():
        raise InputError(str(p), "no such file")
    if p.is_dir():
        raise InputError(str(p), "is a directory; give a JSON Lines file (or - for stdin)")
    if p.suffix == ".gz":
        with gzip.open(p, "rb") as fh:
            yield fh
    else:
        with open(p, "rb") as fh:
            yield fh


def iter_jsonl(path: PathLike, errors: list[LineError] | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-blank line (1-based line numbers).

    A line that is not a JSON object raises :class:`InputError` naming file and line; when an
    ``errors`` list is given, the problem is appended there instead and reading goes on, so the
    caller can count and report every bad line.
    """
    name = display_name(path)
    with open_binary_input(path) as fh:
        for number, raw in enumerate(fh, start=1):
            obj = parse_line(name, number, raw, errors)
            if obj is not None:
                yield number, obj


def parse_line(name: str, number: int, raw: bytes, errors: list[LineError] | None) -> dict[str, Any] | None:
    """One line of :func:`iter_jsonl`: the object, or None for a blank line or a bad one put in ``errors``."""
    if not raw.strip():
        return None
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        problem = LineError(name, number, f"not valid JSON ({exc})")
    else:
        if isinstance(obj, dict):
            return obj
        problem = LineError(name, number, f"expected a JSON object, got {type(obj).__name__}")
    if errors is None:
        raise InputError(f"{problem.path}:{problem.line}", problem.message)
    errors.append(problem)
    return None


def dumps_line(obj: Any) -> bytes:
    """One JSONL line (with the newline); numpy scalars and arrays are serialised natively."""
    return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE)


def current_umask() -> int:
    """The process umask: from /proc on Linux, else by setting and restoring it (racy with other threads)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_output(path: PathLike) -> Iterator[IO[bytes]]:
    """A binary stream that becomes ``path`` only when the block ends without error.

    ``-`` streams to stdout. ``.gz`` paths are gzip-compressed. On error the temp file is removed
    and an existing ``path`` is left untouched. The file gets the mode a plain ``open`` would give
    (``0o666`` minus the umask), not the temp file's private 0600: colleagues on a shared server read results.
    """
    if str(path) == "-":
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as raw:
            stream: IO[bytes] = gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) if target.suffix == ".gz" else raw
            try:
                yield stream
            finally:
                if stream is not raw:
                    stream.close()
            raw.flush()
            os.chmod(raw.fileno(), 0o666 & ~current_umask())
            os.fsync(raw.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_jsonl(path: PathLike, rows: Iterable[Any]) -> int:
    """Write rows as JSONL atomically (or to stdout for ``-``); return the number written."""
    count = 0
    with atomic_output(path) as out:
        for row in rows:
            out.write(dumps_line(row))
            count += 1
    return count


@contextlib.contextmanager
def output_lock(path: PathLike) -> Iterator[None]:
    """Hold an exclusive lock on an output for the block: a second writer of ``path`` is refused at once.

    The lock is ``fcntl.flock`` on a sidecar ``.<name>.lock`` next to ``path`` (not the output itself: an
    atomic write replaces that file, and a lock on the old one would not stop the next writer). The
    sidecar is left in place - removing it would let a third process lock a fresh file while a second
    still holds the old one. ``-`` (stdout) takes no lock.
    """
    if str(path) == "-":
        yield
        return
    import fcntl

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fh = open(target.parent / f".{target.name}.lock", "ab")
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(
                str(target), "another process is writing this output; wait for it to finish or choose another one"
            ) from None
        yield
    finally:
        fh.close()  # closing releases the lock


class ResumableWriter:
    """Append-only JSONL output for long jobs that may be killed at any moment.

    On open, complete lines already in the file are kept and their keys reported in ``done``;
    a torn last line (a kill mid-write) is cut off. Each ``write`` appends whole lines and
    flushes them to disk, so a re-run skips exactly what was finished. The writer holds
    :func:`output_lock` from construction to :meth:`close`, so two jobs never append to one file.
    ``-`` writes to stdout (nothing to resume from, no lock).

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "out.jsonl"
    >>> with ResumableWriter(p) as w:
    ...     w.write([{"id": "a"}])
    >>> ResumableWriter(p).done
    {'a'}
    """

    def __init__(self, path: PathLike, key: str = "id"):
        self.stdout = str(path) == "-"
        self.path = Path(path)
        self.key = key
        self.done: set[str] = set()
        self._fh: io.BufferedWriter | None = None
        self._lock = contextlib.ExitStack()
        if self.stdout:
            return
        if self.path.is_dir():
            raise InputError(str(self.path), "is a directory; give a file name for the output")
        self._lock.enter_context(output_lock(self.path))
        try:
            self._recover()
        except BaseException:
            self._lock.close()
            raise

    def _recover(self) -> None:
        if not self.path.exists():
            return
        good_bytes = 0
        with open(self.path, "rb") as fh:
            for number, raw in enumerate(fh, start=1):
                if not raw.endswith(b"\n"):
                    break  # torn write from a kill: drop it
                where = f"{self.path}:{number}"
                try:
                    obj = orjson.loads(raw)
                except orjson.JSONDecodeError as exc:
                    raise InputError(where, f"not valid JSON ({exc}); {_NOT_OURS}") from None
                key = obj.get(self.key) if isinstance(obj, dict) else None
                if not isinstance(key, str) or not key:
                    raise InputError(where, f"a line without a string {self.key!r}; {_NOT_OURS}")
                self.done.add(key)
                good_bytes += len(raw)
        if good_bytes != self.path.stat().st_size:
            with open(self.path, "r+b") as fh:
                fh.truncate(good_bytes)

    def write(self, rows: Iterable[dict[str, Any]]) -> None:
        rows = list(rows)
        payload = b"".join(dumps_line(row) for row in rows)
        if self.stdout:
            sys.stdout.buffer.write(payload)
            sys.stdout.buffer.flush()
        else:
            if self._fh is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fh = open(self.path, "ab")
            self._fh.write(payload)
            self._fh.flush()
            os.fsync(self._fh.fileno())
        for row in rows:
            self.done.add(row[self.key])

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        self._lock.close()

    def __enter__(self) -> ResumableWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_NOT_OURS = "this is not a file this tool wrote - move it away or pick another output"

"""A one-line progress report on stderr: done/total, ok / unparseable / error counts, requests per second.

On a terminal the line is redrawn in place (at most ten times a second); into a file or pipe a line is
written every ``every_s`` seconds, so logs stay short.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from typing import TextIO


class Progress:
    def __init__(self, total: int, *, stream: TextIO | None = None, enabled: bool = True, every_s: float = 10.0):
        self.total = total
        self.stream = stream or sys.stderr
        self.enabled = enabled and total > 0
        self.tty = self.stream.isatty()
        self.every_s = 0.1 if self.tty else every_s
        self.counts: Counter[str] = Counter()
        self.done = 0
        self.requests = 0
        self._start = time.perf_counter()
        self._last = 0.0

    def update(self, status: str, *, requests: int) -> None:
        """One more judgment done; ``requests`` is the number of HTTP requests sent so far (retries included)."""
        self.done += 1
        self.counts[status] += 1
        self.requests = requests
        now = time.perf_counter()
        if self.enabled and (now - self._last >= self.every_s or self.done == self.total):
            self._last = now
            self._draw(final=False)

    def line(self) -> str:
        elapsed = max(time.perf_counter() - self._start, 1e-9)
        c = self.counts
        return (
            f"judged {self.done}/{self.total}  ok {c['ok']}  unparseable {c['unparseable']}  "
            f"error {c['error']}  {self.requests / elapsed:.1f} req/s"
        )

    def _draw(self, *, final: bool) -> None:
        if self.tty:
            self.stream.write(f"\r{self.line()}" + ("\n" if final else ""))
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()

"""The judgment cache: SQLite (WAL), one row per (judge model, prompt, question, candidate, reference).

A re-run answers every cached judgment without a request, and because each judgment is committed
the moment it arrives, a run killed at any point (even ``kill -9``) resumes with nothing lost: what
was committed is reused, what was in flight is asked again. Only replies are cached (``ok`` and
``unparseable``); request failures are not, so they are retried on the next run.

The key holds what decides the verdict, not where the judge is served: the same model behind another
port, host or proxy answers from the same cache.

>>> import tempfile, pathlib
>>> c = JudgmentCache(pathlib.Path(tempfile.mkdtemp()) / "c.sqlite")
>>> k = cache_key("m", "fp", "q?", "cand", "ref")
>>> c.put(k, {"status": "ok", "correct": True})
>>> c.get_many([k])[k]["correct"]
True
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from hba_core.cache_dir import cache_root
from hba_core.errors import InputError

_SCHEMA = "CREATE TABLE IF NOT EXISTS judgments (key TEXT PRIMARY KEY, record BLOB NOT NULL)"
# Judgment-row shapes that passed judgment.schema.json, per hash of that file (see judgments.validate).
_SHAPES = (
    "CREATE TABLE IF NOT EXISTS validated_shapes "
    "(schema TEXT NOT NULL, shape TEXT NOT NULL, PRIMARY KEY (schema, shape))"
)
_BATCH = 500  # keys per SELECT (SQLite's variable limit is far above this)


def default_path() -> Path:
    """``$HBA_CACHE_DIR/judge.sqlite``, else ``$XDG_CACHE_HOME/hba/judge.sqlite`` (``~/.cache`` by default)."""
    return cache_root() / "judge.sqlite"


_KEY_FORMAT = "hba-judge-key-2"  # v1 also hashed the base URL; a new format never collides with it


def cache_key(model: str, prompt_fingerprint: str, question: str, candidate: str, reference: str) -> str:
    """A sha256 of what decides the verdict: judge model, prompt texts (variant, protocol, version) and the
    three texts judged. Never the API key, and not the base URL: a judge moved to another port stays cached."""
    payload = orjson.dumps([_KEY_FORMAT, model, prompt_fingerprint, question, candidate, reference])
    return hashlib.sha256(payload).hexdigest()


class JudgmentCache:
    """Key -> judgment record (status, correct, explanation, raw, latency_s, ratings)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None)  # autocommit: each put is durable at once
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: survives a killed process
            self._db.execute("PRAGMA busy_timeout=10000")
            self._db.execute(_SCHEMA)
            self._db.execute(_SHAPES)
        except sqlite3.DatabaseError as exc:
            raise InputError(str(self.path), f"not a judge cache ({exc}); pass another --cache or --no-cache") from None

    def get_many(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The cached records of those keys that are present."""
        wanted = list(dict.fromkeys(keys))
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(wanted), _BATCH):
            chunk = wanted[start : start + _BATCH]
            marks = ",".join("?" * len(chunk))
            for key, record in self._db.execute(f"SELECT key, record FROM judgments WHERE key IN ({marks})", chunk):
                found[key] = orjson.loads(record)
        return found

    def put(self, key: str, record: dict[str, Any]) -> None:
        self._db.execute("INSERT OR REPLACE INTO judgments (key, record) VALUES (?, ?)", (key, orjson.dumps(record)))

    def validated_shapes(self, schema: str) -> set[str]:
        """The row shapes recorded as valid under the schema whose hash is ``schema``."""
        return {row[0] for row in self._db.execute("SELECT shape FROM validated_shapes WHERE schema = ?", (schema,))}

    def add_validated_shapes(self, schema: str, shapes: Iterable[str]) -> None:
        rows = [(schema, shape) for shape in shapes]
        self._db.executemany("INSERT OR IGNORE INTO validated_shapes (schema, shape) VALUES (?, ?)", rows)

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM judgments").fetchone()[0]

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> JudgmentCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

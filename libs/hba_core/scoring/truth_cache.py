"""A truth file's ids, dataset codes and gold codes kept after the first read, so that scoring again is cheap.

Users score many models, many times, against the same release file. Reading a 1 M-line release
file costs more than everything else hba-score does (the ids of official lines are SHA-256 digests
of their content), so the arrays it comes to are stored under :func:`hba_core.cache_dir.cache_root`
``/truth/`` and read back in milliseconds while the file is unchanged: the entry's name hashes the
file's real path, device, inode, size and modification and change times, with the registry's text
(labels decide the gold codes) and this format's version. A file edited in place gets a new
modification time and so a new entry, which replaces the old one (one entry per truth path).
Entries are ``.npz`` files read with ``allow_pickle=False``, written atomically with the umask's
mode; one that cannot be read is read around (the truth is read from the file) and overwritten.
Nothing is cached for small files (they read fast), streams or compressed files, or with
``--pred-field`` (arbitrary values). ``hba-score --no-cache`` neither reads nor writes entries.

>>> import os, tempfile, pathlib, numpy as np
>>> saved = dict(os.environ)
>>> os.environ["HBA_CACHE_DIR"] = tempfile.mkdtemp()
>>> p = pathlib.Path(tempfile.mkdtemp()) / "t.jsonl"
>>> _ = p.write_text("{}\\n")
>>> entry = TruthEntry.of(str(p), min_bytes=0)
>>> entry.load() is None
True
>>> entry.store(["mmsd-1", "mmsd-2"], np.array([3, 3], np.int16), np.array([0, 1], np.int16))
True
>>> TruthEntry.of(str(p), min_bytes=0).load()[0]
['mmsd-1', 'mmsd-2']
>>> os.environ.clear(); os.environ.update(saved)
"""

from __future__ import annotations

import functools
import hashlib
import os
import zipfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import orjson

from hba_core.cache_dir import cache_root
from hba_core.jsonl import atomic_output
from hba_core.scoring.truth_reader import join_ids

FORMAT = "hba-truth-cache-1"
MIN_BYTES = 16 * 1024 * 1024  # smaller truths read in well under a second: no cache entry for them


@functools.cache
def _registry_digest() -> str:
    text = resources.files("hba_core").joinpath("registry.toml").read_bytes()
    return hashlib.sha256(text).hexdigest()


def _stamp(path: str) -> list[int]:
    st = os.stat(path)
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


@dataclass(frozen=True)
class TruthEntry:
    """The cache entry of one truth file as it is now (see the module text for what names it)."""

    source: str
    stamp: tuple[int, ...]
    file: Path

    @classmethod
    def of(cls, path: str, min_bytes: int | None = None) -> TruthEntry | None:
        """The entry for ``path``, or None when it is not worth caching (smaller than ``min_bytes``)."""
        stamp = _stamp(path)
        if stamp[2] < (MIN_BYTES if min_bytes is None else min_bytes):
            return None
        real = os.path.realpath(path)
        where = hashlib.sha256(orjson.dumps([FORMAT, real])).hexdigest()[:16]
        what = hashlib.sha256(orjson.dumps([FORMAT, real, stamp, _registry_digest()])).hexdigest()[:16]
        return cls(path, tuple(stamp), cache_root() / "truth" / f"{where}-{what}.npz")

    def load(self) -> tuple[list[str], np.ndarray, np.ndarray] | None:
        """(ids, dataset codes, gold codes) as stored, or None: no entry, or one that cannot be read."""
        try:
            with np.load(self.file, allow_pickle=False) as npz:
                blob, dataset, gold = npz["ids"], npz["dataset"], npz["gold"]
        except (OSError, KeyError, ValueError, zipfile.BadZipFile, EOFError):
            return None
        ids = blob.tobytes().decode().split("\n") if blob.size else []
        if not (len(ids) == dataset.size == gold.size and dataset.dtype == gold.dtype == np.int16):
            return None
        return ids, dataset, gold

    def store(self, ids: list[str], dataset: np.ndarray, gold: np.ndarray) -> bool:
        """Keep the arrays unless the file changed while it was read or an id holds a newline; False if not kept.

        A cache that cannot be written (read-only, full) costs the next run its speed, nothing else.
        """
        joined = join_ids(ids)
        if joined is None or tuple(_stamp(self.source)) != self.stamp:
            return False
        blob = np.frombuffer(joined.encode(), dtype=np.uint8)
        try:
            with atomic_output(self.file) as out:
                np.savez(out, ids=blob, dataset=dataset.astype(np.int16), gold=gold.astype(np.int16))
        except OSError:
            return False
        prefix = self.file.name.partition("-")[0]
        for old in self.file.parent.glob(f"{prefix}-*.npz"):  # the same file as it was: one entry per truth path
            if old != self.file:
                old.unlink(missing_ok=True)
        return True

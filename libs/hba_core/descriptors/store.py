"""The descriptor store: one Zarr v3 directory holding every clip's frames and pooled vectors, per stream.

Layout (``schemas/descriptor-store.schema.json`` describes the root attributes)::

    desc.zarr/                    root attributes: format, libraries, streams (config per stream), committed
      <stream>/frames   [F, D]    float32, the frames of all clips concatenated; NaN rows where nothing was detected
      <stream>/valid    [F]       bool, the validity mask (False exactly where the row is NaN)
      <stream>/keys     [N]       str, media key (the path as the samples write it, relative to the data root)
      <stream>/datasets [N]       str, dataset of the first sample that uses the media (for stats)
      <stream>/offsets  [N]       int64, first row of the clip in frames
      <stream>/lengths  [N]       int64, number of rows of the clip
      <stream>/valid_counts [N]   int64, number of valid rows
      <stream>/pooled   [N, 2D]   float32, [mean, std] over valid rows (population std: the paper's [mu_f, sigma_f])
      errors/keys, errors/streams, errors/reasons [E]  str, media that could not be read, with why

Kill safety: a commit first writes the new rows past the committed ends, then updates
``committed`` (row counts per stream and error count) in the root ``zarr.json``. Zarr's local store
replaces every file atomically, so a kill at any point leaves a store whose committed part is
intact; rows past the committed ends are ignored by readers and trimmed by the next writer.
A writer grows its arrays ahead of the committed ends (capacity doubling, so most commits resize
nothing) and trims them to the committed ends when it closes.

>>> import tempfile, numpy as np
>>> path = tempfile.mkdtemp() + "/d.zarr"
>>> with DescriptorStore.open_for_writing(path, {"audio": {"dim": 2}}) as store:
...     store.append([ClipResult("a.wav", "cremad", {"audio": (np.ones((3, 2), np.float32), np.ones(3, bool))})])
>>> pooled(open_store(path), "audio", ["a.wav"])[0].tolist()
[[1.0, 1.0, 0.0, 0.0]]
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from hba_core.errors import HbaError, InputError
from hba_core.versions import package_versions

FORMAT = "hba-descriptor-store"
FORMAT_VERSION = 1
_INDEX = ("keys", "datasets", "offsets", "lengths", "valid_counts")
_LIBRARIES = ("numpy", "zarr", "av", "mediapipe", "opensmile", "torch")


@dataclass
class ClipResult:
    """What extraction produced for one media file: per stream ``(values (T, D), valid (T,))``, or why not."""

    key: str
    dataset: str
    streams: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # stream -> reason


def pool_frames(values: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, int]:
    """``([mean, std] over valid rows as float32 (2D,), number of valid rows)``; NaN when none is valid.

    >>> pool_frames(np.array([[1.0], [3.0], [np.nan]], np.float32), np.array([True, True, False]))
    (array([2., 1.], dtype=float32), 2)
    """
    rows = values[valid].astype(np.float64)  # (V, D)
    if rows.shape[0] == 0:
        return np.full(2 * values.shape[1], np.nan, np.float32), 0
    return np.concatenate([rows.mean(axis=0), rows.std(axis=0)]).astype(np.float32), int(rows.shape[0])


def library_versions() -> dict[str, str]:
    return package_versions(_LIBRARIES)


def _chunk_rows(width: int, target_bytes: int = 2 << 20) -> int:
    return int(max(256, min(16384, target_bytes // (4 * max(1, width)))))


class DescriptorStore:
    """A descriptor store opened for reading (:func:`open_store`) or writing (:meth:`open_for_writing`)."""

    def __init__(self, path: str | os.PathLike[str], group: Any, *, writable: bool = False):
        self.path = Path(path)
        self.group = group
        self.writable = writable
        self._lock: Any = None
        self._arrays: dict[tuple[str, str], Any] = {}  # a writer's open arrays: no metadata read per commit
        self._index_cache: dict[str, dict[str, int]] = {}
        self._column_cache: dict[tuple[str, str], np.ndarray] = {}  # read-only stores: columns never change

    # --- opening -----------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> DescriptorStore:
        import zarr

        p = Path(path)
        if not (p / "zarr.json").exists():
            raise InputError(str(p), "not a descriptor store (no zarr.json); create one with `hba-descriptors extract`")
        group = zarr.open_group(str(p), mode="r")
        if group.attrs.get("format") != FORMAT:
            raise InputError(
                str(p), f"a Zarr group but not an {FORMAT} (format attribute is {group.attrs.get('format')!r})"
            )
        return cls(p, group)

    @classmethod
    def open_for_writing(
        cls, path: str | os.PathLike[str], streams: dict[str, dict[str, Any]], extra: dict[str, Any] | None = None
    ) -> DescriptorStore:
        """Create the store or reopen it to add clips; the requested stream configs must match the stored ones.

        Holds an exclusive lock (``.lock`` in the store) until :meth:`close`, so two runs never
        write one store; rows left past the committed ends by a killed run are trimmed.
        """
        import zarr

        p = Path(path)
        p.mkdir(parents=True, exist_ok=True)
        lock = open(p / ".lock", "w")  # held for the writer's lifetime
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise HbaError(f"{p}: another process is writing this store; wait for it or use another --store") from None
        group = zarr.open_group(str(p), mode="a")  # not "w": that would delete the lock file
        # new, or killed before its first attribute write (group.keys() would warn about .lock)
        fresh = not dict(group.attrs) and not any((child / "zarr.json").exists() for child in p.iterdir())
        if not fresh and group.attrs.get("format") != FORMAT:
            lock.close()
            raise InputError(str(p), f"exists but is not an {FORMAT}; choose a new --store path")
        if fresh:
            group.attrs.update(
                {
                    "format": FORMAT,
                    "format_version": FORMAT_VERSION,
                    "libraries": library_versions(),
                    "streams": {},
                    "committed": {"streams": {}, "errors": 0},
                    **(extra or {}),
                }
            )
        store = cls(p, group, writable=True)
        store._lock = lock
        store.add_streams(streams)
        store._trim()
        return store

    def add_streams(self, streams: dict[str, dict[str, Any]]) -> None:
        """Create the arrays of streams the store lacks; a stream it has must have exactly this config."""
        from zarr.codecs import BloscCodec

        known = dict(self.group.attrs["streams"])
        committed = dict(self.group.attrs["committed"])
        committed["streams"] = dict(committed["streams"])
        # zstd level 3: a third of level 5's CPU for 1.5 % more bytes on landmark frames (docs/benchmarks.md)
        compressor = BloscCodec(cname="zstd", clevel=3, shuffle="shuffle")
        changed = False
        for name, config in streams.items():
            if name in known:
                if known[name] != config:
                    diff = sorted(k for k in set(known[name]) | set(config) if known[name].get(k) != config.get(k))
                    raise HbaError(
                        f"{self.path}: stream {name!r} was extracted with other settings ({', '.join(diff)} "
                        "differ); use the same settings to resume, or a new --store"
                    )
                continue
            dim = int(config["dim"])
            g = self.group.require_group(name)
            g.create_array(
                "frames",
                shape=(0, dim),
                chunks=(_chunk_rows(dim), dim),
                dtype="float32",
                compressors=compressor,
                fill_value=np.nan,
                overwrite=True,
            )
            g.create_array("valid", shape=(0,), chunks=(1 << 18,), dtype=bool, overwrite=True)
            g.create_array(
                "pooled",
                shape=(0, 2 * dim),
                chunks=(_chunk_rows(2 * dim), 2 * dim),
                dtype="float32",
                compressors=compressor,
                fill_value=np.nan,
                overwrite=True,
            )
            for index in _INDEX:
                dtype = str if index in ("keys", "datasets") else "int64"
                g.create_array(index, shape=(0,), chunks=(16384,), dtype=dtype, overwrite=True)
            known[name] = config
            committed["streams"][name] = {"clips": 0, "frames": 0}
            changed = True
        errors = self.group.require_group("errors")
        for index in ("keys", "streams", "reasons"):
            if index not in errors:
                errors.create_array(index, shape=(0,), chunks=(16384,), dtype=str, overwrite=True)
        if changed:
            self.group.attrs.update({"streams": known, "committed": committed})

    def _trim(self) -> None:
        """Cut rows a killed writer left past the committed ends."""
        committed = self.group.attrs["committed"]
        for name, counts in committed["streams"].items():
            g = self.group[name]
            for array, n in (
                ("frames", counts["frames"]),
                ("valid", counts["frames"]),
                ("pooled", counts["clips"]),
                *((index, counts["clips"]) for index in _INDEX),
            ):
                if g[array].shape[0] != n:
                    g[array].resize((n, *g[array].shape[1:]))
        for array in ("keys", "streams", "reasons"):
            a = self.group["errors"][array]
            if a.shape[0] != committed["errors"]:
                a.resize((committed["errors"],))

    def close(self) -> None:
        """Trim the arrays to the committed ends (a writer grows them ahead) and release the lock."""
        if self._lock is not None:
            try:
                self._trim()
            finally:
                self._lock.close()
                self._lock = None
                self._arrays.clear()

    def __enter__(self) -> DescriptorStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- reading -------------------------------------------------------------------------------
    @property
    def streams(self) -> dict[str, dict[str, Any]]:
        """Stream name -> its configuration (dim, columns, fps or sample rate, models)."""
        return dict(self.group.attrs["streams"])

    def counts(self, stream: str) -> tuple[int, int]:
        """``(clips, frames)`` committed in a stream."""
        self._check_stream(stream)
        c = self.group.attrs["committed"]["streams"][stream]
        return int(c["clips"]), int(c["frames"])

    def _check_stream(self, stream: str) -> None:
        if stream not in self.group.attrs["streams"]:
            from hba_core.errors import UnknownNameError

            raise UnknownNameError(f"stream in {self.path}", stream, sorted(self.group.attrs["streams"]))

    def column(self, stream: str, name: str) -> np.ndarray:
        """A committed per-clip index column (keys, datasets, offsets, lengths, valid_counts) or ``pooled``."""
        if not self.writable and (stream, name) in self._column_cache:
            return self._column_cache[(stream, name)]
        n, _ = self.counts(stream)
        values = self.group[stream][name][:n]
        if not self.writable:
            self._column_cache[(stream, name)] = values
        return values

    def index(self, stream: str) -> dict[str, int]:
        """Media key -> row in the stream's per-clip arrays."""
        if stream not in self._index_cache:
            self._index_cache[stream] = {str(k): i for i, k in enumerate(self.column(stream, "keys"))}
        return self._index_cache[stream]

    def errors(self) -> list[dict[str, str]]:
        """The error table: ``{"key", "stream", "reason"}`` per media file and stream that failed."""
        n = int(self.group.attrs["committed"]["errors"])
        g = self.group["errors"]
        return [
            {"key": str(k), "stream": str(s), "reason": str(r)}
            for k, s, r in zip(g["keys"][:n], g["streams"][:n], g["reasons"][:n])
        ]

    def done(self, stream: str) -> set[str]:
        """Media keys a run need not redo for ``stream``: stored, or recorded as unreadable."""
        failed = {e["key"] for e in self.errors() if e["stream"] == stream}
        return failed | set(self.index(stream)) if stream in self.group.attrs["streams"] else failed

    def frames(self, stream: str, key: str) -> tuple[np.ndarray, np.ndarray]:
        """One clip's ``(values (T, D), valid (T,))``."""
        row = self._row(stream, key)
        start = int(self.group[stream]["offsets"][row])
        stop = start + int(self.group[stream]["lengths"][row])
        return self.group[stream]["frames"][start:stop], self.group[stream]["valid"][start:stop]

    def _row(self, stream: str, key: str) -> int:
        try:
            return self.index(stream)[key]
        except KeyError:
            raise InputError(
                key,
                f"no {stream} descriptors in {self.path}; run `hba-descriptors extract` "
                "for it (or see `hba-descriptors stats` for errors)",
            ) from None

    # --- writing -------------------------------------------------------------------------------
    def append(self, clips: list[ClipResult]) -> None:
        """Add clips (and their errors) and commit them in one atomic step."""
        if not self.writable:
            raise RuntimeError("store opened read-only")
        committed = self.group.attrs["committed"]
        new_counts = {name: dict(c) for name, c in committed["streams"].items()}
        for name in self.streams:
            rows = [(c.key, c.dataset, *c.streams[name]) for c in clips if name in c.streams]
            if rows:
                new_counts[name] = self._write_stream(name, rows, committed["streams"][name])
        failures = [(c.key, stream, reason) for c in clips for stream, reason in c.errors.items()]
        n_errors = int(committed["errors"])
        if failures:
            g = self.group["errors"]
            for i, array in enumerate(("keys", "streams", "reasons")):
                g[array].resize((n_errors + len(failures),))
                g[array][n_errors:] = np.array([f[i] for f in failures], dtype=str)
            n_errors += len(failures)
        self.group.attrs["committed"] = {"streams": new_counts, "errors": n_errors}  # the commit point
        self._index_cache.clear()

    def _write_stream(
        self, name: str, rows: list[tuple[str, str, np.ndarray, np.ndarray]], counts: dict[str, int]
    ) -> dict[str, int]:
        def array(field: str) -> Any:
            if (name, field) not in self._arrays:
                self._arrays[(name, field)] = self.group[name][field]
            return self._arrays[(name, field)]

        def room(field: str, rows: int) -> Any:
            """The array with at least ``rows`` rows: grown to twice what it needs, so most commits skip it."""
            a = array(field)
            if a.shape[0] < rows:
                a.resize((max(rows, 2 * a.shape[0], 64), *a.shape[1:]))
            return a

        dim = array("frames").shape[1]
        n0, f0 = int(counts["clips"]), int(counts["frames"])
        for key, _, values, valid in rows:
            if values.ndim != 2 or values.shape[1] != dim or valid.shape != (values.shape[0],):
                raise ValueError(f"{key}: {name} frames have shape {values.shape}, expected (T, {dim})")
        lengths = np.array([r[2].shape[0] for r in rows], np.int64)
        offsets = f0 + np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        pooled_rows = [pool_frames(r[2], r[3]) for r in rows]
        n1, f1 = n0 + len(rows), f0 + int(lengths.sum())
        if f1 > f0:
            room("frames", f1)[f0:f1] = np.concatenate([r[2] for r in rows]).astype(np.float32, copy=False)
            room("valid", f1)[f0:f1] = np.concatenate([r[3] for r in rows])
        columns = {
            "keys": np.array([r[0] for r in rows], dtype=str),
            "datasets": np.array([r[1] for r in rows], dtype=str),
            "offsets": offsets,
            "lengths": lengths,
            "valid_counts": np.array([p[1] for p in pooled_rows], np.int64),
        }
        for index, values in columns.items():
            room(index, n1)[n0:n1] = values
        room("pooled", n1)[n0:n1] = np.stack([p[0] for p in pooled_rows])
        return {"clips": n1, "frames": f1}


def open_store(path: str | os.PathLike[str]) -> DescriptorStore:
    """Open a descriptor store for reading (the entry point of the read API)."""
    return DescriptorStore.open(path)


def pooled(
    store: DescriptorStore, stream: str, keys: list[str] | None = None, *, missing: Literal["raise", "nan"] = "raise"
) -> tuple[np.ndarray, np.ndarray]:
    """Pooled vectors ``[mean, std]`` of media ``keys`` (all clips when None): ``(float32 (n, 2D), valid counts (n,))``.

    A key with no descriptors raises :class:`InputError`, or gives a NaN row with count 0 when
    ``missing="nan"``. A clip whose frames were all invalid (no face at all) is NaN with count 0 too.
    """
    counts = store.column(stream, "valid_counts")
    if keys is None:
        return store.column(stream, "pooled"), counts
    index = store.index(stream)
    rows = np.array([index.get(k, -1) for k in keys], np.int64)
    if missing == "raise" and (rows < 0).any():
        store._row(stream, keys[int(np.argmin(rows))])  # raises with the key's name
    hit = rows >= 0
    wanted = np.unique(rows[hit])
    array = store.group[stream]["pooled"]  # (N, 2D)
    if wanted.size * 8 >= counts.size:  # many keys: one read of the whole array beats many small ones
        block, where = store.column(stream, "pooled"), rows[hit]
    else:  # a few keys of a large store: read only their rows
        block, where = array.oindex[wanted, :], np.searchsorted(wanted, rows[hit])
    out = np.full((len(keys), array.shape[1]), np.nan, np.float32)
    out_counts = np.zeros(len(keys), np.int64)
    out[hit], out_counts[hit] = block[where], counts[rows[hit]]
    return out, out_counts

"""Cache of pooled h_penult vectors of a frozen backbone: compute once, train BAM many times.

An entry is keyed by (model fingerprint, sample key). The model fingerprint hashes the checkpoint's
weight files (LoRA adapter, heads, LM head) and its config (which names the base model), so a
retrained checkpoint never reads stale vectors. The sample key hashes the sample's identity fields
and the media settings (frame rate, pixel limits change h), so an edited sample is recomputed.

Layout: ``<cache_dir>/<model fingerprint>/<16 hex of the key set>.npz`` with ``keys`` and ``h``; new
vectors go into a new file written atomically, so a killed run loses only what it had not written.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson

_WEIGHT_FILES = ("adapter_model.safetensors", "heads.safetensors", "lm_head.safetensors", "config.json")


def model_fingerprint(checkpoint: str | os.PathLike[str]) -> str:
    """Hash of the checkpoint's weight and config files (what determines h for a fixed base model)."""
    digest = hashlib.sha256()
    root = Path(checkpoint)
    for name in _WEIGHT_FILES:
        path = root / name
        if path.is_file():
            digest.update(name.encode())
            with open(path, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()[:24]


def sample_key(sample: dict[str, Any], media_settings: dict[str, Any]) -> str:
    """What determines one sample's h besides the model: its id, prompt, media and how media are read."""
    fields = ("id", "problem", "videos", "audios", "images", "modality_signature")
    identity = {name: sample.get(name) for name in fields}
    return hashlib.sha256(orjson.dumps([identity, media_settings], option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]


class PooledCache:
    """Pooled vectors of one model, read from and added to ``<cache_dir>/<fingerprint>/``."""

    def __init__(self, cache_dir: str | os.PathLike[str], fingerprint: str):
        self.dir = Path(cache_dir) / fingerprint
        self._vectors: dict[str, np.ndarray] = {}
        if self.dir.is_dir():
            for part in sorted(self.dir.glob("*.npz")):
                with np.load(part) as data:
                    self._vectors.update(zip(data["keys"].tolist(), data["h"]))

    def __contains__(self, key: str) -> bool:
        return key in self._vectors

    def __len__(self) -> int:
        return len(self._vectors)

    def get(self, keys: list[str]) -> np.ndarray:
        return np.stack([self._vectors[k] for k in keys]).astype(np.float32)

    def add(self, keys: list[str], h: np.ndarray) -> None:
        """Store new vectors (n, H) durably: one new atomically-renamed file."""
        if not keys:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]
        fd, tmp = tempfile.mkstemp(dir=self.dir, suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, keys=np.array(keys), h=h.astype(np.float32))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.dir / f"{name}.npz")
        self._vectors.update(zip(keys, h.astype(np.float32)))


def cached_vectors(
    cache: PooledCache | None, keys: list[str], compute: Callable[[list[int]], np.ndarray], *, chunk: int = 256
) -> tuple[np.ndarray, int]:
    """Vectors for ``keys`` in order: cached ones read, the rest computed (``compute(indices) -> (n, H)``) in
    chunks and added. Returns (matrix (N, H), number computed). Without a cache everything is computed."""
    missing = [i for i, k in enumerate(keys) if cache is None or k not in cache]
    computed: dict[int, np.ndarray] = {}
    for start in range(0, len(missing), chunk):
        part = missing[start : start + chunk]
        h = compute(part)
        computed.update(zip(part, h))
        if cache is not None:
            cache.add([keys[i] for i in part], h)
    if cache is None:
        return np.stack([computed[i] for i in range(len(keys))]), len(missing)
    return cache.get(keys), len(missing)

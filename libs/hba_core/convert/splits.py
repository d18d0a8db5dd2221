"""Deterministic, seeded splits grouped by recording (or speaker): no group appears in two splits.

Groups are ordered by a hash of ``seed:group`` (stable across Python versions and runs), then split
boundaries are placed on the cumulative sample count, so singleton groups give exact counts
(``floor(n * fraction + 0.5)`` for train and val, the rest for test) and larger groups give counts close to them.

>>> halves = (0.5, 0.25, 0.25)
>>> assign_splits(["a", "b", "c", "d"], halves, seed=0) == assign_splits(["d", "c", "b", "a"], halves, seed=0)
True
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Iterable

DEFAULT_SEED = 0
SEVENTY_FIFTEEN_FIFTEEN = (0.70, 0.15, 0.15)
EIGHTY_TEN_TEN = (0.80, 0.10, 0.10)


def _order_key(seed: int, group: str) -> str:
    return hashlib.sha256(f"{seed}:{group}".encode()).hexdigest()


def split_targets(n: int, fractions: tuple[float, float, float]) -> tuple[int, int, int]:
    """Sample counts per split for ``n`` samples: round half up for train and val, the rest for test.

    >>> split_targets(690, (0.70, 0.15, 0.15))
    (483, 104, 103)
    """
    train = math.floor(n * fractions[0] + 0.5)
    val = math.floor(n * fractions[1] + 0.5)
    return train, val, n - train - val


def assign_splits(
    groups: Iterable[str], fractions: tuple[float, float, float] = SEVENTY_FIFTEEN_FIFTEEN, seed: int = DEFAULT_SEED
) -> dict[str, str]:
    """Map each group (one entry per sample; repeats = samples of the same group) to train/val/test."""
    sizes = Counter(groups)
    train, val, _ = split_targets(sum(sizes.values()), fractions)
    out: dict[str, str] = {}
    done = 0
    for group in sorted(sizes, key=lambda g: _order_key(seed, g)):
        out[group] = "train" if done < train else "val" if done < train + val else "test"
        done += sizes[group]
    return out

"""Where hba keeps what it can recompute: ``$HBA_CACHE_DIR``, else ``$XDG_CACHE_HOME/hba`` (``~/.cache/hba``).

>>> import os
>>> saved = dict(os.environ)
>>> os.environ["HBA_CACHE_DIR"] = "/tmp/hba-cache-doctest"
>>> str(cache_root())
'/tmp/hba-cache-doctest'
>>> os.environ.clear(); os.environ.update(saved)
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """The cache folder (not created here): judge verdicts, served replies, hba-score's truth arrays."""
    base = os.environ.get("HBA_CACHE_DIR")
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "hba"

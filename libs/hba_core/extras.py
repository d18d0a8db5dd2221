"""Optional dependencies: which ``pip install`` extra provides what, and one clear line when one is missing.

The core (scoring, judging, conversion) runs without torch. A tool that needs more calls
:func:`require` before its heavy imports, so a ``[score,judge]`` install running ``hba-predict`` gets
``Error: hba-predict needs the 'train' extra (no module torch): pip install -e ".[train]"`` instead of a
``ModuleNotFoundError`` traceback.

>>> require("hba-score", "score", "json")   # present: returns quietly
>>> EXTRAS["train"][:3]
('torch', 'transformers', 'peft')
"""

from __future__ import annotations

import importlib
import importlib.util

from hba_core.errors import HbaError

# extra -> the modules it installs that tools import (pyproject.toml's [project.optional-dependencies]).
EXTRAS: dict[str, tuple[str, ...]] = {
    "train": ("torch", "transformers", "peft", "safetensors", "av", "zarr"),
    "descriptors": ("zarr", "opensmile", "av", "mediapipe"),
    "transcribe": ("whisper", "av"),
    "judge": ("aiohttp",),
    "score": ("matplotlib",),  # only --plot: the metrics are hba's own numpy
    "convert": ("pyarrow",),
    "media": ("av",),
}


class MissingExtraError(HbaError):
    """A tool was run without the optional dependencies it needs."""


def require(tool: str, extra: str, *modules: str) -> None:
    """Raise :class:`MissingExtraError` naming ``extra`` unless all ``modules`` (default: the extra's) are installed.

    Only looks the modules up (``importlib.util.find_spec``): importing them here would cost a cached
    hba-judge run the whole openai SDK (~1.5 s) before it knows whether it sends a request at all.
    """
    for name in modules or EXTRAS[extra]:
        try:
            found = importlib.util.find_spec(name) is not None
            missing = name
        except ImportError as exc:  # a parent package is missing (or a finder refuses it)
            found, missing = False, getattr(exc, "name", None) or name
        if not found:
            fix = f'pip install -e ".[{extra}]" from a clone of hba'
            raise MissingExtraError(f"{tool} needs the {extra!r} extra (no module {missing}): {fix}")

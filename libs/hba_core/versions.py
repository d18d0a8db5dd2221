"""Installed versions of the packages hba's results depend on: recorded in checkpoints, stores and manifests.

>>> "hba" in package_versions(("hba",))
True
"""

from __future__ import annotations

from importlib import metadata

PACKAGES = (
    "hba",
    "torch",
    "torchvision",
    "transformers",
    "peft",
    "deepspeed",
    "accelerate",
    "openai",
    "numpy",
    "scikit-learn",
    "zarr",
    "opensmile",
    "mediapipe",
    "openai-whisper",
    "av",
    "vllm",
)


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """Installed versions of ``names``; packages that are not installed are left out."""
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found

"""hba_core: the Human Behavior Atlas toolkit's core library (registry, samples, JSONL, schemas, media).

Heavy libraries (torch, transformers, mediapipe, whisper, openai) are imported only by the
modules that need them, so scoring and judging run on a laptop without torch.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("hba")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0+source"

"""How a sample's media become model inputs: data root, frame rate, frame and pixel limits, audio limit.

One dataclass = Python API + the ``--root/--fps/--max-frames/...`` flags of hba-predict, hba-bam and
hba-sft (``hba_tools._cli.media_options``) + their help: each field's ``help`` is its flag's help text.
It imports nothing heavy, so commands can build their options without torch.

>>> MediaSettings(data_root="data").max_frames
32
>>> media_field("fps").default
2.0
"""

from __future__ import annotations

from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any


def _opt(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class MediaSettings:
    """How media become model inputs. Defaults fit the 7B Thinker at micro-batch 2 in 80 GB (bf16, LoRA,
    gradient checkpointing): <= 32 frames of <= 256x28x28 pixels is <= 4096 video tokens, plus 750 audio tokens."""

    data_root: str = _opt(".", "directory the samples' media paths are relative to")
    fps: float = _opt(2.0, "video frames per second sampled from the video")
    max_frames: int = _opt(32, "frames per video at most; longer clips get this many spread evenly (memory)")
    max_pixels: int = _opt(256 * 28 * 28, "pixels per frame at most after resizing (tokens per frame pair = /28/28)")
    min_pixels: int = _opt(16 * 28 * 28, "pixels per frame at least after resizing")
    max_audio_seconds: float = _opt(30.0, "audio is cut here and counted (the Whisper window is 30 s)")
    allow_outside_root: bool = _opt(False, "accept absolute media paths and paths leaving the data root")

    @property
    def decode_side(self) -> int:
        """Longest side frames are decoded at: enough for ``max_pixels`` at 16:9, cheaper than full size."""
        return int((self.max_pixels * 16 / 9) ** 0.5) // 2 * 2


def media_field(name: str) -> Any:
    """A dataclass field with MediaSettings' default and help for ``name``: other option dataclasses
    (``SftOptions``) hold the same setting flat without repeating its default or help."""
    source: Field[Any] = next(f for f in fields(MediaSettings) if f.name == name)
    assert source.default is not MISSING
    return field(default=source.default, metadata=dict(source.metadata))

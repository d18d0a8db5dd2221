"""Served prediction's messages: one user message per sample, its content parts in the order of the sample's
``<video>``/``<audio>``/``<image>`` tags, in vLLM's and OpenAI's forms.

Images and video frames are ``image_url`` data URLs (PNG/JPEG), video is ``video_url``
(``data:video/mp4;base64,...``), audio is ``input_audio`` (``{"data", "format": "wav"}``; other formats and
over-size wavs are re-encoded to 16 kHz mono wav, cut at ``max_audio_seconds``). A modality the server is told
it cannot take (``send``) or a part over ``max_part_mb`` is substituted as local prediction does for such a
backbone (:mod:`hba_core.model.generic`: video -> frames, audio -> transcript, or dropped) and counted per
dataset (:class:`~hba_core.substitutions.Substitutions`), never silently. No torch.
"""

from __future__ import annotations

import base64
import io
import wave
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from hba_core.errors import InputError, MediaError
from hba_core.media import SAMPLE_RATE, decode_audio, resolve_media, sample_video_frames
from hba_core.media_settings import media_field
from hba_core.samples import MODALITY_TAG
from hba_core.sources import is_cell_ref, read_cell
from hba_core.substitutions import Substitutions

MODALITIES = ("video", "audio", "image")
_OVER_CAP = " (over --max-part-mb)"


@dataclass(frozen=True)
class ServedSettings:
    """What is sent for each sample, and how the server is asked to generate."""

    data_root: str = media_field("data_root")  # the media fields' defaults are MediaSettings' (local prediction)
    send: frozenset[str] = frozenset(MODALITIES)  # modalities the server takes; the rest is substituted
    max_part_mb: float = 20.0  # base64 size of one media part; a larger part is substituted
    template: str | None = None  # "think": <think> reasoning and a \boxed{} answer (App. B.2)
    max_new_tokens: int = 64
    temperature: float = 0.0  # greedy, as local prediction
    fps: float = media_field("fps")  # frames for a video sent as images: decoded at this rate ...
    max_frames: int = media_field("max_frames")
    frames_per_video: int = 4  # ... then this many spread over the clip (as model/generic.py)
    max_audio_seconds: float = media_field("max_audio_seconds")  # a re-encoded clip is cut here, as locally
    allow_outside_root: bool = media_field("allow_outside_root")

    def generation(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "max_tokens": self.max_new_tokens}


def parse_send(text: str) -> frozenset[str]:
    """``--send video,audio,image`` -> the set; unknown names are an error listing the valid ones.

    >>> sorted(parse_send("audio, image"))
    ['audio', 'image']
    """
    names = {n.strip() for n in text.split(",") if n.strip()}
    unknown = names - set(MODALITIES)
    if unknown:
        raise InputError("--send", f"unknown modality {sorted(unknown)[0]!r}; valid: {', '.join(MODALITIES)}")
    return frozenset(names)


@cache
def think_text() -> str:
    """The think template (the file local prediction reads), read without importing torch."""
    return resources.files("hba_core.rl").joinpath("templates/think.txt").read_text(encoding="utf-8").rstrip("\n")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _read(path: Any) -> bytes:
    if is_cell_ref(str(path)):
        return read_cell(str(path))
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise MediaError(str(path), f"cannot read media ({exc.strerror or exc})") from None


def png_bytes(frame: np.ndarray) -> bytes:
    """An RGB uint8 frame (H, W, 3) as PNG, encoded with PyAV (no Pillow needed)."""
    import av

    codec = av.CodecContext.create("png", "w")
    codec.width, codec.height, codec.pix_fmt = frame.shape[1], frame.shape[0], "rgb24"
    packets = codec.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24"))
    return b"".join(bytes(p) for p in [*packets, *codec.encode(None)])


def wav_bytes(wave_f32: np.ndarray, rate: int = SAMPLE_RATE) -> bytes:
    """Mono float32 in [-1, 1] as a 16-bit PCM wav."""
    pcm = (np.clip(wave_f32, -1.0, 1.0) * 32767).round().astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.tobytes())
    return buf.getvalue()


def _image_mime(data: bytes) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    return None


def _video_mime(data: bytes) -> str:
    if data[4:8] == b"ftyp":
        return "video/mp4"
    if data.startswith(b"\x1a\x45\xdf\xa3"):
        return "video/webm"
    return "video/mp4"  # vLLM decodes the bytes whatever the label says


@dataclass
class MessageBuilder:
    """``sample -> messages`` for a served model; substitutions go to the ``subs`` passed in."""

    settings: ServedSettings = field(default_factory=ServedSettings)

    @property
    def cap(self) -> int:  # in base64 characters: what the part costs in the request
        return int(self.settings.max_part_mb * 1024 * 1024)

    def fits(self, data: bytes) -> bool:
        return 4 * ((len(data) + 2) // 3) <= self.cap

    def messages(self, sample: dict[str, Any], subs: Substitutions) -> list[dict[str, Any]]:
        s = self.settings
        problem = sample["problem"]
        if s.template == "think":
            problem = think_text().format(problem=problem)
        elif s.template is not None:
            raise InputError("--template", f"unknown template {s.template!r}; valid: think")
        media = {kind: list(sample.get(f"{kind}s") or []) for kind in MODALITIES}
        metadata = sample.get("metadata") if isinstance(sample.get("metadata"), dict) else {}
        transcript = metadata.get("transcript")
        ds = sample["dataset"]
        content: list[dict[str, Any]] = []
        position, seen = 0, dict.fromkeys(MODALITIES, 0)
        for match in MODALITY_TAG.finditer(problem):
            text = problem[position : match.start()].strip("\n")
            if text.strip():
                content.append({"type": "text", "text": text})
            position = match.end()
            kind = match.group(1)
            if seen[kind] >= len(media[kind]):
                raise InputError(sample["id"], f"more <{kind}> tags than {kind}s ({len(media[kind])})")
            path = resolve_media(s.data_root, media[kind][seen[kind]], allow_outside=s.allow_outside_root)
            seen[kind] += 1
            if kind == "video":
                content += self._video(path, ds, subs)
            elif kind == "audio":
                content += self._audio(path, ds, subs, transcript if transcript not in (None, "") else None, problem)
            else:
                content += self._image(path, ds, subs)
        rest = problem[position:].strip("\n")
        if rest.strip() or not content:
            content.append({"type": "text", "text": rest})
        if all(part["type"] == "text" for part in content):  # plain text: the form every server takes
            return [{"role": "user", "content": "\n".join(part["text"] for part in content)}]
        return [{"role": "user", "content": content}]

    def _video(self, path: Any, ds: str, subs: Substitutions) -> list[dict[str, Any]]:
        why = ""
        if "video" in self.settings.send:
            data = _read(path)
            if self.fits(data):
                return [{"type": "video_url", "video_url": {"url": f"data:{_video_mime(data)};base64,{_b64(data)}"}}]
            why = _OVER_CAP
        if "image" not in self.settings.send:
            subs.add(ds, "video->dropped" + why)
            return []
        s = self.settings
        frames = sample_video_frames(path, fps=s.fps, max_frames=s.max_frames).frames
        picks = np.linspace(0, len(frames) - 1, num=min(s.frames_per_video, len(frames))).round().astype(int)
        parts = []
        for i in picks:
            data = png_bytes(frames[i])
            if self.fits(data):
                parts.append({"type": "image_url", "image_url": {"url": f"data:image/png;base64,{_b64(data)}"}})
            else:
                subs.add(ds, "frame->dropped" + _OVER_CAP)
        subs.add(ds, "video->frames" + why)
        return parts

    def _audio(
        self, path: Any, ds: str, subs: Substitutions, transcript: str | None, problem: str
    ) -> list[dict[str, Any]]:
        why = ""
        if "audio" in self.settings.send:
            data = _read(path)
            if not (data[:4] == b"RIFF" and data[8:12] == b"WAVE" and self.fits(data)):
                # another format, or a wav too large: 16 kHz mono, cut as local prediction cuts it
                data = wav_bytes(decode_audio(path, max_seconds=self.settings.max_audio_seconds))
            if self.fits(data):
                return [{"type": "input_audio", "input_audio": {"data": _b64(data), "format": "wav"}}]
            why = _OVER_CAP
        if transcript and transcript in problem:
            subs.add(ds, "audio->transcript" + why)  # the prompt carries it already
            return []
        if transcript:
            subs.add(ds, "audio->transcript" + why)
            return [{"type": "text", "text": f"Transcript: {transcript}"}]
        subs.add(ds, "audio->dropped" + why)
        return []

    def _image(self, path: Any, ds: str, subs: Substitutions) -> list[dict[str, Any]]:
        if "image" not in self.settings.send:
            subs.add(ds, "image->dropped")
            return []
        data = _read(path)
        mime = _image_mime(data)
        if mime is None:  # another format: its first frame as PNG
            data, mime = png_bytes(sample_video_frames(path, max_frames=1).frames[0]), "image/png"
        if not self.fits(data):
            subs.add(ds, "image->dropped" + _OVER_CAP)
            return []
        return [{"type": "image_url", "image_url": {"url": f"data:{mime};base64,{_b64(data)}"}}]

"""Media: resolve sample paths safely under a data root, decode audio and sample video frames with PyAV.

No ffmpeg binary is needed: PyAV carries its own libraries. Audio comes back as 16 kHz mono
float32 (the rate Whisper, OpenSMILE and Qwen2.5-Omni's feature extractor expect); video as RGB
uint8 frames sampled at a fixed rate.

>>> resolve_media("/data", "cremad/1001_DFA_ANG_XX.wav")
PosixPath('/data/cremad/1001_DFA_ANG_XX.wav')
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hba_core.errors import MediaError

SAMPLE_RATE = 16_000


def resolve_media(root: str | os.PathLike[str], relative: str, *, allow_outside: bool = False) -> Path:
    """Join a sample's media path to the data root, refusing paths that escape it.

    Absolute paths and ``..`` that leave ``root`` (also through symlinks) raise :class:`MediaError`
    unless ``allow_outside`` is set - sample files come from other people.
    """
    root_path = Path(root)
    candidate = Path(relative)
    if candidate.is_absolute():
        if not allow_outside:
            raise MediaError(
                relative,
                f"absolute media path is outside the data root {root}; "
                "use paths relative to the root (or allow paths outside it explicitly)",
            )
        return candidate
    joined = root_path / candidate
    if not allow_outside:
        real_root = root_path.resolve()
        real = joined.resolve()
        if real != real_root and real_root not in real.parents:
            raise MediaError(
                relative,
                f"media path escapes the data root {root}; "
                "use paths relative to the root (or allow paths outside it explicitly)",
            )
    return joined


def _open(path: Path):
    import av

    if not path.exists():
        raise MediaError(str(path), "media file not found")
    try:
        return av.open(str(path))
    except (av.error.FFmpegError, OSError) as exc:
        raise MediaError(str(path), f"cannot open media ({exc})") from None


def decode_audio(
    path: str | os.PathLike[str], sample_rate: int = SAMPLE_RATE, max_seconds: float | None = None
) -> np.ndarray:
    """Decode the first audio stream of any file PyAV reads (wav, flac, mp3, mp4, avi, ...).

    Returns mono float32 in [-1, 1] at ``sample_rate``, shape ``(n_samples,)``. A file with no
    audio stream or that fails to decode raises :class:`MediaError`.
    """
    import av

    p = Path(path)
    with _open(p) as container:
        if not container.streams.audio:
            raise MediaError(str(p), "no audio stream")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks: list[np.ndarray] = []
        total = 0
        limit = None if max_seconds is None else int(max_seconds * sample_rate)
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunk = out.to_ndarray().reshape(-1)
                    chunks.append(chunk)
                    total += chunk.size
                if limit is not None and total >= limit:
                    break
            else:
                for out in resampler.resample(None):
                    chunks.append(out.to_ndarray().reshape(-1))
        except av.error.FFmpegError as exc:
            raise MediaError(str(p), f"audio decode failed ({exc})") from None
    audio = np.concatenate(chunks).astype(np.float32, copy=False) if chunks else np.zeros(0, np.float32)
    return audio if limit is None else audio[:limit]


@dataclass(frozen=True)
class VideoFrames:
    frames: np.ndarray  # (T, H, W, 3) uint8 RGB
    timestamps: np.ndarray  # (T,) seconds
    source_fps: float


def sample_video_frames(
    path: str | os.PathLike[str], fps: float = 2.0, max_frames: int | None = None, max_side: int | None = None
) -> VideoFrames:
    """Frames at ``fps`` per second (the frame shown at each instant k/fps), RGB uint8.

    ``max_frames`` spreads that many frames evenly over the clip instead when the clip is longer;
    ``max_side`` downsizes so the longer side is at most that many pixels (aspect kept, even sizes).
    """
    import av

    if fps <= 0:
        raise ValueError("fps must be positive")
    p = Path(path)
    with _open(p) as container:
        if not container.streams.video:
            raise MediaError(str(p), "no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        base_fps = float(stream.average_rate or stream.guessed_rate or 25)
        duration = _duration_seconds(container, stream)
        wanted = np.arange(0.0, max(duration, 1e-6), 1.0 / fps)
        if max_frames is not None and wanted.size > max_frames:
            wanted = np.linspace(0.0, duration, max_frames, endpoint=False)
        frames: list[np.ndarray] = []
        stamps: list[float] = []
        next_i = 0
        previous: list = [None, None]  # [av frame, its RGB array once converted]: only kept frames are converted

        def rgb(entry: list) -> np.ndarray:
            if entry[1] is None:
                entry[1] = _to_rgb(entry[0], max_side)
            return entry[1]

        try:
            for frame in container.decode(stream):
                t = float(frame.time) if frame.time is not None else len(stamps) / base_fps
                while next_i < wanted.size and wanted[next_i] < t - 0.5 / base_fps and previous[0] is not None:
                    frames.append(rgb(previous))
                    stamps.append(float(wanted[next_i]))
                    next_i += 1
                if next_i >= wanted.size:
                    break
                current = [frame, None]
                if wanted[next_i] <= t + 0.5 / base_fps:
                    frames.append(rgb(current))
                    stamps.append(float(wanted[next_i]))
                    next_i += 1
                previous = current
        except av.error.FFmpegError as exc:
            raise MediaError(str(p), f"video decode failed ({exc})") from None
    if not frames:
        raise MediaError(str(p), "no decodable video frames")
    return VideoFrames(np.stack(frames), np.asarray(stamps), base_fps)


def _to_rgb(frame, max_side: int | None) -> np.ndarray:  # noqa: ANN001 - av.VideoFrame
    if max_side is None or max(frame.width, frame.height) <= max_side:
        return frame.to_ndarray(format="rgb24")
    scale = max_side / max(frame.width, frame.height)
    width = max(2, int(frame.width * scale) // 2 * 2)
    height = max(2, int(frame.height * scale) // 2 * 2)
    return frame.to_ndarray(format="rgb24", width=width, height=height)


def _duration_seconds(container, stream) -> float:  # noqa: ANN001
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000
    if stream.frames:
        return stream.frames / float(stream.average_rate or 25)
    return 0.0


def media_duration(path: str | os.PathLike[str]) -> float:
    """Duration in seconds from the container header (no decoding)."""
    p = Path(path)
    with _open(p) as container:
        streams = list(container.streams.video) + list(container.streams.audio)
        if not streams:
            raise MediaError(str(p), "no audio or video stream")
        return max(_duration_seconds(container, s) for s in streams)

"""Media: resolve sample paths safely under a data root, decode audio and sample video frames with PyAV.

No ffmpeg binary is needed: PyAV carries its own libraries. Audio comes back as 16 kHz mono
float32 (the rate Whisper, OpenSMILE and Qwen2.5-Omni's feature extractor expect); video as RGB
uint8 frames sampled at a fixed rate.

>>> resolve_media("/data", "cremad/1001_DFA_ANG_XX.wav")
PosixPath('/data/cremad/1001_DFA_ANG_XX.wav')
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hba_core.errors import MediaError
from hba_core.sources import cell_label, check_cell_ref, is_cell_ref, read_cell

SAMPLE_RATE = 16_000


def resolve_media(root: str | os.PathLike[str], relative: str, *, allow_outside: bool = False) -> Path:
    """Join a sample's media path to the data root, refusing paths that escape it.

    Absolute paths and ``..`` that leave ``root`` (also through symlinks) raise :class:`MediaError`
    unless ``allow_outside`` is set - sample files come from other people. A Parquet cell reference
    (``parquet://...``, :mod:`hba_core.sources`) is checked the same way (its shard read as samples here,
    or under ``root``) and returned unchanged: the decoders here read its bytes from the shard.
    """
    if is_cell_ref(relative):
        return check_cell_ref(relative, root, allow_outside=allow_outside)  # type: ignore[return-value]
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


# Demuxers that read only the bytes they are given. Playlists (HLS), concat lists, image sequences and the like
# make FFmpeg open further files named inside them - possibly outside the data root - so they are not listed.
# Names are FFmpeg demuxer names (``mov`` covers mp4/m4a/3gp, ``matroska`` covers webm).
ALLOWED_CONTAINERS: tuple[str, ...] = ("mov", "mp4", "matroska", "webm", "wav", "flac", "mp3", "ogg", "avi", "flv")
_CONTAINER_OPTIONS = {"format_whitelist": ",".join(ALLOWED_CONTAINERS), "protocol_whitelist": "file"}
_REFERENCING_HEADS = {
    b"#EXTM3U": "an HLS playlist",
    b"ffconcat": "an FFmpeg concat list",
}


def open_media(path: str | os.PathLike[str] | bytes):  # noqa: ANN201 - av.container.InputContainer
    """Open a media file for decoding, confined to the file itself: the only way hba opens media.

    Only the demuxers in :data:`ALLOWED_CONTAINERS` and FFmpeg's ``file`` protocol are allowed, so a
    playlist or concat list inside the data root cannot make the decoder read files outside it (a
    path check alone does not stop that). Anything else raises :class:`MediaError` with the reason.

    ``path`` may also be the media's bytes, or a Parquet cell reference (:mod:`hba_core.sources`) whose
    bytes are read from the shard: PyAV decodes them from memory under the same allow-list.
    """
    import av

    if isinstance(path, bytes | bytearray) or is_cell_ref(path):
        name = "<bytes>" if isinstance(path, bytes | bytearray) else cell_label(str(path))
        return _open_bytes(name, bytes(path) if isinstance(path, bytes | bytearray) else read_cell(str(path)))
    p = Path(path)
    if not p.exists():
        raise MediaError(_name(p), "media file not found")
    if p.is_dir():
        raise MediaError(_name(p), "is a directory, not a media file")
    try:
        container = av.open(str(p), container_options=_CONTAINER_OPTIONS)
    except (av.error.FFmpegError, OSError) as exc:
        raise MediaError(_name(p), _refusal(p, exc)) from None
    if not set(container.format.name.split(",")) & set(ALLOWED_CONTAINERS):  # belt and braces
        container.close()
        raise MediaError(_name(p), f"container {container.format.name!r} is not allowed; {_allowed_text()}")
    if container.format.name == "wav":
        try:
            _check_wav_size(p)
        except MediaError:
            container.close()
            raise
    return container


def _open_bytes(name: str, data: bytes):  # -> av.container.InputContainer
    """``open_media`` for bytes in memory: the same demuxer allow-list, the same refusals."""
    import av

    head = data[:64].lstrip(b"\xef\xbb\xbf \t\r\n")
    for magic, kind in _REFERENCING_HEADS.items():
        if head.startswith(magic):
            raise MediaError(name, f"{kind}, which makes the decoder read the files it names: refused")
    try:
        container = av.open(io.BytesIO(data), container_options=_CONTAINER_OPTIONS)
    except (av.error.FFmpegError, OSError) as exc:
        raise MediaError(
            name, f"cannot open media: not readable in an allowed container ({exc}); {_allowed_text()}"
        ) from None
    if not set(container.format.name.split(",")) & set(ALLOWED_CONTAINERS):
        container.close()
        raise MediaError(name, f"container {container.format.name!r} is not allowed; {_allowed_text()}")
    if container.format.name == "wav":
        try:
            _check_wav_stream(name, io.BytesIO(data), len(data))
        except MediaError:
            container.close()
            raise
    return container


def _media_source(path: str | os.PathLike[str] | bytes) -> Path | str | bytes:
    """What the decoders hand to :func:`open_media`: a Path, or a cell reference / bytes kept as they are."""
    if isinstance(path, bytes | bytearray):
        return bytes(path)
    return str(path) if is_cell_ref(path) else Path(path)


def _name(p: Path | str | bytes) -> str:
    """How messages name media: the path, ``shard.parquet:<row> <column>[i]`` for a cell, or ``<bytes>``."""
    if isinstance(p, bytes | bytearray):
        return "<bytes>"
    return cell_label(p) if is_cell_ref(p) else str(p)


def _allowed_text() -> str:
    return "allowed: mp4/mov, mkv/webm, wav, flac, mp3, ogg, avi, flv"


def _refusal(p: Path, exc: Exception) -> str:
    try:
        with open(p, "rb") as fh:
            head = fh.read(64).lstrip(b"\xef\xbb\xbf \t\r\n")
    except OSError:
        head = b""
    for magic, kind in _REFERENCING_HEADS.items():
        if head.startswith(magic):
            return f"{kind}, which makes the decoder read the files it names (maybe outside the data root): refused"
    return f"cannot open media: not a readable file in an allowed container ({exc}); {_allowed_text()}"


def _check_wav_size(p: Path) -> None:
    """A WAV whose ``data`` chunk states more bytes than the file holds was cut off (FFmpeg silently
    shortens its duration to the file size, so the decoded-vs-stated check below cannot see it)."""
    with open(p, "rb") as fh:
        _check_wav_stream(str(p), fh, p.stat().st_size)


def _check_wav_stream(name: str, fh, size: int) -> None:  # noqa: ANN001 - a seekable binary stream
    head = fh.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return
    offset = 12
    while offset + 8 <= size:
        fh.seek(offset)
        chunk = fh.read(8)
        stated = int.from_bytes(chunk[4:8], "little")
        if chunk[:4] == b"data":
            held = size - offset - 8
            if stated not in (0, 0xFFFFFFFF) and held < stated:  # 0 / max: streamed WAV, size unknown
                raise MediaError(name, f"truncated: its header states {stated} bytes of audio, the file holds {held}")
            return
        offset += 8 + stated + (stated & 1)


def _short_decode(p: Path | str | bytes, decoded_s: float, stated_s: float) -> None:
    """Raise when far less was decoded than the header promises: a truncated file must not pass as a short clip."""
    if stated_s > 0 and decoded_s < 0.9 * stated_s - 0.1:
        raise MediaError(
            _name(p), f"truncated or corrupt: decoded {decoded_s:.2f} s of the {stated_s:.2f} s its header states"
        )


def decode_audio(
    path: str | os.PathLike[str], sample_rate: int = SAMPLE_RATE, max_seconds: float | None = None
) -> np.ndarray:
    """Decode the first audio stream of any file PyAV reads (wav, flac, mp3, mp4, avi, ...).

    Returns mono float32 in [-1, 1] at ``sample_rate``, shape ``(n_samples,)``. A file with no
    audio stream or that fails to decode raises :class:`MediaError`.
    """
    import av

    p = _media_source(path)
    with open_media(p) as container:
        if not container.streams.audio:
            raise MediaError(_name(p), "no audio stream")
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
                    chunk = out.to_ndarray().reshape(-1)
                    chunks.append(chunk)
                    total += chunk.size
                _short_decode(p, total / sample_rate, _duration_seconds(container, stream))
        except av.error.FFmpegError as exc:
            raise MediaError(_name(p), f"audio decode failed ({exc})") from None
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
    p = _media_source(path)
    with open_media(p) as container:
        if not container.streams.video:
            raise MediaError(_name(p), "no video stream")
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
            else:  # the stream ended before the last wanted instant: was all of it there?
                if previous[0] is not None:
                    _short_decode(p, t + 1.0 / base_fps, duration)
        except av.error.FFmpegError as exc:
            raise MediaError(_name(p), f"video decode failed ({exc})") from None
    if not frames:
        raise MediaError(_name(p), "no decodable video frames")
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
    p = _media_source(path)
    with open_media(p) as container:
        streams = list(container.streams.video) + list(container.streams.audio)
        if not streams:
            raise MediaError(_name(p), "no audio or video stream")
        return max(_duration_seconds(container, s) for s in streams)

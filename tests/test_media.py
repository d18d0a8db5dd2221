import numpy as np
import pytest

from hba_core.errors import MediaError
from hba_core.media import decode_audio, media_duration, resolve_media, sample_video_frames


def test_resolve_media_refuses_escapes(tmp_path):
    root = tmp_path / "data"
    (root / "a").mkdir(parents=True)
    (tmp_path / "secret.wav").write_bytes(b"")
    assert resolve_media(root, "a/x.wav") == root / "a" / "x.wav"
    with pytest.raises(MediaError, match="escapes the data root"):
        resolve_media(root, "../secret.wav")
    with pytest.raises(MediaError, match="escapes the data root"):
        resolve_media(root, "a/../../secret.wav")
    with pytest.raises(MediaError, match="absolute media path"):
        resolve_media(root, str(tmp_path / "secret.wav"))
    (root / "link").symlink_to(tmp_path)
    with pytest.raises(MediaError, match="escapes"):
        resolve_media(root, "link/secret.wav")
    assert resolve_media(root, "../secret.wav", allow_outside=True) == root / ".." / "secret.wav"


def test_decode_wav_and_mp4_audio_track(fixture_data):
    wav = decode_audio(fixture_data.data / "audio/clip0.wav")
    assert wav.dtype == np.float32 and wav.ndim == 1
    assert abs(wav.size - 1.5 * 16000) <= 1
    track = decode_audio(fixture_data.data / "video/clip0.mp4")
    assert abs(track.size / 16000 - 1.5) < 0.1  # AAC adds a little priming/padding
    assert 0.1 < np.abs(track).max() <= 1.0
    assert decode_audio(fixture_data.data / "video/clip0.mp4", max_seconds=0.5).size == 8000


def test_resample_to_16k(tmp_path):
    from hba_core.fixtures.media import voiced_signal, write_wav

    path = write_wav(tmp_path / "a44.wav", voiced_signal(1.0, sample_rate=44_100), sample_rate=44_100)
    audio = decode_audio(path)
    assert abs(audio.size - 16000) <= 64


def test_sample_video_frames(fixture_data):
    clip = fixture_data.data / "video/clip1.mp4"  # 1.75 s at 10 fps
    v = sample_video_frames(clip, fps=2)
    assert v.frames.shape[1:] == (192, 192, 3) and v.frames.dtype == np.uint8
    assert list(v.timestamps) == [0.0, 0.5, 1.0, 1.5]
    assert not np.array_equal(v.frames[0], v.frames[-1])  # the face moves
    small = sample_video_frames(clip, fps=10, max_frames=4, max_side=96)
    assert small.frames.shape == (4, 96, 96, 3)
    assert media_duration(clip) == pytest.approx(1.75, abs=0.15)


def test_missing_and_corrupt_media(tmp_path, fixture_data):
    with pytest.raises(MediaError, match="not found"):
        decode_audio(tmp_path / "none.wav")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"definitely not a video")
    with pytest.raises(MediaError, match="cannot open media"):
        sample_video_frames(bad)
    with pytest.raises(MediaError, match="no video stream"):
        sample_video_frames(fixture_data.data / "audio/clip0.wav")

"""Media confined to the data root, and corrupt media reported, through every media tool and the collator.

Each case lies inside the root as a path, yet would make FFmpeg read outside it (an HLS playlist with a
relative or absolute segment, a concat list) or escapes through a symlinked directory, or is cut off with
an intact header. Every tool must refuse each one per sample with its reason, and still use the good clip.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from hba_core.errors import MediaError
from hba_core.jsonl import iter_jsonl, write_jsonl
from hba_core.media import decode_audio, open_media, resolve_media, sample_video_frames

av = pytest.importorskip("av")

# media key -> what the refusal must say
CASES = {
    "escape/rel.m3u8": "HLS playlist",
    "escape/abs.m3u8": "HLS playlist",
    "escape/list.ffconcat": "concat list",
    "linked/outside.wav": "escapes the data root",
    "trunc.wav": "truncated",
    "trunc.mp4": "truncated",
}
GOOD = "audio/clip0.wav"


def _segment(path) -> None:
    """A real MPEG-TS segment (mp2 audio): what an HLS playlist points at."""
    with av.open(str(path), "w", format="mpegts") as container:
        stream = container.add_stream("mp2", rate=16000)
        stream.layout = "mono"
        for _ in range(20):
            frame = av.AudioFrame.from_ndarray(
                (0.5 * np.sin(np.arange(1152) / 10))[None].astype(np.float32), format="flt", layout="mono"
            )
            frame.sample_rate = 16000
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def _faststart_copy(src, dst) -> None:
    """The clip remuxed with its header (moov) first, so a cut-off copy still opens and states the full length."""
    with av.open(str(src)) as inp, av.open(str(dst), "w", options={"movflags": "faststart"}) as out:
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams}
        for packet in inp.demux():
            if packet.dts is None:
                continue
            packet.stream = streams[packet.stream.index]
            out.mux(packet)


@pytest.fixture()
def hostile(fixture_data, tmp_path):
    """``(root, samples file)``: the cases above plus one good clip, each the audio of one CREMA-D sample."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "escape").mkdir(parents=True)
    (root / "audio").mkdir()
    outside.mkdir()
    _segment(outside / "seg0.ts")
    shutil.copy(fixture_data.data / "audio/clip0.wav", outside / "outside.wav")
    hls = "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n{}\n#EXT-X-ENDLIST\n"
    (root / "escape/rel.m3u8").write_text(hls.format("../../outside/seg0.ts"))
    (root / "escape/abs.m3u8").write_text(hls.format(outside / "seg0.ts"))
    (root / "escape/list.ffconcat").write_text(f"ffconcat version 1.0\nfile '{outside / 'seg0.ts'}'\n")
    os.symlink(outside, root / "linked")
    wav = (fixture_data.data / "audio/clip0.wav").read_bytes()
    (root / "trunc.wav").write_bytes(wav[: len(wav) * 4 // 10])
    _faststart_copy(fixture_data.data / "video/clip0.mp4", tmp_path / "fast.mp4")
    mp4 = (tmp_path / "fast.mp4").read_bytes()
    (root / "trunc.mp4").write_bytes(mp4[: len(mp4) // 2])
    shutil.copy(fixture_data.data / "audio/clip0.wav", root / GOOD)
    rows = [
        {"id": f"s{i}", "dataset": "cremad", "problem": "<audio>\nWhat emotion?", "answer": "sad", "audios": [key]}
        for i, key in enumerate([*CASES, GOOD])
    ]
    write_jsonl(tmp_path / "samples.jsonl", rows)
    return root, tmp_path / "samples.jsonl"


def test_the_playlist_really_reads_outside_without_the_allow_list(hostile):
    """The hazard is real: plain PyAV follows the playlist to the segment outside the root."""
    root, _ = hostile
    with av.open(str(root / "escape/rel.m3u8")) as container:
        assert container.format.name == "hls"
        assert sum(1 for _ in container.decode(audio=0)) == 20


@pytest.mark.parametrize("key", list(CASES))
def test_every_case_is_refused_with_its_reason(hostile, key):
    root, _ = hostile
    with pytest.raises(MediaError, match=CASES[key]):
        decode_audio(resolve_media(root, key))
    assert decode_audio(resolve_media(root, GOOD)).size == 24000


def test_truncated_video_is_reported_and_an_intact_one_is_not(hostile, fixture_data, tmp_path):
    root, _ = hostile
    with pytest.raises(MediaError, match=r"truncated or corrupt: decoded 0\.\d+ s of the 1\.\d+ s"):
        sample_video_frames(root / "trunc.mp4", fps=4)
    assert sample_video_frames(tmp_path / "fast.mp4", fps=4).frames.shape[0] == 6
    assert sample_video_frames(fixture_data.data / "video/clip0.mp4", fps=4).frames.shape[0] == 6


def test_bytes_go_through_the_same_allow_list(hostile):
    root, _ = hostile
    with pytest.raises(MediaError, match="HLS playlist"):
        open_media((root / "escape/abs.m3u8").read_bytes())
    with pytest.raises(MediaError, match="not readable in an allowed container"):
        open_media((root.parent / "outside/seg0.ts").read_bytes())  # MPEG-TS is not on the list


def test_descriptors_extract_refuses_each_case_and_extracts_the_good_clip(hostile, tmp_path):
    pytest.importorskip("opensmile")
    from hba_tools.descriptors import main as cli

    root, samples = hostile
    args = ["extract", "--samples", str(samples), "--root", str(root), "--streams", "audio"]
    result = CliRunner().invoke(cli, [*args, "--store", str(tmp_path / "d.zarr")])
    assert result.exit_code == 0, result.output  # media errors are reported, not fatal (see --strict)
    # the symlinked path is refused before extraction; the other five fail to decode
    assert "7 media: 6 extracted" in result.stderr and "6 errors" in result.stderr
    for key, reason in CASES.items():
        assert any(key in line and reason in line for line in result.stderr.splitlines()), key
    strict = CliRunner().invoke(cli, [*args, "--store", str(tmp_path / "s.zarr"), "--strict"])
    assert strict.exit_code == 1 and "6 errors" in strict.stderr


def test_transcribe_refuses_each_case_and_transcribes_the_good_clip(fixtures, hostile, tmp_path):
    pytest.importorskip("whisper")
    from hba_core.transcribe import transcribe_samples

    root, samples = hostile
    summary = transcribe_samples(samples, root, tmp_path / "out.jsonl", model=str(fixtures.whisper))
    reasons = dict(summary.errors)
    assert set(reasons) == set(CASES)
    for key, reason in CASES.items():
        assert reason in reasons[key], key
    out = [row for _, row in iter_jsonl(tmp_path / "out.jsonl")]
    assert len(out) == 7 and summary.transcribed == 1  # nothing dropped; only the good clip transcribed
    assert "transcript_source" in out[-1]["metadata"]


def test_the_collator_refuses_each_case(hostile):
    """Training (hba-sft, hba-bam, hba-grpo) and hba-predict decode media through prepare_sample."""
    pytest.importorskip("torch")
    from hba_core.model.collate import MediaSettings, prepare_sample

    root, samples = hostile
    settings = MediaSettings(data_root=str(root))
    for _, sample in iter_jsonl(samples):
        key = sample["audios"][0]
        if key == GOOD:
            continue
        with pytest.raises(MediaError, match=CASES[key]) as caught:
            prepare_sample(sample, processor=None, settings=settings, with_target=False)
        assert caught.value.where == sample["id"]  # reported per sample

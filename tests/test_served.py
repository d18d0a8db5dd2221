"""Served prediction (hba-predict --endpoint) against the real loopback server of tests/openai_server.py:
media parts arrive as sent, 429/500 are retried, a cached re-run sends nothing, the key is written nowhere,
substitutions are reported, and a killed run resumes with no duplicates."""

from __future__ import annotations

import base64
import io
import os
import signal
import subprocess
import sys
import time
import wave
from pathlib import Path

import av
import numpy as np
import orjson
import pytest
from click.testing import CliRunner

from hba_core import schemas
from hba_core.chat_client import ClientSettings
from hba_core.jsonl import write_jsonl
from hba_core.served import ServedServerError, ServedSettings, parse_send, predict_served
from hba_tools.predict import main
from openai_server import FakeOpenAI
from recipe_runs import fake_servers, run_table4

KEY = "sk-served-SECRET-0123456789abcdef"
TRANSCRIPT = "I am so happy today."


def _video(path: Path) -> None:
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=6)
        s.width, s.height, s.pix_fmt = 32, 32, "yuv420p"
        for i in range(6):
            for p in s.encode(av.VideoFrame.from_ndarray(np.full((32, 32, 3), i * 30, np.uint8), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def _wav(path: Path, rate: int = 16000) -> None:
    t = np.arange(rate) / rate
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((np.sin(2 * np.pi * 220 * t) * 8000).astype("<i2").tobytes())


def _flac(path: Path) -> None:
    with av.open(str(path), "w") as c:
        s = c.add_stream("flac", rate=22050, layout="mono")
        x = (np.sin(2 * np.pi * 440 * np.arange(22050) / 22050) * 10000).astype(np.int16)[None]
        frame = av.AudioFrame.from_ndarray(x, format="s16", layout="mono")
        frame.sample_rate, frame.pts = 22050, 0
        for p in s.encode(frame):
            c.mux(p)
        for p in s.encode():
            c.mux(p)


def _png(path: Path) -> None:
    from hba_core.served_messages import png_bytes

    path.write_bytes(png_bytes(np.full((16, 24, 3), 90, np.uint8)))


def _sample(i: int, problem: str, dataset: str = "mosei_senti", **media: list[str]) -> dict:
    return {
        "id": f"s{i}",
        "dataset": dataset,
        "problem": problem,
        "answer": "neutral",
        "videos": media.get("videos", []),
        "audios": media.get("audios", []),
        "images": media.get("images", []),
        "metadata": {"transcript": TRANSCRIPT},
    }


@pytest.fixture
def data(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    root.mkdir()
    _video(root / "v.mp4")
    _wav(root / "a.wav")
    _flac(root / "a.flac")
    _png(root / "i.png")
    samples = [
        _sample(0, "<video>\n<audio>\nWhat is the sentiment?", videos=["v.mp4"], audios=["a.wav"]),
        _sample(1, "<audio>\nWhat is the emotion?", "cremad", audios=["a.flac"]),
        _sample(2, "<image>\nWhat is shown?", images=["i.png"]),
        _sample(3, "A text-only question RETRY_ME?"),
    ]
    write_jsonl(tmp_path / "samples.jsonl", samples)
    return root


def _run(tmp: Path, url: str, out: str = "p.jsonl", **served) -> dict:
    settings = ClientSettings(base_url=url, model="tiny-served", concurrency=4, backoff_s=0.01, timeout_s=10)
    return predict_served(
        tmp / "samples.jsonl",
        tmp / out,
        model="tiny-served",
        client=settings,
        api_key=KEY,
        served=ServedSettings(data_root=str(tmp / "data"), **served),
        cache_path=tmp / "cache.sqlite",
    )


def _rows(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def _parts(server: FakeOpenAI, marker: str) -> list[dict]:
    for body in server.requests:
        content = body["messages"][-1]["content"]
        texts = content if isinstance(content, str) else " ".join(p.get("text", "") for p in content)
        if marker in texts:
            return content if isinstance(content, list) else [{"type": "text", "text": content}]
    raise AssertionError(f"no request with {marker!r}")


def _data_url_bytes(url: str, mime: str) -> bytes:
    head, payload = url.split(",", 1)
    assert head == f"data:{mime};base64"
    return base64.b64decode(payload)


def test_media_parts_arrive_as_the_original_bytes_or_a_valid_wav(tmp_path, data):
    with FakeOpenAI(predict=True) as server:
        summary = _run(tmp_path, server.base_url)
    assert summary["written"] == 4 and summary["failed"] == 0 and summary["substitutions"] == {}
    video = _parts(server, "sentiment")
    assert [p["type"] for p in video] == ["video_url", "input_audio", "text"]
    assert _data_url_bytes(video[0]["video_url"]["url"], "video/mp4") == (data / "v.mp4").read_bytes()
    assert video[1]["input_audio"]["format"] == "wav"
    assert base64.b64decode(video[1]["input_audio"]["data"]) == (data / "a.wav").read_bytes()
    flac = _parts(server, "emotion")
    with wave.open(io.BytesIO(base64.b64decode(flac[0]["input_audio"]["data"]))) as wav:  # re-encoded
        assert (wav.getframerate(), wav.getnchannels(), wav.getnframes()) == (16000, 1, 16000)
    image = _parts(server, "shown")
    assert _data_url_bytes(image[0]["image_url"]["url"], "image/png") == (data / "i.png").read_bytes()
    assert isinstance(server.requests[0]["temperature"], float) and server.requests[0]["temperature"] == 0.0
    rows = _rows(tmp_path / "p.jsonl")
    assert sorted(r["id"] for r in rows) == ["s0", "s1", "s2", "s3"]
    for row in rows:
        assert schemas.errors(row, "prediction") == []
        assert row["model"] == "tiny-served" and row["mode"] == "generate"
    assert {r["id"]: r["prediction"] for r in rows}["s0"] == "received video_url,input_audio,text"


def test_the_row_check_still_refuses_bad_rows_once_a_good_row_of_their_fields_passed():
    from hba_core.served import checked_row, generated_row

    good = generated_row("a", "mosei_senti", "m", "neutral", None)  # its shape is now known to be valid
    assert checked_row(dict(good)) == good
    for bad in ({"id": ""}, {"mode": "sample"}, {"prediction": 3}, {"model": None}):
        with pytest.raises(ValueError, match="does not match its schema"):
            checked_row({**good, **bad})
    with pytest.raises(ValueError, match="does not match its schema"):  # probs rows are always checked
        checked_row({**good, "mode": "heads", "probs": {"neutral": 1.5}})


def test_429_with_retry_after_and_500_are_retried(tmp_path, data):
    with FakeOpenAI(predict=True, retry_after="0", script={"RETRY_ME": ["429", "500"]}) as server:
        summary = _run(tmp_path, server.base_url)
    assert summary["failed"] == 0 and summary["written"] == 4
    assert server.actions["429"] == 1 and server.actions["500"] == 1
    assert summary["requests"] == 6  # 4 samples + 2 retries


def test_a_cached_rerun_sends_no_request_even_to_another_url(tmp_path, data):
    with FakeOpenAI(predict=True) as server:
        _run(tmp_path, server.base_url, "first.jsonl")
        sent = len(server.requests)
    # the server is gone: every reply must come from the cache (the URL is not part of the key)
    again = _run(tmp_path, "http://127.0.0.1:9/v1", "second.jsonl")
    assert sent == 4 and again["requests"] == 0 and again["cached"] == 4
    by_id = {r["id"]: r for r in _rows(tmp_path / "first.jsonl")}
    assert {r["id"]: r for r in _rows(tmp_path / "second.jsonl")} == by_id


def test_the_key_is_written_nowhere_and_scrubbed_from_errors(tmp_path, data, monkeypatch):
    monkeypatch.setenv("HBA_TEST_KEY", KEY)
    with FakeOpenAI(predict=True) as server:
        args = ["--endpoint", server.base_url, "-m", "tiny-served", "-s", str(tmp_path / "samples.jsonl")]
        args += ["--root", str(data), "-o", str(tmp_path / "p.jsonl"), "--cache", str(tmp_path / "c.sqlite")]
        result = CliRunner().invoke(main, [*args, "--api-key-env", "HBA_TEST_KEY"])
    assert result.exit_code == 0, result.output
    assert server.auth[0] == f"Bearer {KEY}"  # it was sent ...
    written = [result.output, result.stderr] + [
        p.read_bytes().decode("latin-1") for p in tmp_path.glob("*") if p.is_file()
    ]
    assert all(KEY not in text and KEY[8:24] not in text for text in written)  # ... and kept nowhere
    with FakeOpenAI(predict=True, default="401") as server, pytest.raises(ServedServerError) as err:
        _run(tmp_path, server.base_url, "bad.jsonl")
    assert "authentication failed" in str(err.value) and KEY not in str(err.value) and KEY[3:20] not in str(err.value)


def test_substitutions_are_counted_per_dataset_and_reported(tmp_path, data):
    with FakeOpenAI(predict=True) as server:
        summary = _run(tmp_path, server.base_url, send=parse_send("image"))
        assert summary["substitutions"] == {
            "cremad": {"audio->transcript": 1},
            "mosei_senti": {"audio->transcript": 1, "video->frames": 1},
        }
        # text only: one plain string, the transcript added before the question as the tag stood there
        assert _parts(server, "emotion") == [
            {"type": "text", "text": f"Transcript: {TRANSCRIPT}\nWhat is the emotion?"}
        ]
        capped = _run(tmp_path, server.base_url, "capped.jsonl", max_part_mb=0.0001, send=parse_send("video,audio"))
    assert capped["substitutions"] == {
        "cremad": {"audio->transcript (over --max-part-mb)": 1},
        "mosei_senti": {
            "audio->transcript (over --max-part-mb)": 1,
            "image->dropped": 1,
            "video->dropped (over --max-part-mb)": 1,
        },
    }
    with FakeOpenAI(predict=True) as server:
        args = ["--endpoint", server.base_url, "-m", "m", "-s", str(tmp_path / "samples.jsonl"), "--root", str(data)]
        result = CliRunner().invoke(main, [*args, "-o", str(tmp_path / "cli.jsonl"), "--no-cache", "--send", "image"])
    assert result.exit_code == 0, result.output
    assert "  cremad: 1 audio->transcript" in result.stderr


def test_unknown_send_name_is_one_line_error(tmp_path, data):
    result = CliRunner().invoke(
        main,
        [
            "--endpoint",
            "http://127.0.0.1:9/v1",
            "-m",
            "m",
            "-s",
            str(tmp_path / "samples.jsonl"),
            "-o",
            "-",
            "--send",
            "vidoe",
        ],
    )
    assert result.exit_code == 1
    assert "unknown modality 'vidoe'; valid: video, audio, image" in result.stderr


def test_served_cli_imports_no_torch(tmp_path, data):
    code = (  # torch, transformers and peft made unimportable, as in a [judge,media] install
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in {'torch', 'transformers', 'peft'}:\n"
        "            raise ModuleNotFoundError(name, name=name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from hba_tools.predict import main\n"
        "try:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules\nprint('no torch')\n"
    )
    with FakeOpenAI(predict=True) as server:
        args = ["--endpoint", server.base_url, "-m", "m", "-s", str(tmp_path / "samples.jsonl"), "--root", str(data)]
        done = subprocess.run(
            [sys.executable, "-c", code, *args, "-o", str(tmp_path / "p.jsonl"), "--no-cache"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "no torch"


def test_a_killed_run_resumes_with_no_duplicates(tmp_path):
    samples = [_sample(i, f"Text question number {i}?") for i in range(30)]
    write_jsonl(tmp_path / "samples.jsonl", samples)
    out = tmp_path / "p.jsonl"
    env = {**os.environ, "HBA_CACHE_DIR": str(tmp_path / "cache")}
    with FakeOpenAI(predict=True, latency=0.05) as server:
        args = [sys.executable, "-m", "hba_tools.predict", "--endpoint", server.base_url, "-m", "m"]
        args += ["-s", str(tmp_path / "samples.jsonl"), "-o", str(out), "--concurrency", "1"]
        proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60  # a guard against a hang, not a timing assertion
            while (not out.exists() or out.read_bytes().count(b"\n") < 3) and time.monotonic() < deadline:
                time.sleep(0.02)
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.wait(timeout=30)
        first = out.read_bytes().count(b"\n")
        assert 3 <= first < 30
        sent_before = len(server.requests)
        done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    ids = [r["id"] for r in _rows(out)]
    assert sorted(ids) == sorted(f"s{i}" for i in range(30)) and len(ids) == len(set(ids))
    # rows already written are not asked again; replies cached but not yet written come from the cache
    assert len(server.requests) - sent_before <= 30 - first


REPO = Path(__file__).resolve().parents[1]
RECIPE = f"""set -euo pipefail
source {REPO}/recipes/lib.sh
source {REPO}/recipes/extra_models.sh
RECIPE=t; R=$OUT/t; mkdir -p "$R/.done"
extra_model "$SPEC"
echo "name=$EXTRA_NAME file=$EXTRA_FILE args=${{EXTRA_ARGS[*]}}"
if [[ ${{RUN:-}} == 1 ]]; then
    stage "predict-extra-$EXTRA_FILE" "$R/pred/extra-$EXTRA_FILE.jsonl" hba-predict --samples "$SAMPLES" \\
        --out "$R/pred/extra-$EXTRA_FILE.jsonl" --max-new-tokens 8 --workers 0 "${{EXTRA_ARGS[@]}}"
fi
"""


def _recipe(tmp_path: Path, spec: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-c", RECIPE],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OUT": str(tmp_path), "SPEC": spec, "HBA_CACHE_DIR": str(tmp_path / "cache"), **env},
    )


def test_recipe_extra_models_parse_local_dirs_hub_ids_and_endpoints(tmp_path):
    local = _recipe(tmp_path, "/models/tiny-vl")
    assert local.stdout.strip() == "name=tiny-vl file=tiny-vl args=--model /models/tiny-vl --mode generate"
    hub = _recipe(tmp_path, "Qwen/Qwen2.5-VL-7B-Instruct")
    assert hub.stdout.strip().startswith("name=Qwen2.5-VL-7B-Instruct file=Qwen2.5-VL-7B-Instruct ")
    served = _recipe(tmp_path, "endpoint:Qwen/Qwen2.5-VL-7B-Instruct@http://127.0.0.1:8000/v1")
    assert served.stdout.strip() == (
        "name=Qwen/Qwen2.5-VL-7B-Instruct file=Qwen_Qwen2.5-VL-7B-Instruct "
        "args=--endpoint http://127.0.0.1:8000/v1 --model Qwen/Qwen2.5-VL-7B-Instruct --mode generate"
    )
    bad = _recipe(tmp_path, "endpoint:no-url")
    assert bad.returncode == 2 and "'endpoint:no-url' is not endpoint:NAME@URL" in bad.stderr


def test_recipe_stage_predicts_an_endpoint_model_and_skips_when_done(tmp_path):
    write_jsonl(tmp_path / "samples.jsonl", [_sample(i, f"Question {i}?") for i in range(3)])
    with FakeOpenAI(predict=True) as server:
        spec = f"endpoint:served-model@{server.base_url}"
        first = _recipe(tmp_path, spec, RUN="1", SAMPLES=str(tmp_path / "samples.jsonl"))
        assert first.returncode == 0, first.stderr
        again = _recipe(tmp_path, spec, RUN="1", SAMPLES=str(tmp_path / "samples.jsonl"))
    assert "[t] skip predict-extra-served-model" in again.stderr
    rows = _rows(tmp_path / "t" / "pred" / "extra-served-model.jsonl")
    assert sorted(r["id"] for r in rows) == ["s0", "s1", "s2"] and {r["model"] for r in rows} == {"served-model"}
    assert len(server.requests) == 3


@pytest.mark.slow  # the whole mini table4 (~3.5 min); test_recipe_stage_* cover the endpoint stage fast
def test_table4_mini_with_an_endpoint_model(fixtures, tmp_path):
    with fake_servers((), ("--predict",)) as (judge, model):
        result = run_table4(tmp_path, fixtures.root, judge, EXTRA_MODELS=f"endpoint:served-vl@{model}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "served-vl" in (tmp_path / "table4" / "table.md").read_text()
    manifest = (tmp_path / "table4" / "manifest.json").read_text()
    assert "endpoint" in manifest and "sk-test" not in manifest

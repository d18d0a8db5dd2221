"""Two writers on one output: the second is refused in one line, and the first one's output is untouched.

The first writer is a real second process holding the output's lock (as a running hba-predict,
hba-judge or hba-transcribe would), so the test exercises flock across processes, not within one.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys

import pytest
from click.testing import CliRunner

from hba_core.errors import InputError
from hba_core.jsonl import ResumableWriter, iter_jsonl, output_lock, write_jsonl

REFUSAL = "another process is writing this output"
_HOLDER = (
    "import sys, time\n"
    "from hba_core.jsonl import ResumableWriter\n"
    "w = ResumableWriter(sys.argv[1])\n"  # the lock a running job holds from start to end
    "print('locked', flush=True)\n"
    "time.sleep(120)\n"
)


@contextlib.contextmanager
def held_by_another_process(path):
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        yield
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


def _no_traceback(result):
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output


def test_resumable_writer_takes_the_lock_and_gives_it_back(tmp_path):
    out = tmp_path / "out.jsonl"
    with ResumableWriter(out) as first:
        first.write([{"id": "a"}])
        with pytest.raises(InputError, match=REFUSAL):
            ResumableWriter(out)
        with pytest.raises(InputError, match=REFUSAL), output_lock(out):
            pass
    with ResumableWriter(out) as again:  # released on close: the next run resumes
        assert again.done == {"a"}


def test_a_killed_holder_releases_the_lock(tmp_path):
    out = tmp_path / "out.jsonl"
    with held_by_another_process(out), pytest.raises(InputError, match=REFUSAL):
        ResumableWriter(out)
    with ResumableWriter(out) as writer:  # the kernel drops a dead process's flock
        writer.write([{"id": "b"}])
    assert [row["id"] for _, row in iter_jsonl(out)] == ["b"]


def test_an_out_line_without_id_is_one_error_with_file_and_line(tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_bytes(b'{"id": "a"}\n{"prediction": "x"}\n')
    with pytest.raises(InputError, match=r"out\.jsonl:2: a line without a string 'id'"):
        ResumableWriter(out)
    with pytest.raises(InputError, match=":2:"):  # the failed open left no lock: the same error, not a refusal
        ResumableWriter(out)


def test_judge_refuses_a_second_writer(tmp_path):
    from hba_tools.judge import main

    rows = [{"id": "s0", "dataset": "siq2", "problem": "<video>\nWhy?", "answer": "Because."}]
    write_jsonl(tmp_path / "truth.jsonl", rows)
    write_jsonl(tmp_path / "pred.jsonl", [{"id": "s0", "prediction": "because"}])
    out = tmp_path / "judged.jsonl"
    out.write_bytes(b'{"id": "earlier"}\n')
    args = ["--truth", str(tmp_path / "truth.jsonl"), "--pred", str(tmp_path / "pred.jsonl"), "--out", str(out)]
    args += ["--base-url", "http://127.0.0.1:9/v1", "--no-cache", "-q"]
    with held_by_another_process(out):
        result = CliRunner().invoke(main, args, env={"OPENAI_API_KEY": "k"})
    _no_traceback(result)
    assert result.exit_code == 1 and REFUSAL in result.stderr and str(out) in result.stderr
    assert out.read_bytes() == b'{"id": "earlier"}\n'


def test_transcribe_refuses_a_second_writer_of_its_output_and_of_its_cache(fixtures, tmp_path):
    pytest.importorskip("whisper")
    from hba_tools.transcribe import main

    rows = [{"id": "s0", "dataset": "cremad", "problem": "<audio>\nWhat emotion?", "audios": ["audio/clip0.wav"]}]
    write_jsonl(tmp_path / "in.jsonl", rows)
    base = ["--samples", str(tmp_path / "in.jsonl"), "--root", str(fixtures.data), "--model", str(fixtures.whisper)]
    out, cache = tmp_path / "out.jsonl", tmp_path / "cache.jsonl"
    with held_by_another_process(out):
        result = CliRunner().invoke(main, [*base, "--out", str(out), "--cache", str(cache)])
    _no_traceback(result)
    assert result.exit_code == 1 and REFUSAL in result.stderr and not out.exists()
    with held_by_another_process(cache):
        result = CliRunner().invoke(main, [*base, "--out", str(tmp_path / "b.jsonl"), "--cache", str(cache)])
    _no_traceback(result)
    assert result.exit_code == 1 and REFUSAL in result.stderr and str(cache) in result.stderr


def _predict_args(fixtures, tmp_path):
    rows = [row for _, row in iter_jsonl(fixtures.atlas) if row["dataset"] == "cremad"][:2]
    write_jsonl(tmp_path / "in.jsonl", rows)
    args = ["--model", str(fixtures.omni), "--mode", "generate", "--samples", str(tmp_path / "in.jsonl")]
    return [*args, "--data-root", str(fixtures.data), "--max-new-tokens", "2", "--workers", "0"]


def test_predict_refuses_a_second_writer(fixtures, tmp_path):
    from hba_tools.predict import main

    out = tmp_path / "preds.jsonl"
    out.write_bytes(b"")
    with held_by_another_process(out):
        result = CliRunner().invoke(main, [*_predict_args(fixtures, tmp_path), "--out", str(out)])
    _no_traceback(result)
    assert result.exit_code == 1 and REFUSAL in result.stderr and out.read_bytes() == b""


def test_predict_out_dash_streams_json_lines_to_stdout(fixtures, tmp_path, monkeypatch):
    """Issue 17.7: ``--out -`` is stdout, not a file named ``-``, and the path is not echoed after the rows."""
    from hba_tools.predict import main

    monkeypatch.chdir(tmp_path)
    streamed = CliRunner().invoke(main, [*_predict_args(fixtures, tmp_path), "--out", "-"])
    assert streamed.exit_code == 0, streamed.output
    rows = [json.loads(line) for line in streamed.stdout.splitlines()]
    assert [row["id"] for row in rows] == [row["id"] for _, row in iter_jsonl(tmp_path / "in.jsonl")]
    assert not (tmp_path / "-").exists()

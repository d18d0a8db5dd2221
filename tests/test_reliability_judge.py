"""hba-judge never reports a run that judged nothing as a success, and never leaks its key.

A dead or malformed endpoint fails before the run, a run whose every request failed exits 1,
predictions that match no sample are counted, a key echoed without its prefix is scrubbed, and
``agree`` on files with nothing in common says so.
"""

from __future__ import annotations

import orjson
from click.testing import CliRunner

from hba_core.jsonl import write_jsonl
from hba_core.judge.client import redact
from hba_tools.judge import main
from openai_server import FakeOpenAI

KEY = "sk-reliability-0123456789abcdef"


def _files(tmp_path, n=3, extra_preds=()):
    rows = [
        {"id": f"s{i}", "dataset": "siq2", "problem": f"<video>\nWhy {i}?", "answer": f"Reason {i}."} for i in range(n)
    ]
    preds = [{"id": f"s{i}", "prediction": f"reason {i}"} for i in range(n)] + list(extra_preds)
    write_jsonl(tmp_path / "truth.jsonl", rows)
    write_jsonl(tmp_path / "pred.jsonl", preds)
    return ["--truth", str(tmp_path / "truth.jsonl"), "--pred", str(tmp_path / "pred.jsonl")]


def _invoke(args):
    result = CliRunner().invoke(main, [*args, "--no-cache", "-q"], env={"OPENAI_API_KEY": KEY})
    assert "Traceback" not in result.output
    return result


def test_unreachable_endpoint_fails_before_the_run(tmp_path):
    out = tmp_path / "j.jsonl"
    result = _invoke([*_files(tmp_path), "--out", str(out), "--base-url", "http://127.0.0.1:9/v1"])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: cannot reach the judge server at http://127.0.0.1:9/v1")
    assert not out.exists() and KEY not in result.output


def test_a_url_without_a_scheme_is_refused(tmp_path):
    result = _invoke([*_files(tmp_path), "--out", str(tmp_path / "j.jsonl"), "--base-url", "127.0.0.1:8000/v1"])
    assert result.exit_code == 1 and "is not an http(s) URL" in result.stderr
    assert "http://127.0.0.1:8000/v1" in result.stderr  # the message shows the fix


def test_a_run_whose_every_request_failed_exits_1(tmp_path):
    out = tmp_path / "j.jsonl"
    with FakeOpenAI(default="500") as server:
        result = _invoke([*_files(tmp_path), "--out", str(out), "--base-url", server.base_url, "--retries", "1"])
    assert result.exit_code == 1
    assert "error 3" in result.stderr and "every judgment request failed" in result.stderr
    assert "6 requests" in result.stderr  # two attempts per sample, retries counted
    rows = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert [r["status"] for r in rows] == ["error"] * 3  # the rows (and why) are still written


def test_a_partly_failed_run_still_exits_0(tmp_path):
    with FakeOpenAI(script={"reason 0": ["500"] * 5}) as server:
        args = [*_files(tmp_path), "--out", str(tmp_path / "j.jsonl"), "--base-url", server.base_url]
        result = _invoke([*args, "--retries", "0"])
    assert result.exit_code == 0 and "ok 2" in result.stderr and "error 1" in result.stderr


def test_predictions_matching_no_sample_are_counted(tmp_path):
    extra = [{"id": "nosuch-1", "prediction": "x"}, {"id": "nosuch-2", "prediction": "y"}]
    with FakeOpenAI() as server:
        args = [*_files(tmp_path, extra_preds=extra), "--out", str(tmp_path / "j.jsonl"), "--base-url", server.base_url]
        result = _invoke(args)
    assert result.exit_code == 0
    assert "2 predictions match no sample id and were not judged: 'nosuch-1', 'nosuch-2'" in result.stderr


def test_a_key_echoed_without_its_prefix_is_scrubbed_everywhere(tmp_path):
    out, cache = tmp_path / "j.jsonl", tmp_path / "cache.sqlite"
    with FakeOpenAI(default="echo_key_tail") as server:
        args = [*_files(tmp_path), "--out", str(out), "--base-url", server.base_url, "--cache", str(cache)]
        result = CliRunner().invoke(main, [*args, "-q"], env={"OPENAI_API_KEY": KEY})
    assert result.exit_code == 0, result.output
    tail = KEY.removeprefix("sk-")
    assert b"seen ***" in out.read_bytes()
    for path in tmp_path.iterdir():
        assert tail[:8].encode() not in path.read_bytes(), path
    assert tail[:8] not in result.output


def test_redact_scrubs_every_long_run_of_the_key():
    assert redact(f"a {KEY} b", KEY) == "a *** b"
    assert redact("key 0123456789abcdef!", KEY) == "key ***!"
    assert redact("reliability-0 and 89abcdef", KEY) == "*** and ***"
    assert redact("sk-relia", KEY) == "***"  # 8 characters of the key
    assert redact("sk-reli only", KEY) == "sk-reli only"  # 7 are not
    assert redact("short EMPTY", "EMPTY") == "short ***"


def test_agree_on_disjoint_files_says_there_is_nothing_to_compare(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [{"id": "x", "correct": True}])
    write_jsonl(tmp_path / "b.jsonl", [{"id": "y", "correct": False}])
    result = CliRunner().invoke(main, ["agree", str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")])
    assert result.exit_code == 1 and "nan" not in result.output
    assert "nothing to compare: no id has true/false in both files (1 only in the first, 1 only in the second" in (
        result.stderr
    )

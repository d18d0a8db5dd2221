"""hba-judge: CLI wiring, secrets, a real shell pipe, agreement, and kill -9 + resume in a subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import orjson
from click.testing import CliRunner

from hba_core.jsonl import write_jsonl
from hba_tools.judge import main
from openai_server import FakeOpenAI

KEY = "sk-cli-SECRET-0987654321"
FREE = ("siq2", "intentqa", "mimeqa")


def _files(tmp_path, n):
    rows = [
        {
            "id": f"s{i}",
            "dataset": FREE[i % 3],
            "problem": f"<video>\nWhy {i}? Answer briefly.",
            "answer": f"Reason {i}.",
        }
        for i in range(n)
    ]
    preds = [{"id": f"s{i}", "prediction": f"reason {i}" if i % 3 else f"wrong {i}"} for i in range(n)]
    write_jsonl(tmp_path / "truth.jsonl", rows)
    write_jsonl(tmp_path / "pred.jsonl", preds)
    return str(tmp_path / "truth.jsonl"), str(tmp_path / "pred.jsonl")


def _invoke(args, env=None):
    return CliRunner().invoke(main, args, env={"OPENAI_API_KEY": KEY, **(env or {})})


def _rows(path):
    return [orjson.loads(line) for line in open(path, "rb").read().splitlines()]


def test_every_command_has_help_with_an_example():
    for args in (["--help"], ["agree", "--help"]):
        result = _invoke(args)
        assert result.exit_code == 0 and "Example" in result.stdout


def test_judge_run_writes_judgments_and_a_summary(tmp_path):
    truth, pred = _files(tmp_path, 9)
    with FakeOpenAI() as server:
        result = _invoke(
            [
                "--truth",
                truth,
                "--pred",
                pred,
                "--out",
                str(tmp_path / "j.jsonl"),
                "--base-url",
                server.base_url,
                "--model",
                "m",
                "--cache",
                str(tmp_path / "c.sqlite"),
            ]
        )
    assert result.exit_code == 0, result.stderr
    rows = _rows(tmp_path / "j.jsonl")
    assert [r["correct"] for r in rows] == [i % 3 != 0 for i in range(9)]
    assert "9 judgments: ok 9, unparseable 0, error 0, skipped 0" in result.stderr
    assert "siq2: 0/3 correct (0.000); 3 judged ok" in result.stderr and "mimeqa: 3/3 correct" in result.stderr
    assert result.stdout == ""
    for text in (
        result.stdout,
        result.stderr,
        (tmp_path / "j.jsonl").read_text(),
        (tmp_path / "c.sqlite").read_bytes().decode("latin-1"),
    ):
        assert KEY not in text


def test_api_key_from_a_named_variable(tmp_path):
    truth, pred = _files(tmp_path, 3)
    with FakeOpenAI() as server:
        result = CliRunner().invoke(
            main,
            [
                "--truth",
                truth,
                "--pred",
                pred,
                "--out",
                str(tmp_path / "j.jsonl"),
                "--base-url",
                server.base_url,
                "--api-key-env",
                "MY_JUDGE_KEY",
                "--no-cache",
                "-q",
            ],
            env={"MY_JUDGE_KEY": "sk-other-key-42"},
        )
    assert result.exit_code == 0, result.stderr
    assert set(server.auth) == {"Bearer sk-other-key-42"}


def test_bad_key_is_one_line_without_the_key(tmp_path):
    truth, pred = _files(tmp_path, 3)
    with FakeOpenAI(default="401") as server:
        result = _invoke(
            [
                "--truth",
                truth,
                "--pred",
                pred,
                "--out",
                str(tmp_path / "j.jsonl"),
                "--base-url",
                server.base_url,
                "--no-cache",
                "-q",
            ]
        )
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: judge server at http://127.0.0.1:")
    assert "authentication failed" in result.stderr and KEY not in result.stderr
    assert not (tmp_path / "j.jsonl").exists()


def test_user_errors(tmp_path):
    truth, pred = _files(tmp_path, 1)
    base = ["--truth", truth, "--pred", pred, "--base-url", "http://127.0.0.1:9/v1"]
    cases = [
        (["--pred", pred], "give --truth SAMPLES and --pred PREDICTIONS"),
        ([*base, "--cache", "x.sqlite", "--no-cache"], "use just one of --cache PATH and --no-cache"),
        ([*base, "--prompt-variant", "papr"], "unknown prompt variant 'papr'. Did you mean 'paper'?"),
        ([*base, "--rate", "--prompt-variant", "paraphrased"], "--rate uses the paper's rater prompt"),
        ([*base, "--prompt-variant", "rater"], "is a rater prompt; add --rate"),
        ([*base, "--datasets", "siq3"], "unknown dataset 'siq3'. Did you mean 'siq2'?"),
        (
            [
                "--truth",
                str(tmp_path / "missing.jsonl"),
                "--pred",
                pred,
                "--base-url",
                "http://127.0.0.1:9/v1",
                "--no-cache",
            ],
            "missing.jsonl: no such file",
        ),
    ]
    for args, message in cases:
        result = _invoke(args)
        assert result.exit_code != 0 and message in result.stderr, (args, result.stderr)
    no_key = CliRunner().invoke(main, ["--truth", truth, "--pred", pred], env={"OPENAI_API_KEY": None})
    assert no_key.exit_code == 1
    assert "Error: no API key: set $OPENAI_API_KEY (or name another variable with --api-key-env)" in no_key.stderr


def test_shell_pipe_to_stdout(tmp_path):
    truth, pred = _files(tmp_path, 6)
    with FakeOpenAI() as server:
        done = subprocess.run(
            f"{sys.executable} -m hba_tools.judge --truth {truth} --pred {pred} --base-url {server.base_url} "
            f'--no-cache -q | {sys.executable} -c "import sys, json; '
            f"print(sum(json.loads(l)['correct'] for l in sys.stdin))\"",
            shell=True,
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "OPENAI_API_KEY": KEY},
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "4"


def test_agree_prints_kappa_counts_and_table(tmp_path):
    a = [{"id": str(i), "correct": i % 2 == 0} for i in range(10)]
    b = [{"id": str(i), "correct": i % 2 == 0 if i < 8 else i % 2 == 1} for i in range(10)]
    b.append({"id": "extra", "correct": True})
    write_jsonl(tmp_path / "a.jsonl", a)
    write_jsonl(tmp_path / "b.jsonl", b)
    result = _invoke(["agree", str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")])
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "Cohen's kappa: 0.6000  (n=10, observed agreement 0.8000)"
    assert lines[3].split() == ["A", "true", "4", "1"] and lines[4].split() == ["A", "false", "1", "4"]
    assert "1 only in B" in result.stdout


def _judge_cmd(truth, pred, out, server, cache, concurrency=4):
    return [
        sys.executable,
        "-m",
        "hba_tools.judge",
        "--truth",
        truth,
        "--pred",
        pred,
        "--out",
        out,
        "--base-url",
        server.base_url,
        "--model",
        "m",
        "--cache",
        cache,
        "--concurrency",
        str(concurrency),
    ]


def test_kill_9_mid_run_then_resume_gives_the_uninterrupted_output(tmp_path):
    n = 120
    truth, pred = _files(tmp_path, n)
    env = {**os.environ, "OPENAI_API_KEY": KEY}
    with FakeOpenAI(latency=0.04) as server:
        whole = str(tmp_path / "whole.jsonl")
        subprocess.run(
            _judge_cmd(truth, pred, whole, server, str(tmp_path / "whole.sqlite")),
            env=env,
            check=True,
            capture_output=True,
            timeout=120,
        )
        assert len(server.requests) == n
        server.requests.clear()

        out, cache = str(tmp_path / "resumed.jsonl"), str(tmp_path / "resumed.sqlite")
        proc = subprocess.Popen(_judge_cmd(truth, pred, out, server, cache), env=env, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while len(server.requests) < 50 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        asked_before_kill = len(server.requests)
        assert 50 <= asked_before_kill < n, "the run was not killed mid-way"
        assert not os.path.exists(out)  # the output is written atomically, at the end

        resumed = subprocess.run(
            _judge_cmd(truth, pred, out, server, cache), env=env, capture_output=True, text=True, timeout=120
        )
    assert resumed.returncode == 0, resumed.stderr
    asked_after = len(server.requests) - asked_before_kill
    # Everything committed before the kill is reused; only requests in flight at the kill are asked again.
    assert asked_before_kill + asked_after <= n + 4
    assert asked_after < n
    volatile = ("cached", "latency_s")
    clean = [[{k: v for k, v in r.items() if k not in volatile} for r in _rows(p)] for p in (whole, out)]
    assert clean[0] == clean[1]
    assert len({r["id"] for r in clean[1]}) == n


def test_template_file_and_rate_through_the_cli(tmp_path):
    truth, pred = _files(tmp_path, 3)
    template = tmp_path / "terse.toml"
    template.write_text(
        'user = """Question: {question}\n\nCandidate Answer: {candidate}\n\nReference Answer: '
        '{reference}\n\nJudge."""\n[system]\ndefault = "Be terse."\n'
    )
    with FakeOpenAI() as server:
        custom = _invoke(
            [
                "--truth",
                truth,
                "--pred",
                pred,
                "--out",
                str(tmp_path / "t.jsonl"),
                "--base-url",
                server.base_url,
                "--no-cache",
                "-q",
                "--prompt-variant",
                str(template),
            ]
        )
        assert custom.exit_code == 0, custom.stderr
        assert {b["messages"][0]["content"] for b in server.requests} == {"Be terse."}
        assert {r["prompt_variant"] for r in _rows(tmp_path / "t.jsonl")} == {"terse"}
        rated = _invoke(
            [
                "--truth",
                truth,
                "--pred",
                pred,
                "--out",
                str(tmp_path / "r.jsonl"),
                "--base-url",
                server.base_url,
                "--no-cache",
                "-q",
                "--rate",
            ]
        )
    assert rated.exit_code == 0, rated.stderr
    assert "mean ratings: fluency" in rated.stderr
    assert all(set(r["ratings"]) == {"fluency", "coherence", "relevance"} for r in _rows(tmp_path / "r.jsonl"))
    assert server.requests[-1]["messages"][0]["content"].startswith("You are an impartial evaluator")

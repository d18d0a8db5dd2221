"""hba_core.judge.run against a real local OpenAI-compatible server (tests/openai_server.py) with faults."""

from __future__ import annotations

import time

import orjson
import pytest

from hba_core import schemas
from hba_core.errors import UnknownNameError
from hba_core.jsonl import write_jsonl
from hba_core.judge import prompts
from hba_core.judge.client import ClientSettings, JudgeServerError
from hba_core.judge.run import judge
from hba_core.samples import iter_samples
from openai_server import FakeOpenAI

KEY = "sk-test-SECRET-1234567890"
FREE = ("siq2", "intentqa", "mimeqa")


def _files(tmp_path, n=12, *, answers=None, extra_rows=()):
    """n free-text samples (cycling datasets) whose predictions are right for odd i, wrong for even i."""
    rows, preds = [], []
    for i in range(n):
        rows.append(
            {
                "id": f"s{i}",
                "dataset": FREE[i % 3],
                "problem": f"<video>\nWhy {i}? Answer briefly.",
                "answer": f"Reason {i}.",
            }
        )
        preds.append({"id": f"s{i}", "prediction": (answers or {}).get(i, f"reason {i}" if i % 2 else f"wrong {i}")})
    rows.extend(extra_rows)
    write_jsonl(tmp_path / "truth.jsonl", rows)
    write_jsonl(tmp_path / "pred.jsonl", preds)
    return tmp_path / "truth.jsonl", tmp_path / "pred.jsonl"


def _run(tmp_path, server, *, cache=True, variant="paper", out="out.jsonl", **settings):
    options = {"concurrency": 4, "timeout_s": 2.0, "retries": 3, "backoff_s": 0.02, "backoff_max_s": 0.1} | settings
    summary = judge(
        tmp_path / "truth.jsonl",
        tmp_path / "pred.jsonl",
        tmp_path / out,
        settings=ClientSettings(base_url=server.base_url, model="judge-m", **options),
        api_key=KEY,
        variant=prompts.variant(variant),
        cache_path=tmp_path / "cache.sqlite" if cache else None,
        show_progress=False,
    )
    rows = [orjson.loads(line) for line in (tmp_path / out).read_bytes().splitlines()]
    return summary, rows


def test_judges_every_sample_once_in_input_order(tmp_path):
    _files(tmp_path, 12)
    with FakeOpenAI() as server:
        summary, rows = _run(tmp_path, server)
    assert [r["id"] for r in rows] == [f"s{i}" for i in range(12)]
    assert [r["correct"] for r in rows] == [bool(i % 2) for i in range(12)]
    assert {r["status"] for r in rows} == {"ok"} and len(server.requests) == 12
    assert all(schemas.errors(r, "judgment") == [] for r in rows)
    assert rows[0]["judge_model"] == "judge-m" and rows[0]["prompt_variant"] == "paper"
    assert summary.accuracy == {"siq2": (2, 4, 4), "intentqa": (2, 4, 4), "mimeqa": (2, 4, 4)}


def test_each_request_is_fresh_and_shows_only_question_candidate_reference(tmp_path):
    _files(tmp_path, 3)
    with FakeOpenAI() as server:
        _run(tmp_path, server)
    paper = prompts.variant("paper")
    by_user = {body["messages"][1]["content"]: body for body in server.requests}
    for i, ds in enumerate(FREE):
        system, user = paper.render(
            ds, question=f"Why {i}?", candidate=f"reason {i}" if i % 2 else f"wrong {i}", reference=f"Reason {i}."
        )
        body = by_user[user]
        assert body["messages"] == [{"role": "system", "content": system}, {"role": "user", "content": user}]
        assert body["response_format"]["type"] == "json_schema"
        assert body["model"] == "judge-m"
    assert set(server.auth) == {f"Bearer {KEY}"}


def test_fault_mix_nothing_lost_nothing_guessed(tmp_path):
    answers = {
        0: "wrong 0 429",
        2: "wrong 2 500",
        4: "wrong 4 drop",
        6: "wrong 6 hang",
        8: "wrong 8 prose",
        10: "wrong 10 fields",
        12: "wrong 12 string",
        14: "wrong 14 fenced",
        16: "wrong 16 dead",
        18: "wrong 18 body",
    }
    script = {
        "429": ["429", "429"],
        "500": ["500", "503"],
        "drop": ["drop"],
        "hang": ["hang"],
        "prose": ["prose"],
        "fields": ["wrong_fields"],
        "string": ["string_bool"],
        "fenced": ["fenced"],
        "dead": ["500"] * 10,
        "body": ["bad_body"],
    }
    _files(tmp_path, 20, answers=answers)
    with FakeOpenAI(script=script, hang_s=1.5) as server:
        summary, rows = _run(tmp_path, server, timeout_s=0.5, retries=3)
    by_id = {r["id"]: r for r in rows}
    assert len(rows) == 20 and len(by_id) == 20
    for i in (0, 2, 4, 6, 14):  # retried (or fenced JSON) until a real verdict
        assert by_id[f"s{i}"]["status"] == "ok" and by_id[f"s{i}"]["correct"] is False
    for i in (8, 10, 12):  # prose containing "true", wrong fields, "true" as a string: never counted correct
        row = by_id[f"s{i}"]
        assert (row["status"], row["correct"]) == ("unparseable", None)
        assert row["raw"]
    assert "true" in by_id["s8"]["raw"]
    assert by_id["s16"]["status"] == "error" and "gave up after 4 attempts: HTTP 500" in by_id["s16"]["error"]
    assert by_id["s18"]["status"] == "error" and by_id["s18"]["correct"] is None
    assert all(by_id[f"s{i}"]["correct"] is True for i in range(1, 20, 2))
    assert summary.by_status == {"ok": 15, "unparseable": 3, "error": 2}
    assert sum(right for right, _, _ in summary.accuracy.values()) == 10  # only the real verdicts of true
    assert server.actions["hang"] == 1 and server.actions["drop"] == 1
    assert all(schemas.errors(r, "judgment") == [] for r in rows)


def test_retry_after_is_honoured(tmp_path):
    _files(tmp_path, 1, answers={0: "wrong 0 limited"})
    with FakeOpenAI(script={"limited": ["429"]}, retry_after="0.6") as server:
        start = time.perf_counter()
        _, rows = _run(tmp_path, server, backoff_s=0.01)
        elapsed = time.perf_counter() - start
    assert rows[0]["status"] == "ok" and server.actions["429"] == 1
    assert elapsed >= 0.6


def test_server_without_structured_output_gets_plain_json_requests(tmp_path):
    _files(tmp_path, 6)
    with FakeOpenAI(structured=False) as server:
        _, rows = _run(tmp_path, server, concurrency=1)
    assert [r["correct"] for r in rows] == [bool(i % 2) for i in range(6)]
    plain = [b for b in server.requests if "response_format" not in b]
    assert len(plain) == 6  # one refused structured request, then plain ones
    assert len(server.requests) == 7
    assert all(b["messages"][1]["content"].endswith(prompts.variant("paper").json_instruction) for b in plain)


def test_concurrency_bound_is_respected(tmp_path):
    _files(tmp_path, 8)
    with FakeOpenAI(latency=0.15) as server:
        start = time.perf_counter()
        _run(tmp_path, server, concurrency=2)
        elapsed = time.perf_counter() - start
    assert server.max_in_flight == 2
    assert elapsed >= 4 * 0.15


def test_requests_really_run_in_parallel(tmp_path):
    _files(tmp_path, 32)
    with FakeOpenAI(latency=0.25) as server:
        _run(tmp_path, server, concurrency=16)
    # the server's own count of requests in flight at once proves the parallelism (a wall-clock bound
    # would fail on a loaded machine)
    assert server.max_in_flight == 16 and len(server.requests) == 32


def test_rpm_limit_spaces_requests(tmp_path):
    _files(tmp_path, 6)
    with FakeOpenAI() as server:
        start = time.perf_counter()
        _run(tmp_path, server, concurrency=6, rpm=600)  # one request per 0.1 s
        elapsed = time.perf_counter() - start
    assert len(server.requests) == 6 and elapsed >= 0.5


def test_rerun_is_served_from_cache_and_errors_are_retried(tmp_path):
    _files(tmp_path, 6, answers={2: "wrong 2 dead"})
    with FakeOpenAI(script={"dead": ["500"] * 4}) as server:
        first, rows1 = _run(tmp_path, server, retries=1)
        assert rows1[2]["status"] == "error" and len(server.requests) == 7
        second, rows2 = _run(tmp_path, server, out="again.jsonl", retries=1)
        assert len(server.requests) == 9  # only the failed sample was asked again (twice: it still fails)
        third, rows3 = _run(tmp_path, server, out="third.jsonl", retries=1)
    assert rows3[2]["status"] == "ok" and len(server.requests) == 10
    assert second.cached == 5 and [r["cached"] for r in rows2] == [True, True, False, True, True, True]
    strip = [{k: v for k, v in r.items() if k != "cached"} for r in rows3]
    assert [s for i, s in enumerate(strip) if i != 2] == [
        {k: v for k, v in r.items() if k != "cached"} for i, r in enumerate(rows1) if i != 2
    ]


def test_no_cache_asks_again(tmp_path):
    _files(tmp_path, 3)
    with FakeOpenAI() as server:
        _run(tmp_path, server, cache=False)
        _run(tmp_path, server, cache=False)
    assert len(server.requests) == 6
    assert not (tmp_path / "cache.sqlite").exists()


def test_the_prompt_variant_is_part_of_the_cache_key(tmp_path):
    _files(tmp_path, 3)
    with FakeOpenAI() as server:
        _run(tmp_path, server)
        _, rows = _run(tmp_path, server, variant="paraphrased", out="para.jsonl")
    assert len(server.requests) == 6 and {r["prompt_variant"] for r in rows} == {"paraphrased"}


def test_identical_answers_are_asked_once(tmp_path):
    rows = [
        {"id": f"d{i}", "dataset": "mimeqa", "problem": "<video>\nWhat is held?", "answer": "An umbrella."}
        for i in range(5)
    ]
    write_jsonl(tmp_path / "truth.jsonl", rows)
    write_jsonl(tmp_path / "pred.jsonl", [{"id": f"d{i}", "prediction": "an umbrella"} for i in range(5)])
    with FakeOpenAI() as server:
        _, out = _run(tmp_path, server)
    assert len(server.requests) == 1 and [r["correct"] for r in out] == [True] * 5


def test_skipped_samples_and_other_datasets(tmp_path):
    extra = [
        {"id": "cls", "dataset": "cremad", "problem": "<audio>\nEmotion?", "answer": "sad"},
        {"id": "nopred", "dataset": "siq2", "problem": "Why?", "answer": "Because."},
        {"id": "thinkonly", "dataset": "siq2", "problem": "Why?", "answer": "Because."},
        {"id": "noref", "dataset": "siq2", "problem": "Why?", "answer": ""},
    ]
    _files(tmp_path, 2, extra_rows=extra)
    with (tmp_path / "pred.jsonl").open("ab") as fh:
        fh.write(b'{"id": "thinkonly", "prediction": "<think>no idea"}\n{"id": "noref", "prediction": "x"}\n')
        fh.write(b'{"id": "cls", "prediction": "sad"}\n')
    with FakeOpenAI() as server:
        summary, rows = _run(tmp_path, server)
    by_id = {r["id"]: r for r in rows}
    assert list(by_id) == ["s0", "s1", "nopred", "thinkonly", "noref"]
    assert by_id["nopred"]["status"] == "skipped" and "no prediction" in by_id["nopred"]["error"]
    assert by_id["thinkonly"]["status"] == "skipped" and "empty" in by_id["thinkonly"]["error"]
    assert by_id["noref"]["status"] == "skipped" and "truth.jsonl:6" in by_id["noref"]["error"]
    assert all(r["correct"] is None for r in rows[2:])
    assert len(server.requests) == 2 and summary.not_selected == 1


def test_datasets_option_and_unknown_names(tmp_path):
    _files(tmp_path, 6)
    with FakeOpenAI() as server:
        judge(
            tmp_path / "truth.jsonl",
            tmp_path / "pred.jsonl",
            tmp_path / "o.jsonl",
            settings=ClientSettings(base_url=server.base_url, model="m"),
            api_key=KEY,
            variant=prompts.variant("paper"),
            cache_path=None,
            datasets=["mimeqa"],
            show_progress=False,
        )
        assert len(server.requests) == 2
        with pytest.raises(UnknownNameError, match="Did you mean 'mimeqa'"):
            judge(
                tmp_path / "truth.jsonl",
                tmp_path / "pred.jsonl",
                tmp_path / "o.jsonl",
                settings=ClientSettings(base_url=server.base_url, model="m"),
                api_key=KEY,
                variant=prompts.variant("paper"),
                cache_path=None,
                datasets=["mimeq"],
                show_progress=False,
            )
        with pytest.raises(UnknownNameError, match="dataset in prompt variant 'paper'"):  # no cremad judge prompt
            judge(
                tmp_path / "truth.jsonl",
                tmp_path / "pred.jsonl",
                tmp_path / "o.jsonl",
                settings=ClientSettings(base_url=server.base_url, model="m"),
                api_key=KEY,
                variant=prompts.variant("paper"),
                cache_path=None,
                datasets=["cremad"],
                show_progress=False,
            )


def test_rater_mode(tmp_path):
    _files(tmp_path, 4)
    with FakeOpenAI() as server:
        summary, rows = _run(tmp_path, server, variant="rater")
    assert all(
        r["status"] == "ok" and r["correct"] is None and set(r["ratings"]) == {"fluency", "coherence", "relevance"}
        for r in rows
    )
    n = len("wrong 0")
    assert rows[0]["ratings"] == {"fluency": n % 5 + 1, "coherence": (n + 1) % 5 + 1, "relevance": (n + 2) % 5 + 1}
    assert set(summary.ratings) == {"fluency", "coherence", "relevance"}
    assert all("Reference Answer" not in b["messages"][1]["content"] for b in server.requests)
    assert all(schemas.errors(r, "judgment") == [] for r in rows)


def test_bad_key_stops_the_run_without_showing_the_key(tmp_path):
    _files(tmp_path, 3)
    with FakeOpenAI(default="401") as server, pytest.raises(JudgeServerError) as info:
        _run(tmp_path, server)
    assert "authentication failed" in str(info.value) and KEY not in str(info.value) and "***" in str(info.value)


def test_the_key_appears_nowhere_in_outputs(tmp_path):
    _files(tmp_path, 6, answers={0: "wrong 0 dead"})
    with FakeOpenAI(script={"dead": ["401"]}) as server:
        with pytest.raises(JudgeServerError):
            _run(tmp_path, server)
    with FakeOpenAI(script={"dead": ["500"] * 10}) as server:
        _run(tmp_path, server, retries=1)
    for path in tmp_path.iterdir():
        assert KEY.encode() not in path.read_bytes(), path


def test_fixture_atlas_free_text_samples(tmp_path, fixture_data):
    samples = [s for _, s in iter_samples(fixture_data.atlas) if s["split"] == "test"]
    free = [s for s in samples if s["dataset"] in FREE]
    write_jsonl(tmp_path / "truth.jsonl", samples)
    write_jsonl(
        tmp_path / "pred.jsonl",
        [{"id": s["id"], "prediction": f"<think>hm</think>\\boxed{{{s['answer']}}}"} for s in samples],
    )
    with FakeOpenAI() as server:
        summary, rows = _run(tmp_path, server)
    assert [r["id"] for r in rows] == [s["id"] for s in free]
    assert all(r["correct"] is True for r in rows)
    questions = {b["messages"][1]["content"].split("\n\n")[0] for b in server.requests}
    assert questions == {f"Question: {s['metadata']['question']}" for s in free}
    assert summary.not_selected == len(samples) - len(free)


def test_bad_lines_are_reported_and_the_rest_judged(tmp_path):
    _files(tmp_path, 3)
    with (tmp_path / "truth.jsonl").open("ab") as fh:
        fh.write(b'{"id": "broken", "dataset": \n{"id": "alien", "dataset": "nope", "answer": "x"}\n')
    with (tmp_path / "pred.jsonl").open("ab") as fh:
        fh.write(b'{"prediction": "no id"}\n')
    with FakeOpenAI() as server:
        summary, rows = _run(tmp_path, server)
    assert len(rows) == 3
    problems = [str(p) for p in summary.bad_lines]
    assert any(p.startswith(f"{tmp_path / 'truth.jsonl'}:4: not valid JSON") for p in problems)
    assert f"{tmp_path / 'truth.jsonl'}:5: unknown dataset 'nope'" in problems
    assert any(p.startswith(f"{tmp_path / 'pred.jsonl'}:4: prediction has no 'id'") for p in problems)
    assert any("bad line skipped" in line for line in summary.lines())


def test_progress_line_counts_statuses():
    import io

    from hba_core.judge.progress import Progress

    stream = io.StringIO()
    progress = Progress(3, stream=stream, every_s=0.0)
    for n, status in enumerate(("ok", "unparseable", "error"), start=1):
        progress.update(status, requests=2 * n)
    last = stream.getvalue().splitlines()[-1]
    assert last.startswith("judged 3/3  ok 1  unparseable 1  error 1  ") and last.endswith("req/s")


@pytest.mark.slow
def test_a_fully_cached_rerun_of_10000_judgments_is_fast(tmp_path):
    rows = [
        {"id": f"s{i}", "dataset": FREE[i % 3], "problem": f"<video>\nWhy {i}?", "answer": f"Reason {i}."}
        for i in range(10_000)
    ]
    write_jsonl(tmp_path / "truth.jsonl", rows)
    write_jsonl(tmp_path / "pred.jsonl", [{"id": f"s{i}", "prediction": f"reason {i}"} for i in range(10_000)])
    with FakeOpenAI() as server:
        _run(tmp_path, server, concurrency=64)
        summary, out = _run(tmp_path, server, concurrency=64, out="again.jsonl")
    # fast because nothing is requested again (a wall-clock bound belongs in a benchmark, not a test)
    assert summary.cached == 10_000 and len(server.requests) == 10_000 and len(out) == 10_000

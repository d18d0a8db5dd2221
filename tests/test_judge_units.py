"""hba_core.judge pure parts: prompts, questions, strict reply parsing, cache, kappa, retry-after, rate limiting."""

from __future__ import annotations

import asyncio
import email.utils
import re
import time
from pathlib import Path

import pytest

from hba_core.errors import InputError, UnknownNameError
from hba_core.jsonl import write_jsonl
from hba_core.judge import prompts
from hba_core.judge.agreement import agreement, kappa
from hba_core.judge.cache import JudgmentCache, cache_key
from hba_core.judge.client import RateLimiter, redact, retry_after_s
from hba_core.judge.questions import candidate_answer, dataset_question
from hba_core.judge.replies import parse_ratings, parse_verdict

PAPER = Path(__file__).resolve().parents[2] / "shared" / "seeds" / "human-behavior-atlas-paper.md"


# --- prompts -------------------------------------------------------------------------------------------


def _paper_lines() -> set[str]:
    if not PAPER.exists():
        pytest.skip("the paper is not in ../shared/seeds")
    text = PAPER.read_text(encoding="utf-8").replace("\\_", "_")
    # The paper's markdown puts "- " before each "•" bullet and bold dataset names before each instruction.
    lines = {re.sub(r"^- (?=•)", "", line) for line in text.splitlines()}
    return lines | {re.sub(r"^\*\*[^*]+:\*\* ", "", line) for line in text.splitlines()}


@pytest.mark.parametrize("name", ["paper", "paraphrased", "rater"])
def test_every_prompt_line_is_verbatim_from_the_paper(name):
    lines = _paper_lines()
    v = prompts.variant(name)
    for text in [*v.system.values(), v.user]:
        for line in text.splitlines():
            assert line == "" or line in lines, f"{name}: not verbatim: {line!r}"


def test_paper_and_paraphrased_cover_the_three_free_text_datasets():
    for name in ("paper", "paraphrased"):
        v = prompts.variant(name)
        assert set(v.system) == {"siq2", "intentqa", "mimeqa"}
        assert v.mode == "judge"
    assert prompts.variant("paper").system["mimeqa"] != prompts.variant("paraphrased").system["mimeqa"]
    assert prompts.variant("paper").system["siq2"].startswith("Carefully consider the following question and answer ")
    assert len(prompts.variant("paper").system["mimeqa"].splitlines()) == 5  # intro + four criteria


def test_render_fills_question_candidate_reference_once():
    system, user = prompts.variant("paper").render(
        "intentqa", question="Why did he wave?", candidate="[reference answer] is a trick", reference="To greet."
    )
    assert system.startswith("Carefully consider the question and answers about the intent")
    assert user == (
        "Question: Why did he wave?\n\nCandidate Answer: [reference answer] is a trick\n\n"
        "Reference Answer: To greet.\n\n"
        "Please evaluate whether the candidate answer is correct according to the grading instructions."
    )
    _, with_json = prompts.variant("paper").render(
        "intentqa", question="q", candidate="c", reference="r", json_instruction=True
    )
    assert with_json.endswith('"correct": true or false}')


def test_rater_prompt_has_question_and_model_answer_only():
    system, user = prompts.variant("rater").render("mimeqa", question="Q?", candidate="A.", reference="ignored")
    assert user == "Question: Q?\n\nModel Answer: A."
    assert system.startswith("You are an impartial evaluator") and "model_answer" in system


def test_unknown_variant_lists_valid_names():
    with pytest.raises(UnknownNameError, match="Did you mean 'paraphrased'.*Valid: paper, paraphrased, rater"):
        prompts.variant("paraphrase")


def test_user_template_file(tmp_path):
    f = tmp_path / "strict.toml"
    f.write_text('user = "Q: {question}\\nA: {candidate}\\nRef: {reference}"\n[system]\ndefault = "Be strict."\n')
    v = prompts.variant(str(f))
    assert v.name == "strict"
    assert v.render("siq2", question="q", candidate="c", reference="r") == ("Be strict.", "Q: q\nA: c\nRef: r")
    assert v.fingerprint != prompts.variant("paper").fingerprint
    f.write_text('user = "Q: {question}\\nA: {candidate}\\nRef: {reference}"\n[system]\ndefault = "Be lenient."\n')
    assert prompts.variant(str(f)).fingerprint != v.fingerprint  # an edited prompt is a new cache key


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('user = "no placeholders"\n[system]\ndefault = "x"\n', "no question placeholder"),
        ('user = "{question} {candidate}"\n[system]\ndefault = "x"\n', "no reference placeholder '{reference}'"),
        ('user = "{question} {candidate}"\n', "needs a \\[system\\] table"),
        ('user = "{question} {candidate} {reference}"\n[system]\nsiqq = "x"\n', "unknown dataset in .*'siq2'"),
        ('user = "{question} {candidate}"\nmode = "vote"\n[system]\ndefault = "x"\n', "mode must be one of"),
        ("user = [", "not valid TOML"),
    ],
)
def test_bad_template_files_name_the_file_and_the_fix(tmp_path, body, message):
    f = tmp_path / "mine.toml"
    f.write_text(body)
    with pytest.raises((InputError, UnknownNameError), match=message):
        prompts.variant(str(f))


# --- questions and candidates --------------------------------------------------------------------------


def test_question_from_metadata_first():
    row = {"problem": "<video>\nSomething else? Answer.", "metadata": {"question": " Why does she smile? "}}
    assert dataset_question(row) == "Why does she smile?"


@pytest.mark.parametrize(
    ("problem", "question"),
    [
        ("<video>\n<audio>\nWhy did the man wave his hand? Answer in one sentence.", "Why did the man wave his hand?"),
        (
            "<video>\n<audio>\nHi there. How are you?\nThe above is a video and audio recording from a conversation, "
            "along with the transcript. Why is the woman laughing? Please answer briefly.",
            "Why is the woman laughing?",
        ),
        ("<video>What is the mime holding?", "What is the mime holding?"),
        ("<video>\n<audio>", ""),
    ],
)
def test_question_recovered_from_problem(problem, question):
    assert dataset_question({"problem": problem}) == question


def test_question_of_a_fixture_sample_matches_its_metadata(fixture_data):
    from hba_core.samples import iter_samples

    free = [s for _, s in iter_samples(fixture_data.atlas) if s["dataset"] in ("siq2", "intentqa", "mimeqa")]
    assert free
    for sample in free:
        without = {k: v for k, v in sample.items() if k != "metadata"}
        assert dataset_question(without) == sample["metadata"]["question"]


@pytest.mark.parametrize(
    ("prediction", "expected", "keep"),
    [
        ("<think>It could be anger.</think>He wants to greet a friend.", "He wants to greet a friend.", False),
        ("reasoning... \\boxed{\\text{to greet}}", "to greet", False),
        ("<think>x</think>So \\boxed{He waves hello.}", "He waves hello.", False),
        ("<think>only reasoning", "", False),
        (None, "", False),
        ("<think>why</think>Hello.", "<think>why</think>Hello.", True),
    ],
)
def test_candidate_answer(prediction, expected, keep):
    assert candidate_answer(prediction, keep_think=keep) == expected


# --- strict reply parsing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply",
    [
        '{"explanation": "same", "correct": true}',
        '  {"correct": true}\n',
        '```json\n{"explanation": "same", "correct": true}\n```',
        '<think>hmm</think>{"explanation": "same", "correct": true}',
    ],
)
def test_verdicts_that_parse(reply):
    verdict = parse_verdict(reply)
    assert (verdict.status, verdict.correct) == ("ok", True)


@pytest.mark.parametrize(
    ("reply", "why"),
    [
        ("The candidate is correct, this is true.", "not JSON"),
        ("true", "JSON bool, not an object"),
        ('{"verdict": "true"}', "'correct' must be a JSON boolean, got missing"),
        ('{"correct": "true"}', "got str 'true'"),
        ('{"correct": 1}', "got int 1"),
        ('{"correct": true, "explanation": 3}', "'explanation' must be a string"),
        ('Sure! {"correct": true}', "not JSON"),
        ('```json\n{"correct": true}\n``` and also true', "not JSON"),
        ("", "empty"),
        (None, "empty"),
    ],
)
def test_replies_that_never_count_as_correct(reply, why):
    verdict = parse_verdict(reply)
    assert verdict.status == "unparseable" and verdict.correct is None
    assert why in verdict.error


def test_ratings():
    assert parse_ratings('{"fluency": 4, "coherence": 3, "relevance": 5}').ratings == {
        "fluency": 4,
        "coherence": 3,
        "relevance": 5,
    }
    for bad in (
        '{"fluency": 6, "coherence": 3, "relevance": 5}',
        '{"fluency": true, "coherence": 3, "relevance": 5}',
        '{"fluency": "4", "coherence": 3, "relevance": 5}',
        '{"fluency": 4}',
        "4/5",
    ):
        assert parse_ratings(bad).status == "unparseable"


# --- cache -----------------------------------------------------------------------------------------------


def test_cache_key_depends_on_every_part():
    parts = ["m", "fp", "q", "c", "r"]  # judge model, prompt fingerprint, question, candidate, reference
    keys = {cache_key(*parts)}
    for i in range(len(parts)):
        changed = list(parts)
        changed[i] += "x"
        keys.add(cache_key(*changed))
    assert len(keys) == len(parts) + 1
    assert cache_key("a", "b", "c", "d", "e") == cache_key("a", "b", "c", "d", "e")


def test_cache_round_trip_and_reopen(tmp_path):
    path = tmp_path / "c.sqlite"
    with JudgmentCache(path) as cache:
        for i in range(1200):  # more than one SELECT batch
            cache.put(f"k{i}", {"status": "ok", "correct": i % 2 == 0})
    with JudgmentCache(path) as cache:
        assert len(cache) == 1200
        got = cache.get_many([f"k{i}" for i in range(1300)])
    assert len(got) == 1200 and got["k4"]["correct"] is True and got["k5"]["correct"] is False


def test_a_file_that_is_not_a_cache_is_a_clear_error(tmp_path):
    bad = tmp_path / "notes.sqlite"
    bad.write_text("not a database at all, just some text " * 100)
    with pytest.raises(InputError, match="not a judge cache.*--no-cache"):
        JudgmentCache(bad)


# --- agreement -----------------------------------------------------------------------------------------


def test_kappa_matches_sklearn():
    from sklearn.metrics import cohen_kappa_score

    a = [1, 1, 0, 1, 0, 0, 1, 1, 0, 1, 1, 0]
    b = [1, 0, 0, 1, 0, 1, 1, 1, 0, 0, 1, 0]
    table = [[0, 0], [0, 0]]
    for x, y in zip(a, b):
        table[x][y] += 1
    assert kappa(table) == pytest.approx(cohen_kappa_score(a, b))
    assert kappa([[5, 0], [0, 0]]) != kappa([[5, 0], [0, 0]])  # NaN: both raters constant


def test_agreement_matches_ids_and_counts_what_it_leaves_out(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    write_jsonl(
        a,
        [
            {"id": "1", "correct": True},
            {"id": "2", "correct": False},
            {"id": "3", "correct": None},
            {"id": "4", "correct": True},
            {"id": "only-a", "correct": True},
        ],
    )
    write_jsonl(
        b,
        [
            {"id": "4", "correct": True},
            {"id": "2", "correct": True},
            {"id": "1", "correct": True},
            {"id": "3", "correct": True},
            {"id": "only-b", "correct": False},
        ],
    )
    result = agreement(a, b)
    assert result.table == [[0, 1], [0, 2]]
    assert (result.only_a, result.only_b, result.undecided, result.n) == (1, 1, 1, 3)
    report = result.report()
    assert "n=3" in report and "1 with correct = null" in report


def test_agreement_rejects_non_boolean_correct(tmp_path):
    a = tmp_path / "a.jsonl"
    write_jsonl(a, [{"id": "1", "correct": "yes"}])
    with pytest.raises(InputError, match=r"a.jsonl:1: 'correct' must be true, false or null"):
        agreement(a, a)


# --- retry-after, redaction, rate limit --------------------------------------------------------------------


def test_retry_after_forms():
    # (real responses carry case-insensitive headers; the 429 test against the server covers that path)
    assert retry_after_s({"retry-after": "3"}) == 3.0
    assert retry_after_s({"retry-after-ms": "250"}) == 0.25
    assert retry_after_s({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0  # in the past
    sent = 1_800_000_000.25  # a fixed clock: the date is whole seconds, so 60 s ahead reads as (59, 60]
    later = email.utils.formatdate(sent + 60, usegmt=True)
    assert 59 < retry_after_s({"retry-after": later}, now=lambda: sent) <= 60
    assert retry_after_s({"retry-after": "soon"}) is None
    assert retry_after_s({}) is None


def test_redact():
    assert redact("Incorrect key: Bearer sk-abc123", "sk-abc123") == "Incorrect key: Bearer ***"
    assert redact("nothing here", "sk-abc123") == "nothing here"


class FakeClock:
    """A clock that only moves when the limiter sleeps; each sleep wakes up ``late[i]`` seconds late."""

    def __init__(self, late: list[float]):
        self.now = 100.0
        self.late = list(late)
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        self.now += delay + (self.late.pop(0) if self.late else 0.0)
        await asyncio.sleep(0)  # let the other waiters run, as a real sleep would


def _fake_starts(late: list[float], n: int, rpm: float = 1200) -> tuple[list[float], FakeClock]:
    clock = FakeClock(late)

    async def run() -> list[float]:
        limiter = RateLimiter(rpm=rpm, clock=clock, sleep=clock.sleep)
        times: list[float] = []

        async def one() -> None:
            await limiter.wait()
            times.append(clock())

        await asyncio.gather(*(one() for _ in range(n)))
        return times

    return asyncio.run(run()), clock


def test_rate_limiter_spaces_request_starts_on_time():
    times, clock = _fake_starts([], 6)  # one start per 50 ms, every sleep exact
    assert times == pytest.approx([100.0 + 0.05 * i for i in range(6)], abs=1e-9)
    assert clock.sleeps == pytest.approx([0.05] * 5, abs=1e-9)  # the first start does not wait


def test_rate_limiter_keeps_its_spacing_after_a_late_wake_up():
    # the 2nd start wakes 30 ms late, the 3rd on time: booking fixed slots (0, 50, 100 ms) would start the
    # 3rd only 20 ms after the 2nd; the promise is 50 ms between starts, measured when they start
    times, _ = _fake_starts([0.03, 0.0, 0.12, 0.0, 0.0], 6)
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert gaps == pytest.approx([0.08, 0.05, 0.17, 0.05, 0.05], abs=1e-9)
    assert min(gaps) >= 0.05 - 1e-9


def test_rate_limiter_without_a_limit_never_sleeps():
    times, clock = _fake_starts([], 5, rpm=0)
    assert clock.sleeps == [] and times == [100.0] * 5


def test_rate_limiter_on_the_real_clock():
    # a smoke test of the real asyncio.sleep path. Nothing here depends on how loaded the machine is: the
    # limiter's own clock readings must span 3 intervals (the 4th start is booked only once its reading
    # reaches the 3rd's + 10 ms), and every request starts, in the order it asked
    readings: list[float] = []

    def clock() -> float:
        readings.append(time.monotonic())
        return readings[-1]

    async def starts() -> list[int]:
        limiter = RateLimiter(rpm=6000, clock=clock)  # one start per 10 ms, real asyncio.sleep
        order: list[int] = []

        async def one(i: int) -> None:
            await limiter.wait()
            order.append(i)

        await asyncio.gather(*(one(i) for i in range(4)))
        return order

    assert asyncio.run(starts()) == [0, 1, 2, 3]
    assert max(readings) - min(readings) >= 3 * 0.01 - 1e-9


def test_backoff_grows_with_jitter_and_is_capped():
    from hba_core.judge.client import ClientSettings, JudgeClient

    async def delays() -> tuple[list[float], float]:
        client = JudgeClient(ClientSettings(base_url="http://127.0.0.1:9/v1", backoff_s=0.5, backoff_max_s=4), "sk-x")
        try:
            return [client._backoff(a, None) for a in range(8)], client._backoff(0, 2.0)
        finally:
            await client.__aexit__()

    waits, honoured = asyncio.run(delays())
    for attempt, wait in enumerate(waits):
        cap = min(4, 0.5 * 2**attempt)
        assert cap / 2 <= wait <= cap
    assert 2.0 <= honoured <= 2.05

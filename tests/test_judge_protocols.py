"""Judge protocols against the local OpenAI-compatible server: the reference repository's request layout,
texts and readings (--prompts reference), its lenient fallback counted apart, the rows it would drop,
prompt versions in every judgment, and a cache that does not depend on where the judge is served."""

from __future__ import annotations

import csv
import subprocess
import sys

import orjson
import pytest
from click.testing import CliRunner

from hba_core import schemas
from hba_core.errors import HbaError
from hba_core.jsonl import write_jsonl
from hba_core.judge import prompts, protocols
from hba_core.judge.client import ClientSettings
from hba_core.judge.run import judge
from hba_tools.judge import main
from openai_server import FakeOpenAI

KEY = "sk-proto-SECRET-1122334455"
FREE = ("siq2", "intentqa", "mimeqa")

# The reference's SIQ_GRADE_INSTRUCTION and GRADE_PROMPT (evaluation/llm_grader/llm_judge_eval.py lines 33-45,
# 61-75) as one rendered request, written out here independently of prompts.toml.
SIQ_INSTRUCTION = (
    "\nAnswer Grading Instructions:\n"
    "Carefully consider the following question and answer regarding understanding of a video.\n"
    'You will be shown a "gold-standard" answer from human annotators, referred to as the "Reference Answer", '
    'and a "Candidate Answer".\n'
    "Your task is to judge whether the candidate captures the core meaning of the reference answer using the "
    "following criteria:\n\n"
    "1. The candidate must state at least one coherent, primary answer.\n"
    "2. The candidate's explanation is semantically equivalent as the reference and does not add a claim that "
    "conflicts with it. \n"
    "3. The candidate should not assert a conflicting explanation or introduce factually incompatible details. "
    "The candidate must not refer to a different subject or object not supported by the question/reference. "
    "If the candidate's answer centers on a different primary subject/object than the reference, it is "
    "incorrect.\n\n"
    "Evaluate only the first clause that directly answers the question; ignore preambles and later asides.\n"
    'Output: Respond with exactly one JSON object: {"correct": true/false, "explanation": "…"}\n'
)


def _grade_prompt(question: str, candidate: str, reference: str) -> str:
    return (
        f'\nQuestion:\n"{question}"\nCandidate Answer:\n"{candidate}"\nReference Answer:\n"{reference}"\n\n'
        "Please evaluate the candidate answer based on the dataset-specific instructions.\n\n"
        "Respond with exactly this format - a JSON object with two fields:\n"
        '- "correct": true or false (boolean)\n'
        '- "explanation": a very short, few phrases explanation of your decision (string)\n'
        "Only respond with the JSON object, no other text or comments.\n"
    )


def _files(tmp_path, predictions, *, answers=None, questions=None):
    rows = []
    for i in range(len(predictions)):
        rows.append(
            {
                "id": f"s{i}",
                "dataset": FREE[i % 3],
                "problem": f"<video>\n{(questions or {}).get(i, f'Why {i}?')} Answer briefly.",
                "answer": (answers or {}).get(i, f"Reason {i}."),
            }
        )
    write_jsonl(tmp_path / "truth.jsonl", rows)
    write_jsonl(tmp_path / "pred.jsonl", [{"id": f"s{i}", "prediction": p} for i, p in enumerate(predictions)])


def _run(tmp_path, server, *, variant="reference", out="out.jsonl", **options):
    summary = judge(
        tmp_path / "truth.jsonl",
        tmp_path / "pred.jsonl",
        tmp_path / out,
        settings=ClientSettings(base_url=server.base_url, model="judge-m", concurrency=4, timeout_s=5, retries=1),
        api_key=KEY,
        variant=prompts.variant(variant),
        cache_path=tmp_path / "cache.sqlite",
        show_progress=False,
        **options,
    )
    return summary, [orjson.loads(line) for line in (tmp_path / out).read_bytes().splitlines()]


def test_reference_candidate_is_the_first_box_with_think_kept():
    assert protocols.reference_candidate("<think>\\boxed{cat}</think>\\boxed{dog}") == "cat"
    assert protocols.reference_candidate("so \\boxed{ a dog }") == " a dog "  # the box content is not stripped
    assert protocols.reference_candidate("\\boxed{\\text{a dog}}") == "\\text{a dog"  # [^}]+ stops at the first }
    assert protocols.reference_candidate("  <think>x</think> A dog. ") == "<think>x</think> A dog."
    assert protocols.reference_candidate(None) == ""


def test_reference_request_has_the_reference_layout_text_and_schema(tmp_path):
    _files(tmp_path, ["<think>hmm</think> It is \\boxed{reason 0} and \\boxed{no}", "wrong 1", "reason 2"])
    with FakeOpenAI() as server:
        summary, rows = _run(tmp_path, server)
    assert len(server.requests) == 3  # every sample judged once
    siq = next(b for b in server.requests if b["messages"][0]["content"] == SIQ_INSTRUCTION)
    # the instruction is a *user* message, then the grade prompt; the reference answer is lowercased
    assert siq["messages"] == [
        {"role": "user", "content": SIQ_INSTRUCTION},
        {"role": "user", "content": _grade_prompt("Why 0?", "reason 0", "reason 0.")},
    ]
    schema = siq["response_format"]["json_schema"]
    assert schema["name"] == "Evaluation" and schema["strict"] is True
    assert list(schema["schema"]["properties"]) == ["correct", "explanation"]
    assert schema["schema"]["required"] == ["correct", "explanation"]
    assert siq["max_completion_tokens"] == 2048 and siq["model"] == "judge-m"
    assert [r["id"] for r in rows] == ["s0", "s1", "s2"] and [r["correct"] for r in rows] == [True, False, True]
    assert {r["prompt_variant"] for r in rows} == {"reference"} and {r["prompt_version"] for r in rows} == {
        "ref-9cd5ced"
    }
    assert rows[0]["raw"].startswith('{"correct": true')  # the server wrote the fields in the schema's order
    assert all(schemas.errors(r, "judgment") == [] for r in rows)
    assert summary.lenient == 0 and summary.by_status["ok"] == 3


def test_reference_prompt_gets_no_extra_sentence_without_structured_output(tmp_path):
    _files(tmp_path, ["reason 0"])
    with FakeOpenAI(structured=False) as server:
        _, rows = _run(tmp_path, server)
    first, second = server.requests
    assert "response_format" in first and "response_format" not in second
    assert second["messages"][1]["content"] == _grade_prompt("Why 0?", "reason 0", "reason 0.")
    assert rows[0]["status"] == "ok" and rows[0]["correct"] is True


def test_lenient_fallback_is_off_by_default_and_counted_apart(tmp_path):
    _files(tmp_path, ["wrong 0 prose", "wrong 1 no", "wrong 2 fields", "reason 3", "wrong 4"])
    script = {"prose": ["prose"], " no": ["prose_no"], "fields": ["wrong_fields"]}
    with FakeOpenAI(script=script) as server:
        strict, rows = _run(tmp_path, server)
        assert [r["status"] for r in rows] == ["unparseable", "unparseable", "unparseable", "ok", "ok"]
        assert strict.lenient == 0 and strict.lenient_correct == 0 and strict.lenient_available == 2
        assert not any("lenient" in r for r in rows)
        assert any("lenient fallback: 0 non-JSON replies" in line for line in strict.lines())

        lenient, rows = _run(tmp_path, server, out="lenient.jsonl", lenient_reference_fallback=True)
    assert len(server.requests) == 5  # the second run reads the cached replies: every sample judged once
    assert lenient.cached == 5 and lenient.lenient == 2 and lenient.lenient_correct == 1
    by_id = {r["id"]: r for r in rows}
    assert by_id["s0"]["status"] == "ok" and by_id["s0"]["correct"] is True and by_id["s0"]["lenient"] is True
    assert by_id["s1"]["correct"] is False and by_id["s1"]["lenient"] is True
    assert by_id["s2"]["status"] == "unparseable" and "lenient" not in by_id["s2"]  # JSON: the reference crashes
    assert by_id["s0"]["explanation"] == "Error parsing JSON, content: The candidate is correct, this is true."
    assert all(schemas.errors(r, "judgment") == [] for r in rows)
    assert any("2 non-JSON replies read as verdicts (1 correct" in line for line in lenient.lines())


def test_lenient_fallback_needs_the_reference_protocol(tmp_path):
    _files(tmp_path, ["reason 0"])
    with FakeOpenAI() as server, pytest.raises(HbaError, match="add --prompts reference"):
        _run(tmp_path, server, variant="paper", lenient_reference_fallback=True)


def _annotation_tree(root, *, mimeqa, siq2, intentqa):
    """The files the reference's load_annotations reads, in their published layouts."""
    (root / "mimeqa").mkdir(parents=True)
    with open(root / "mimeqa" / "metadata.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file_name", "question", "reference_answer"])
        w.writerows([["v.mp4", q, a] for a, q in mimeqa])
    (root / "siq2" / "qa").mkdir(parents=True)
    write_jsonl(root / "siq2" / "qa" / "qa_train.json", [{"qid": "x", "q": q, "ans_corr": a} for a, q in siq2])
    write_jsonl(root / "siq2" / "qa" / "qa_val.json", [])
    (root / "intentqa" / "annotations").mkdir(parents=True)
    for split in ("train", "val", "test"):
        with open(root / "intentqa" / "annotations" / f"{split}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["video_id", "question", "a0", "a1", "a2", "a3", "a4", "answer"])
            if split == "test":
                w.writerows([["v", q, "x", "y", a, "z", "w", 2] for a, q in intentqa])


def test_reference_question_lookup_and_the_rows_it_would_drop(tmp_path):
    # s0 siq2, s1 intentqa, s2 mimeqa, s3 siq2, s4 intentqa, s5 mimeqa
    _files(tmp_path, [f"reason {i}" for i in range(6)])
    _annotation_tree(
        tmp_path / "ann",
        siq2=[("REASON 0.", "Why did she leave?")],  # matched case-insensitively; s3 is missing
        intentqa=[("Reason 1.", "Why 1?"), ("reason 4.", "Why does he run?")],
        mimeqa=[("Reason 5.", "What is mimed?")],  # s2 is missing
    )
    with FakeOpenAI() as server:
        summary, rows = _run(tmp_path, server, reference_annotations=tmp_path / "ann")
    assert len(rows) == 6 and len(server.requests) == 6  # hba keeps every row
    assert summary.reference_would_drop == 2 and summary.question_lookup_changed == 3
    asked = {b["messages"][1]["content"].split('"')[1] for b in server.requests}
    assert asked == {"Why did she leave?", "Why 1?", "Why 2?", "Why 3?", "Why does he run?", "What is mimed?"}
    assert any("the reference would drop 2 rows" in line for line in summary.lines())


def test_reference_question_lookup_in_the_samples_last_answer_wins(tmp_path):
    # s0 and s3 are both siq2 with the same answer (up to case): the reference's map keeps the last question
    _files(tmp_path, ["a", "b", "c", "d"], answers={0: "Same.", 3: "SAME."}, questions={0: "First?", 3: "Last?"})
    with FakeOpenAI() as server:
        summary, _ = _run(tmp_path, server)
    questions = sorted(b["messages"][1]["content"].split('"')[1] for b in server.requests)
    assert questions == ["Last?", "Last?", "Why 1?", "Why 2?"]
    assert summary.question_lookup_changed == 1 and summary.reference_would_drop is None
    assert any("--reference-annotations" in line for line in summary.lines())


def test_a_rerun_against_the_same_judge_on_another_port_is_fully_cached(tmp_path):
    _files(tmp_path, [f"reason {i}" for i in range(6)])
    with FakeOpenAI() as first:
        _run(tmp_path, first, variant="paper")
    with FakeOpenAI() as second:
        assert second.base_url != first.base_url
        summary, rows = _run(tmp_path, second, variant="paper", out="again.jsonl")
    assert second.requests == [] and summary.cached == 6 and summary.requests == 0
    assert [r["correct"] for r in rows] == [True] * 6


def test_prompt_versions_and_fingerprints(tmp_path):
    paper, reference = prompts.variant("paper"), prompts.variant("reference")
    assert paper.prompt_version == "A.5-v1" and paper.protocol == "hba"
    assert reference.protocol == "reference" and paper.fingerprint != reference.fingerprint
    template = tmp_path / "mine.toml"
    template.write_text('mode = "judge"\nuser = "{question} {candidate} {reference}"\n[system]\ndefault = "Grade."\n')
    mine = prompts.variant(str(template))
    assert mine.prompt_version == f"sha256:{mine.fingerprint[:12]}"
    bad = tmp_path / "bad.toml"
    bad.write_text(
        'mode = "judge"\nprotocol = "ours"\nuser = "{question} {candidate} {reference}"\n[system]\ndefault = "y"\n'
    )
    with pytest.raises(HbaError, match="protocol must be one of hba, reference"):
        prompts.variant(str(bad))


def test_cli_prompts_reference_and_flag_checks(tmp_path):
    _files(tmp_path, ["reason 0", "wrong 1 prose"])
    base = ["--truth", str(tmp_path / "truth.jsonl"), "--pred", str(tmp_path / "pred.jsonl")]
    env = {"OPENAI_API_KEY": KEY}
    with FakeOpenAI(script={"prose": ["prose"]}) as server:
        args = [*base, "--base-url", server.base_url, "--cache", str(tmp_path / "c.sqlite"), "-q"]
        result = CliRunner().invoke(
            main, [*args, "--prompts", "reference", "--lenient-reference-fallback", "--out", "-"], env=env
        )
    assert result.exit_code == 0, result.stderr
    rows = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert [r["prompt_variant"] for r in rows] == ["reference", "reference"] and rows[1]["lenient"] is True
    assert "lenient fallback: 1 non-JSON replies read as verdicts (1 correct" in result.stderr
    wrong = CliRunner().invoke(main, [*base, "--base-url", "http://127.0.0.1:9/v1", "--lenient-reference-fallback"])
    assert wrong.exit_code == 2 and "need --prompts reference (the prompts are 'paper')" in wrong.stderr


def test_a_cached_rerun_needs_neither_jsonschema_nor_the_http_library(tmp_path):
    _files(tmp_path, [f"reason {i}" for i in range(6)])
    with FakeOpenAI() as server:
        _run(tmp_path, server, variant="paper")  # fills the cache, and records the validated row shapes
        script = (
            "import sys\n"
            "from hba_core.judge import prompts\n"
            "from hba_core.judge.client import ClientSettings\n"
            "from hba_core.judge.run import judge\n"
            f"s = judge({str(tmp_path / 'truth.jsonl')!r}, {str(tmp_path / 'pred.jsonl')!r}, "
            f"{str(tmp_path / 'again.jsonl')!r}, "
            f"settings=ClientSettings(base_url={server.base_url!r}, model='judge-m'), "
            f"api_key='k', variant=prompts.variant('paper'), cache_path={str(tmp_path / 'cache.sqlite')!r}, "
            "show_progress=False)\n"
            "heavy = ('jsonschema', 'aiohttp', 'httpx2', 'httpx', 'openai')\n"
            "print(s.cached, s.requests, sorted(m for m in heavy if m in sys.modules))\n"
        )
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[0] == "6 0 []"
    assert server.requests and len(server.requests) == 6

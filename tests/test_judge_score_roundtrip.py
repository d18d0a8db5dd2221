"""The issue's 'done when': two models judged into one file, then hba-score prints the Table-4 layout."""

from __future__ import annotations

import orjson
from click.testing import CliRunner

from hba_core.jsonl import write_jsonl
from hba_core.samples import iter_samples
from hba_tools.judge import main as judge_main
from hba_tools.score import main as score_main
from openai_server import FakeOpenAI


def test_two_models_judged_then_scored(tmp_path, fixture_data):
    test = [s for _, s in iter_samples(fixture_data.atlas) if s["split"] == "test"]
    write_jsonl(tmp_path / "test.jsonl", test)
    # model_a answers everything right; model_b gets every free-text answer wrong and half the labels
    write_jsonl(tmp_path / "model_a.jsonl", [{"id": s["id"], "prediction": s["answer"]} for s in test])
    write_jsonl(
        tmp_path / "model_b.jsonl",
        [
            {"id": s["id"], "prediction": "no idea" if s["class_label"] is None or i % 2 else s["answer"]}
            for i, s in enumerate(test)
        ],
    )
    judged = []
    with FakeOpenAI() as server:
        for name in ("model_a", "model_b"):
            out = tmp_path / f"judged_{name}.jsonl"
            result = CliRunner().invoke(
                judge_main,
                [
                    "--truth",
                    str(tmp_path / "test.jsonl"),
                    "--pred",
                    str(tmp_path / f"{name}.jsonl"),
                    "--out",
                    str(out),
                    "--base-url",
                    server.base_url,
                    "--model",
                    "m",
                    "--no-cache",
                    "-q",
                ],
                env={"OPENAI_API_KEY": "k"},
            )
            assert result.exit_code == 0, result.output
            rows = [orjson.loads(line) for line in out.read_bytes().splitlines()]
            assert {r["model"] for r in rows} == {name} and len(rows) == 3 * 4  # siq2, intentqa, mimeqa x 4
            judged.extend(rows)
    write_jsonl(tmp_path / "judged.jsonl", judged)
    result = CliRunner().invoke(
        score_main,
        [
            "--truth",
            str(tmp_path / "test.jsonl"),
            "--pred",
            str(tmp_path / "model_a.jsonl"),
            "--pred",
            str(tmp_path / "model_b.jsonl"),
            "--judgments",
            str(tmp_path / "judged.jsonl"),
            "--format",
            "md",
        ],
    )
    assert result.exit_code == 0, result.output
    table = result.stdout
    assert "model_a" in table and "model_b" in table and "SOC" in table and "NVC" in table
    a_row = next(line for line in table.splitlines() if line.startswith("| model_a"))
    assert a_row.count("1.000") >= 16  # every dataset perfect for model_a, judged ones included

"""hba-predict: heads and generate modes, the think template, resumability, schema-valid output."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from click.testing import CliRunner  # noqa: E402


@pytest.fixture(scope="module")
def checkpoint(fixtures, tmp_path_factory):
    """A tiny OmniSapiens checkpoint (random LoRA/heads) written with the real save code."""
    from hba_core.model.backbone import add_lora, load_processor, load_thinker
    from hba_core.model.checkpoint import run_config, save_checkpoint
    from hba_core.model.heads import default_label_space
    from hba_core.model.omnisapiens import OmniSapiens

    torch.manual_seed(0)
    model = OmniSapiens(add_lora(load_thinker(str(fixtures.omni))), default_label_space())
    config = run_config(
        tool="hba-sft",
        stage="cls",
        base_model=str(fixtures.omni),
        init=None,
        label_space=model.label_space,
        datasets=["cremad"],
        options={},
        seed=0,
    )
    out = tmp_path_factory.mktemp("ckpt") / "best"
    save_checkpoint(model, out, config, processor=load_processor(str(fixtures.omni)))
    return out


@pytest.fixture()
def samples(fixtures, tmp_path):
    keep = {"mmpsy_depression", "cremad", "mimeqa"}
    rows = [json.loads(line) for line in fixtures.atlas.read_text().splitlines()]
    path = tmp_path / "test.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows if r["split"] == "test" and r["dataset"] in keep))
    return path


def _predict(fixtures, model, samples, out, *extra):
    from hba_tools.predict import main

    args = [
        "--model",
        str(model),
        "--samples",
        str(samples),
        "--data-root",
        str(fixtures.data),
        "--out",
        str(out),
        "--max-new-tokens",
        "4",
        "--workers",
        "0",
        *extra,
    ]
    return CliRunner().invoke(main, args)


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_heads_mode_labels_and_probabilities(fixtures, checkpoint, samples, tmp_path):
    from hba_core import registry, schemas

    out = tmp_path / "preds.jsonl"
    result = _predict(fixtures, checkpoint, samples, out)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(out)
    rows = _rows(out)
    assert len(rows) == 12 and all(not schemas.errors(r, "prediction") for r in rows)
    for row in rows:
        assert row["mode"] == "heads"
        ds = registry.dataset(row["dataset"])
        if ds.is_free_text:
            assert "probs" not in row and isinstance(row["prediction"], str | None)
        else:
            assert list(row["probs"]) == list(ds.task.domain.labels)
            assert row["prediction"] == max(row["probs"], key=row["probs"].get)


def test_predict_resumes_without_duplicates(fixtures, checkpoint, samples, tmp_path):
    out = tmp_path / "preds.jsonl"
    lines = samples.read_text().splitlines()
    first = tmp_path / "first.jsonl"
    first.write_text("\n".join(lines[:5]) + "\n")
    assert _predict(fixtures, checkpoint, first, out).exit_code == 0
    with open(out, "ab") as fh:
        fh.write(b'{"id": "torn')  # a kill mid-write
    result = _predict(fixtures, checkpoint, samples, out)
    assert result.exit_code == 0, result.output
    assert "7 predictions written (5 already there)" in result.output
    ids = [r["id"] for r in _rows(out)]
    assert len(ids) == len(set(ids)) == 12


def test_generate_mode_with_think_template_on_a_base_model(fixtures, samples, tmp_path):
    from hba_core import schemas

    out = tmp_path / "zs.jsonl"
    result = _predict(fixtures, fixtures.omni, samples, out, "--template", "think")
    assert result.exit_code == 0, result.output
    rows = _rows(out)
    assert len(rows) == 12
    assert all(r["mode"] == "generate" and "raw_output" in r and not schemas.errors(r, "prediction") for r in rows)


def test_think_template_is_the_grpo_prompt(fixtures):
    from hba_core.model.collate import think_template

    prompt = think_template().format(problem="<audio>\nHow does she feel?")
    assert prompt.startswith("<audio>\nHow does she feel?\nYou FIRST think")
    assert "<think> </think>" in prompt and "\\boxed{ }" in prompt


def test_heads_mode_needs_a_checkpoint(fixtures, samples, tmp_path):
    result = _predict(fixtures, fixtures.omni, samples, tmp_path / "x.jsonl", "--mode", "heads")
    assert result.exit_code == 1
    assert "heads mode needs an hba checkpoint" in result.output


def test_duplicate_ids_are_refused(fixtures, checkpoint, samples, tmp_path):
    line = samples.read_text().splitlines()[0]
    dup = tmp_path / "dup.jsonl"
    dup.write_text(f"{line}\n{line}\n")
    result = _predict(fixtures, checkpoint, dup, tmp_path / "x.jsonl")
    assert result.exit_code == 1 and "dup.jsonl:2" in result.output and "already used on line 1" in result.output


def test_predict_then_score_round_trip(fixtures, checkpoint, samples, tmp_path):
    """hba-predict's output goes into hba-score unchanged: every classification sample is matched and scored."""
    from hba_tools.score import main as score

    out = tmp_path / "preds.jsonl"
    assert _predict(fixtures, checkpoint, samples, out).exit_code == 0
    report = tmp_path / "report.json"
    result = CliRunner().invoke(
        score, ["--truth", str(samples), "--pred", str(out), "--format", "json", "--output", str(report)]
    )
    assert result.exit_code == 0, result.output
    model = json.loads(report.read_text())["models"][0]
    assert model["counts"].get("duplicate", 0) == 0 and model["counts"].get("unknown", 0) == 0, model["counts"]
    for name in ("cremad", "mmpsy_depression"):
        entry = model["datasets"][name]
        assert entry["samples"] == 4 and entry["value"] is not None and entry.get("unparseable", 0) == 0

"""hba-predict: heads and generate modes, the think template, resumability, schema-valid output."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from click.testing import CliRunner  # noqa: E402


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
    counts, n = model["counts"], len(samples.read_text().splitlines())
    assert (counts["lines"], counts["matched"], counts["duplicate"], counts["unknown_id"]) == (n, n, 0, 0), counts
    for name in ("cremad", "mmpsy_depression"):
        entry = model["datasets"][name]
        assert entry["samples"] == 4 and entry["value"] is not None and entry.get("unparseable", 0) == 0


def test_penultimate_stop_equals_the_full_forward(fixtures, checkpoint, samples):
    """Stopping before the last decoder layer gives exactly ``hidden_states[-2]`` of the full forward
    (padded, mixed-modality batch, through peft), and the hook is gone afterwards."""
    from hba_core.model.collate import Collator, MediaSettings
    from hba_core.model.heads import masked_mean
    from hba_core.model.omnisapiens import model_inputs, penultimate_states, pooled_penultimate_early
    from hba_core.predict import load_predictor, read_samples

    predictor = load_predictor(str(checkpoint))
    good, _ = read_samples(samples)
    collate = Collator(predictor.processor, MediaSettings(data_root=str(fixtures.data)), targets=False)
    thinker = predictor.thinker.eval()
    last = thinker.get_decoder().layers[-1]
    for group in (good[:3], good[4:6], good[8:11]):  # audio, video and text rows, padded within a batch
        batch = collate(group)
        assert batch.ids and not batch.skipped
        with torch.no_grad():
            full = thinker(**model_inputs(batch), output_hidden_states=True, use_cache=False).hidden_states[-2]
            early = penultimate_states(thinker, batch)
            pooled = pooled_penultimate_early(thinker, batch)
        assert early.shape == full.shape and torch.equal(early, full)
        assert torch.equal(pooled, masked_mean(full, batch.inputs["attention_mask"]))
        assert not last._forward_pre_hooks  # removed on the way out


def test_think_prediction_is_the_answer_after_the_reasoning():
    """A box inside <think> is no answer: the prediction is the span hba-score's reader reads."""
    from hba_core.answers import read_answer
    from hba_core.predict import think_prediction

    inside = r"<think>sounds like \boxed{anger}</think> I cannot tell."
    assert think_prediction(inside) == "I cannot tell."
    assert read_answer(think_prediction(inside), "cremad").reason == read_answer(inside, "cremad").reason == "hedged"
    assert think_prediction(r"<think>hmm</think> \boxed{\text{happy}}") == "happy"
    assert think_prediction("<think>no answer yet") is None
    assert think_prediction("plain words") == "plain words"


def test_predict_sets_the_cpu_thread_count(fixtures, tmp_path, monkeypatch):
    """predict_file takes its thread count from hba_core.threads (HBA_NUM_THREADS wins), not torch's default."""
    from hba_core.model.collate import MediaSettings
    from hba_core.predict import load_predictor, predict_file

    empty = tmp_path / "none.jsonl"
    empty.write_text("")
    before = torch.get_num_threads()
    monkeypatch.setenv("HBA_NUM_THREADS", "3")
    try:
        summary = predict_file(
            load_predictor(str(fixtures.omni)), empty, tmp_path / "p.jsonl", media=MediaSettings(), mode="generate"
        )
        assert torch.get_num_threads() == 3 and summary["written"] == 0
    finally:
        torch.set_num_threads(before)

"""hba-grpo --estimator harpo: trains on two tasks, checkpoints HARPO's EMA state and resumes it bit-exactly,
and its final model is evaluated by hba-predict + hba-score."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
import torch
from click.testing import CliRunner

from hba_core.jsonl import iter_jsonl, write_jsonl
from hba_core.rl.checkpoint import read_trainer_state
from hba_core.rl.trainer import read_metrics, train
from test_grpo_train import text_config, vowel_reward, without_timing  # the same tiny-run settings


@pytest.fixture(scope="module")
def two_tasks(fixtures, tmp_path_factory) -> Path:
    rows = [orjson.loads(line) for line in fixtures.atlas.read_bytes().splitlines()]
    text = [r for r in rows if r["modality_signature"] == "text" and r["split"] == "train"]
    picked = [r for r in text if r["dataset"] == "mmpsy_depression"][:4] + [
        r for r in text if r["dataset"] == "mmpsy_anxiety"
    ][:4]
    assert len(picked) == 8
    path = tmp_path_factory.mktemp("harpo") / "two-tasks.jsonl"
    write_jsonl(path, picked)
    return path


def test_harpo_state_is_checkpointed_and_resumes_exactly(fixtures, two_tasks, tmp_path):
    small = dict(estimator="harpo", save_every=2, prompts_per_step=4, mini_batch=2, group_size=3, max_new_tokens=4)
    straight = tmp_path / "straight"
    train(text_config(fixtures, two_tasks, straight, max_steps=3, **small), reward_fn=vowel_reward, log=lambda m: None)
    resumed = tmp_path / "resumed"
    train(text_config(fixtures, two_tasks, resumed, max_steps=2, **small), reward_fn=vowel_reward, log=lambda m: None)
    state = read_trainer_state(resumed / "checkpoints" / "step-000002")
    assert set(state["harpo"]["rho"]) <= {"DEP", "ANX"} and state["harpo"]["rho"]  # the EMAs of the tasks seen
    train(text_config(fixtures, two_tasks, resumed, max_steps=3, **small), reward_fn=vowel_reward, log=lambda m: None)
    assert without_timing(read_metrics(resumed)) == without_timing(read_metrics(straight))
    a = read_trainer_state(straight / "checkpoints" / "step-000003")["harpo"]
    b = read_trainer_state(resumed / "checkpoints" / "step-000003")["harpo"]
    assert a == b  # bit-exact: the resumed run continued the EMAs, not restarted them
    from safetensors.torch import load_file

    wa = load_file(str(straight / "final" / "model.safetensors"))
    wb = load_file(str(resumed / "final" / "model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_harpo_differs_from_grpo_on_the_same_rollouts(fixtures, two_tasks, tmp_path):
    runs = {}
    for estimator in ("grpo", "harpo"):
        out = tmp_path / estimator
        config = text_config(fixtures, two_tasks, out, max_steps=2, estimator=estimator, prompts_per_step=4)
        train(config, reward_fn=vowel_reward, log=lambda m: None)
        runs[estimator] = read_metrics(out)
    # the first step's rollouts are the same (same seed, same weights); the updates are not
    assert runs["grpo"][0]["reward"] == runs["harpo"][0]["reward"]
    assert runs["grpo"][-1] != runs["harpo"][-1]


@pytest.mark.slow
def test_cli_harpo_with_the_harpo_reward_then_predict_and_score(fixtures, two_tasks, tmp_path):
    from hba_tools.grpo import main as grpo
    from hba_tools.predict import main as predict
    from hba_tools.score import main as score

    out = tmp_path / "rl"
    args = ["--init", str(fixtures.omni), "--train", str(two_tasks), "--out", str(out), "--estimator", "harpo"]
    args += ["--reward", "harpo", "--prompts-per-step", "4", "--mini-batch", "4", "--group-size", "2"]
    args += ["--max-new-tokens", "6", "--max-steps", "1", "--micro-batch", "4"]
    result = CliRunner().invoke(grpo, args)
    assert result.exit_code == 0, result.output
    preds = tmp_path / "rl.jsonl"
    result = CliRunner().invoke(
        predict,
        ["--model", str(out / "final"), "--mode", "generate", "--template", "think", "--samples", str(two_tasks)]
        + ["--data-root", str(fixtures.data), "--out", str(preds), "--max-new-tokens", "6", "--workers", "0"],
    )
    assert result.exit_code == 0, result.output
    assert len(list(iter_jsonl(preds))) == 8
    result = CliRunner().invoke(score, ["--truth", str(two_tasks), "--pred", str(preds), "--format", "json"])
    assert result.exit_code == 0, result.output
    assert '"mmpsy_depression"' in result.output

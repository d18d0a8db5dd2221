"""GRPO training on the tiny random Qwen2.5-Omni: learning, resume, checkpoints, LoRA + KL, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
import torch
from click.testing import CliRunner

from hba_core.jsonl import write_jsonl
from hba_core.rl.config import GrpoConfig
from hba_core.rl.trainer import read_metrics, train

TIMING = ("seconds", "tokens_per_s")


def vowel_reward(completions, samples):
    """A reward a few steps can move on a random model: the share of vowels in the response text."""
    return {"total": [sum(c in "aeiou" for c in t) / max(len(t), 1) for t in completions]}


@pytest.fixture(scope="module")
def text_task(fixtures, tmp_path_factory) -> Path:
    rows = [orjson.loads(line) for line in fixtures.atlas.read_bytes().splitlines()]
    text = [r for r in rows if r["modality_signature"] == "text"][:8]
    assert len(text) == 8
    path = tmp_path_factory.mktemp("grpo") / "text.jsonl"
    write_jsonl(path, text)
    return path


def text_config(fixtures, train_path: Path, out: Path, **overrides) -> GrpoConfig:
    options = dict(
        init=str(fixtures.omni),
        train=str(train_path),
        out=str(out),
        prompts_per_step=4,
        mini_batch=4,
        micro_batch=16,
        rollout_batch=4,
        group_size=4,
        max_new_tokens=8,
        lr=3e-2,
        epochs=100,
        save_every=100,
        val_every=100,
    )
    options.update(overrides)
    return GrpoConfig(**options)


def without_timing(rows):
    return [{k: v for k, v in row.items() if not any(t in k for t in TIMING)} for row in rows]


def test_mean_reward_rises_on_a_learnable_task(fixtures, text_task, tmp_path):
    train(text_config(fixtures, text_task, tmp_path / "run", max_steps=8), reward_fn=vowel_reward, log=lambda m: None)
    rewards = [row["reward"] for row in read_metrics(tmp_path / "run")]
    assert len(rewards) == 8
    first, last = sum(rewards[:3]) / 3, sum(rewards[-3:]) / 3
    assert last > first + 0.05, rewards


def test_resume_continues_exactly(fixtures, text_task, tmp_path):
    small = dict(save_every=2, prompts_per_step=2, mini_batch=1, group_size=3, max_new_tokens=4)
    straight = tmp_path / "straight"
    train(text_config(fixtures, text_task, straight, max_steps=3, **small), reward_fn=vowel_reward, log=lambda m: None)
    resumed = tmp_path / "resumed"
    train(text_config(fixtures, text_task, resumed, max_steps=2, **small), reward_fn=vowel_reward, log=lambda m: None)
    # a kill after step 3 was logged but before it was checkpointed: the resumed run redoes step 3
    with open(resumed / "metrics.jsonl", "ab") as fh:
        fh.write(b'{"step": 3, "reward": 99.0}\n')
    messages = []
    train(text_config(fixtures, text_task, resumed, max_steps=3, **small), reward_fn=vowel_reward, log=messages.append)
    assert any("resuming from" in m and "step-000002" in m for m in messages)
    assert [r["step"] for r in read_metrics(resumed)] == [1, 2, 3]
    assert without_timing(read_metrics(resumed)) == without_timing(read_metrics(straight))
    from safetensors.torch import load_file

    a = load_file(str(straight / "final" / "model.safetensors"))
    b = load_file(str(resumed / "final" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_final_model_loads_and_generates(fixtures, text_task, tmp_path):
    final = train(
        text_config(fixtures, text_task, tmp_path / "run", max_steps=1), reward_fn=vowel_reward, log=lambda m: None
    )
    from hba_core.model.backbone import load_processor, load_thinker

    thinker, processor = load_thinker(str(final)), load_processor(str(final))
    base = load_thinker(str(fixtures.omni))
    changed = [n for n, p in thinker.named_parameters() if not torch.equal(p, dict(base.named_parameters())[n])]
    assert changed and all("audio_tower" not in n and "visual" not in n for n in changed)  # encoders frozen
    ids = processor.tokenizer("Is the speaker anxious?", return_tensors="pt")
    out = thinker.generate(**ids, max_new_tokens=3, do_sample=False)
    assert out.shape[1] == ids["input_ids"].shape[1] + 3
    state = torch.load(tmp_path / "run" / "checkpoints" / "step-000001" / "trainer.pt", weights_only=True)
    assert state["step"] == 1 and "optimizer" in state
    config = json.loads((tmp_path / "run" / "run-config.json").read_text())
    assert config["tool"] == "hba-grpo" and config["options"]["group_size"] == 4


def test_lora_with_kl_and_rloo(fixtures, text_task, tmp_path):
    config = text_config(
        fixtures,
        text_task,
        tmp_path / "run",
        max_steps=1,
        lora=True,
        lora_r=4,
        lora_alpha=8,
        beta=0.1,
        estimator="rloo",
        mini_batch=2,
        ppo_epochs=2,
    )
    train(config, reward_fn=vowel_reward, log=lambda m: None)
    (row,) = read_metrics(tmp_path / "run")
    assert row["kl"] > 0  # 4 updates: after the first, the adapter has moved away from the base (the reference)
    # dropout is off, so only the updates move pi away from pi_old (test_pi_theta_is_pi_old_until_an_update)
    assert 0 <= row["clip_fraction"] <= 1 and row["ratio"] != 1.0
    assert (tmp_path / "run" / "checkpoints" / "step-000001" / "policy" / "adapter_model.safetensors").exists()
    assert (tmp_path / "run" / "final" / "model.safetensors").exists()  # merged for serving


def test_pi_theta_is_pi_old_until_an_update(fixtures, text_task, tmp_path):
    # LoRA's dropout (0.05) would make pi_theta (train mode) differ from pi_old (eval mode) with no update
    # in between (once B != 0); the policy switches every dropout off, so the ratio is exactly 1 until the
    # weights move
    from hba_core.rl import step
    from hba_core.rl.loss import clipped_surrogate_loss
    from hba_core.rl.policy import Policy
    from hba_core.rl.rollout import SamplingConfig

    config = text_config(fixtures, text_task, tmp_path / "run", lora=True, lora_r=4, lora_alpha=8, micro_batch=8)
    policy = Policy(config)
    prompts = [orjson.loads(line) for line in text_task.read_bytes().splitlines()][:2]
    torch.manual_seed(0)
    rollouts = step.generate_rollouts(policy, prompts, SamplingConfig(max_new_tokens=8), group=4, batch_prompts=2)
    advantages = torch.linspace(-1.0, 1.0, len(rollouts.samples))
    (mb,) = step.build_micro_batches(policy, rollouts, advantages, 4)

    def update() -> float:
        """pi_old from the current weights, then one clipped-surrogate update; the ratio before it."""
        step.fill_reference_logps(policy, [mb], old=True)
        assert policy.model.training and mb.old_logp is not None
        logp = step.response_logp(policy.forward_module, mb, config.temperature)  # train mode, with gradients
        assert torch.equal(logp.detach(), mb.old_logp)  # ratio exactly 1 on every token
        out = clipped_surrogate_loss(logp, mb.old_logp, mb.advantages, mb.response_mask, clip_eps=0.2)
        policy.backward_step(out.loss)
        policy.optimizer_step()
        return out.ratio_mean

    assert update() == 1.0  # LoRA's B starts at 0: the adapter (and its dropout) adds nothing yet
    assert update() == 1.0  # B != 0 now: only a network without dropout keeps pi_theta == pi_old
    after = step.response_logp(policy.forward_module, mb, config.temperature).detach()
    moved = (after - mb.old_logp)[mb.response_mask.bool()]
    assert moved.abs().max() > 0  # one update later, pi_theta / pi_old != 1


def test_response_log_probs_use_the_sampling_temperature(fixtures, text_task, tmp_path):
    from hba_core.model.omnisapiens import model_inputs
    from hba_core.rl import step
    from hba_core.rl.policy import Policy
    from hba_core.rl.rollout import SamplingConfig

    policy = Policy(text_config(fixtures, text_task, tmp_path / "run", temperature=0.5))
    prompts = [orjson.loads(line) for line in text_task.read_bytes().splitlines()][:1]
    torch.manual_seed(0)
    rollouts = step.generate_rollouts(policy, prompts, SamplingConfig(max_new_tokens=4), group=2, batch_prompts=1)
    (mb,) = step.build_micro_batches(policy, rollouts, torch.zeros(2), 2)
    with torch.no_grad():
        got = step.response_logp(policy.model, mb, 0.5)
        inputs = model_inputs(mb.inputs)
        n = inputs["input_ids"].shape[1]
        inputs["input_ids"] = torch.cat([inputs["input_ids"], mb.response_ids], 1)
        inputs["attention_mask"] = torch.cat([inputs["attention_mask"], mb.response_mask], 1)
        logits = policy.model(**inputs, use_cache=False).logits[:, n - 1 : -1]  # (B, R, V)
        by_hand = torch.log_softmax(logits / 0.5, -1).gather(-1, mb.response_ids.unsqueeze(-1)).squeeze(-1)
    assert torch.allclose(got, by_hand * mb.response_mask, atol=1e-6)
    assert not torch.allclose(got, step.response_logp(policy.model, mb, 1.0).detach(), atol=1e-3)


def test_cli_multimodal_run_with_the_paper_reward(fixtures, tmp_path):
    from hba_tools.grpo import main

    rows = [orjson.loads(line) for line in fixtures.atlas.read_bytes().splitlines()]
    train_rows = [r for r in rows if r["split"] == "train"]
    pick = [r for r in train_rows if r["dataset"] == "cremad"][:2]
    pick += [r for r in train_rows if r["dataset"] == "mmsd"][:2]
    write_jsonl(fixtures.data / "grpo-train.jsonl", pick)
    write_jsonl(fixtures.data / "grpo-val.jsonl", [pick[0], pick[-1]])
    out = tmp_path / "rl"
    args = [
        "--init",
        str(fixtures.omni),
        "--train",
        str(fixtures.data / "grpo-train.jsonl"),
        "--val",
        str(fixtures.data / "grpo-val.jsonl"),
        "--out",
        str(out),
        "--prompts-per-step",
        "4",
        "--mini-batch",
        "4",
        "--group-size",
        "2",
        "--max-new-tokens",
        "6",
        "--max-steps",
        "1",
        "--val-every",
        "1",
        "--lr",
        "1e-3",
        "--micro-batch",
        "4",
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().endswith(str(out / "final"))
    (line,) = read_metrics(out)
    for key in (
        "reward",
        "reward_accuracy",
        "reward_format",
        "reward_similarity",
        "format_rate",
        "response_length",
        "clip_fraction",
        "rollout_tokens_per_s",
        "train_tokens_per_s",
        "val_reward",
        "val_scores",
    ):
        assert key in line, key
    assert line["responses"] == 8 and set(line["val_scores"]) == {"cremad", "mmsd"}
    assert 0.0 <= line["reward"] <= 1.7

    # the final model is what hba-predict (generate mode, think template) and hba-score evaluate
    from hba_tools.predict import main as predict
    from hba_tools.score import main as score

    preds = tmp_path / "preds.jsonl"
    val = str(fixtures.data / "grpo-val.jsonl")
    result = CliRunner().invoke(
        predict,
        [
            "--model",
            str(out / "final"),
            "--samples",
            val,
            "--data-root",
            str(fixtures.data),
            "--out",
            str(preds),
            "--mode",
            "generate",
            "--template",
            "think",
            "--max-new-tokens",
            "6",
            "--workers",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output
    assert len(preds.read_text().splitlines()) == 2
    result = CliRunner().invoke(score, ["--truth", str(fixtures.data / "grpo-val.jsonl"), "--pred", str(preds)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["models"][0]["counts"]["matched"] == 2


def test_cli_user_errors(fixtures, tmp_path):
    from hba_tools.grpo import main

    bad = tmp_path / "bad.jsonl"
    write_jsonl(bad, [{"dataset": "cremad", "problem": "<audio>\nWhat emotion?", "audios": ["a.wav"], "answer": ""}])
    base = ["--init", str(fixtures.omni), "--out", str(tmp_path / "o")]
    result = CliRunner().invoke(main, [*base, "--train", str(bad)])
    assert result.exit_code == 1
    assert "bad.jsonl:1" in result.output and "no gold 'answer'" in result.output
    result = CliRunner().invoke(main, [*base, "--train", str(bad), "--mini-batch", "100"])
    assert result.exit_code == 1 and "does not divide --prompts-per-step 256" in result.output
    result = CliRunner().invoke(main, [*base, "--train", str(bad), "--reward-weight", "lenght=1"])
    assert result.exit_code == 1 and "valid: accuracy, format, similarity" in result.output


DEEPSPEED_SCRIPT = """
import sys
from hba_core.rl.config import GrpoConfig
from hba_core.rl.trainer import train

def vowel_reward(completions, samples):
    return {"total": [sum(c in "aeiou" for c in t) / max(len(t), 1) for t in completions]}

init, data, out = [a for a in sys.argv[1:] if not a.startswith("--local_rank")]
train(GrpoConfig(init=init, train=data, out=out, prompts_per_step=4, mini_batch=4, micro_batch=4, group_size=4,
                 max_new_tokens=6, max_steps=2, lr=1e-2, save_every=1, deepspeed="zero2"), reward_fn=vowel_reward)
"""


@pytest.mark.slow
def test_two_process_deepspeed_zero2_on_cpu(fixtures, text_task, tmp_path):
    import os
    import shutil
    import subprocess

    if shutil.which("deepspeed") is None:
        pytest.skip("the deepspeed launcher is not installed")
    script = tmp_path / "run_grpo.py"
    script.write_text(DEEPSPEED_SCRIPT)
    out = tmp_path / "ds"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(
        [
            "deepspeed",
            "--num_gpus",
            "2",
            "--master_port",
            "29517",
            str(script),
            str(fixtures.omni),
            str(text_task),
            str(out),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = read_metrics(out)
    assert [r["step"] for r in rows] == [1, 2]
    assert all(r["responses"] == 16 and r["prompts"] == 4 for r in rows)  # 2 prompts x 4 on each of 2 ranks
    assert rows[0]["grad_norm"] > 0
    assert (out / "checkpoints" / "step-000002" / "deepspeed").is_dir()
    from safetensors.torch import load_file

    before = load_file(str(fixtures.omni / "model.safetensors"))
    after = load_file(str(out / "final" / "model.safetensors"))
    assert not torch.equal(after["thinker.lm_head.weight"], before["thinker.lm_head.weight"])


@pytest.mark.slow
def test_killed_cli_run_resumes_without_duplicates(fixtures, text_task, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "rl"
    args = [
        sys.executable,
        "-m",
        "hba_tools.grpo",
        "--init",
        str(fixtures.omni),
        "--train",
        str(text_task),
        "--out",
        str(out),
        "--prompts-per-step",
        "2",
        "--mini-batch",
        "1",
        "--group-size",
        "2",
        "--max-new-tokens",
        "4",
        "--max-steps",
        "6",
        "--save-every",
        "1",
        "--lr",
        "1e-3",
    ]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and not (out / "checkpoints" / "step-000002").exists():
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resuming from" in done.stderr
    assert [row["step"] for row in read_metrics(out)] == [1, 2, 3, 4, 5, 6]
    assert done.stdout.strip() == str(out / "final")

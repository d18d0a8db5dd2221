"""hba-sft on the fixture atlas: stages through the CLI, exact --resume, and a 2-process DeepSpeed ZeRO-2 run."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from click.testing import CliRunner  # noqa: E402

TEXT_ONLY = "mmpsy_depression,mmpsy_anxiety"  # text-only datasets: fast on CPU


def _args(fixtures, out, *extra):
    return [
        str(fixtures.atlas),
        "--data-root",
        str(fixtures.data),
        "--model",
        str(fixtures.omni),
        "-o",
        str(out),
        "--micro-batch",
        "2",
        "--batch-size",
        "2",
        "--warmup-steps",
        "1",
        "--lr",
        "1e-3",
        "--workers",
        "0",
        "--no-gradient-checkpointing",
        *extra,
    ]


def _tensors(path):
    from safetensors.torch import load_file

    return {**load_file(str(path / "adapter_model.safetensors")), **load_file(str(path / "heads.safetensors"))}


def test_cls_then_qa_then_predict(fixtures, tmp_path):
    from hba_core import schemas
    from hba_tools.predict import main as predict
    from hba_tools.sft import main as sft

    runner = CliRunner()
    result = runner.invoke(
        sft, ["cls", *_args(fixtures, tmp_path / "cls", "--datasets", TEXT_ONLY + ",cremad", "--epochs", "1")]
    )
    assert result.exit_code == 0, result.output
    best = tmp_path / "cls" / "best"
    assert result.stdout.strip().endswith(str(best))
    config = json.loads((best / "config.json").read_text())
    assert config["stage"] == "cls" and not schemas.errors(
        {k: v for k, v in config.items() if k not in ("lm_head_trained", "metrics")}, "run-config"
    )
    assert config["lm_head_trained"] is False and "ce" in config["metrics"]
    records = [json.loads(line) for line in (tmp_path / "cls" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "loss" in r]
    assert steps and all(k in steps[0] for k in ("lr", "samples_per_s", "tokens_per_s", "peak_memory_gb"))
    assert any("val/cremad/accuracy" in r for r in records)

    result = runner.invoke(
        sft, ["qa", *_args(fixtures, tmp_path / "qa", "--init", str(best), "--datasets", "siq2", "--epochs", "1")]
    )
    assert result.exit_code == 0, result.output
    qa_best = tmp_path / "qa" / "best"
    assert (qa_best / "lm_head.safetensors").exists()
    # qa trains only the LM head: LoRA and heads are those of the cls checkpoint, bit for bit.
    before, after = _tensors(best), _tensors(qa_best)
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)

    test = tmp_path / "test.jsonl"
    keep = {"mmpsy_depression", "cremad", "siq2"}
    test.write_text(
        "".join(
            line + "\n"
            for line in fixtures.atlas.read_text().splitlines()
            if '"test"' in line and json.loads(line)["dataset"] in keep
        )
    )
    out = tmp_path / "preds.jsonl"
    result = runner.invoke(
        predict,
        [
            "--model",
            str(qa_best),
            "--samples",
            str(test),
            "--data-root",
            str(fixtures.data),
            "--out",
            str(out),
            "--max-new-tokens",
            "4",
            "--workers",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 12 and len({r["id"] for r in rows}) == 12
    assert all(not schemas.errors(r, "prediction") for r in rows)
    cremad = [r for r in rows if r["dataset"] == "cremad"]
    assert all(abs(sum(r["probs"].values()) - 1) < 1e-4 and r["prediction"] in r["probs"] for r in cremad)
    assert all("probs" not in r for r in rows if r["dataset"] == "siq2")


def test_unknown_dataset_is_one_clear_line(fixtures, tmp_path):
    from hba_tools.sft import main as sft

    result = CliRunner().invoke(sft, ["cls", *_args(fixtures, tmp_path / "x", "--datasets", "cremd")])
    assert result.exit_code == 1
    assert "unknown dataset 'cremd'. Did you mean 'cremad'?" in result.output


def test_batch_size_must_divide(fixtures, tmp_path):
    from hba_tools.sft import main as sft

    result = CliRunner().invoke(
        sft, ["cls", *_args(fixtures, tmp_path / "x", "--datasets", TEXT_ONLY, "--batch-size", "3")]
    )
    assert result.exit_code == 1 and "not a multiple of micro-batch" in result.output


def test_resume_matches_an_uninterrupted_run(fixtures, tmp_path):
    """Stop after 3 optimizer steps, --resume, and end with exactly the weights and metrics of one straight run."""
    from hba_core.model.train import SftOptions, run_sft

    def options(out, **kw):
        return SftOptions(
            stage="cls",
            samples=str(fixtures.atlas),
            out=str(out),
            data_root=str(fixtures.data),
            model=str(fixtures.omni),
            datasets=TEXT_ONLY.split(","),
            micro_batch=2,
            batch_size=2,
            warmup_steps=1,
            lr=1e-3,
            epochs=2,
            workers=0,
            gradient_checkpointing=False,
            save_every=2,
            **kw,
        )

    straight = run_sft(options(tmp_path / "a"))
    first = run_sft(options(tmp_path / "b", max_steps=3))
    assert first["steps"] == 3 and not first["complete"]
    resumed = run_sft(options(tmp_path / "b", resume=True))
    assert resumed["steps"] == straight["steps"] == 8 and resumed["complete"]
    a, b = _tensors(tmp_path / "a" / "best"), _tensors(tmp_path / "b" / "best")
    assert all(torch.equal(a[k], b[k]) for k in a)
    last_a = torch.load(tmp_path / "a" / "last" / "state.pt", weights_only=True)
    last_b = torch.load(tmp_path / "b" / "last" / "state.pt", weights_only=True)
    assert all(torch.equal(last_a["params"][k], last_b["params"][k]) for k in last_a["params"])

    def losses(run):
        lines = (tmp_path / run / "metrics.jsonl").read_text().splitlines()
        return [(r["step"], r.get("loss"), r.get("val/ce")) for r in map(json.loads, lines)]

    assert losses("a") == losses("b")


def test_resume_without_state_is_a_clear_error(fixtures, tmp_path):
    from hba_tools.sft import main as sft

    result = CliRunner().invoke(sft, ["cls", *_args(fixtures, tmp_path / "new", "--datasets", TEXT_ONLY, "--resume")])
    assert result.exit_code == 1 and "no resumable state" in result.output


@pytest.mark.slow
def test_deepspeed_zero2_two_processes_on_cpu(fixtures, tmp_path):
    """`deepspeed --num_gpus 2` runs two CPU processes (gloo); both train, rank 0 writes best/."""
    launcher = shutil.which("deepspeed")
    if launcher is None:
        pytest.skip("deepspeed launcher not installed")
    out = tmp_path / "ds"
    with socket.socket() as free:  # another job may hold the default port 29500
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    cmd = [
        launcher,
        "--num_gpus",
        "2",
        "--master_port",
        str(port),
        "--module",
        "hba_tools.sft",
        "cls",
        *_args(fixtures, out, "--datasets", TEXT_ONLY + ",mmsd", "--epochs", "1", "--deepspeed", "zero2"),
    ]
    cmd[cmd.index("--batch-size") + 1] = "4"  # 2 per process x 2 processes
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] and summary["steps"] >= 2
    assert (out / "best" / "adapter_model.safetensors").exists()
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == list(range(1, summary["steps"] + 1))


def test_sft_help_lists_stages():
    from hba_core.model.sft_options import STAGES

    result = subprocess.run([sys.executable, "-m", "hba_tools.sft", "--help"], capture_output=True, text=True)
    commands = result.stdout.split("Commands:")[-1].split()
    assert result.returncode == 0 and all(stage in commands for stage in STAGES)


def test_joint_stage_trains_lora_heads_and_lm_head(fixtures, tmp_path):
    from hba_tools.sft import main as sft

    result = CliRunner().invoke(
        sft, ["joint", *_args(fixtures, tmp_path / "joint", "--datasets", "mmpsy_depression,siq2", "--epochs", "1")]
    )
    assert result.exit_code == 0, result.output
    best = tmp_path / "joint" / "best"
    config = json.loads((best / "config.json").read_text())
    assert config["stage"] == "joint" and config["lm_head_trained"] and (best / "lm_head.safetensors").exists()
    assert "mmpsy_depression/ce" in config["metrics"] and "siq2/lm_ce" in config["metrics"]


@pytest.mark.slow
def test_resume_after_a_real_kill(fixtures, tmp_path):
    """SIGKILL a running hba-sft after it saved a state, --resume, and match an uninterrupted run exactly."""
    import signal
    import time

    from hba_tools.sft import main as sft

    extra = ["--datasets", TEXT_ONLY, "--epochs", "2", "--save-every", "1"]
    assert CliRunner().invoke(sft, ["cls", *_args(fixtures, tmp_path / "a", *extra)]).exit_code == 0
    run = tmp_path / "b"
    proc = subprocess.Popen(
        [sys.executable, "-m", "hba_tools.sft", "cls", *_args(fixtures, run, *extra)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        metrics = run / "metrics.jsonl"
        if (run / "last" / "state.pt").exists() and metrics.exists() and metrics.read_text().count('"loss"') >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed; make it longer"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    result = CliRunner().invoke(sft, ["cls", *_args(fixtures, run, *extra, "--resume")])
    assert result.exit_code == 0, result.output
    a, b = _tensors(tmp_path / "a" / "best"), _tensors(run / "best")
    assert all(torch.equal(a[k], b[k]) for k in a)
    steps = [json.loads(line).get("loss") for line in (run / "metrics.jsonl").read_text().splitlines()]
    straight = [json.loads(line).get("loss") for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert steps == straight


@pytest.mark.slow
def test_deepspeed_resume_matches_an_uninterrupted_run(fixtures, tmp_path):
    launcher = shutil.which("deepspeed")
    if launcher is None:
        pytest.skip("deepspeed launcher not installed")

    def launch(out, *extra, returncode=0):
        with socket.socket() as free:
            free.bind(("127.0.0.1", 0))
            port = free.getsockname()[1]
        args = _args(fixtures, out, "--datasets", TEXT_ONLY + ",mmsd", "--epochs", "2", "--deepspeed", "zero2", *extra)
        args[args.index("--batch-size") + 1] = "4"
        cmd = [launcher, "--num_gpus", "2", "--master_port", str(port), "--module", "hba_tools.sft", "cls", *args]
        result = subprocess.run(
            cmd, capture_output=True, text=True, timeout=900, env={**os.environ, "OMP_NUM_THREADS": "1"}
        )
        assert result.returncode == returncode, result.stdout[-3000:] + result.stderr[-3000:]
        return result

    launch(tmp_path / "a")
    # Stopped before its first validation: the state is saved, but there is no best/ yet (exit 1, one clear line).
    stopped = launch(tmp_path / "b", "--max-steps", "2", returncode=1)
    assert "no best/ checkpoint was selected" in stopped.stderr and (tmp_path / "b" / "last").is_dir()
    launch(tmp_path / "b", "--resume")
    a, b = _tensors(tmp_path / "a" / "best"), _tensors(tmp_path / "b" / "best")
    assert all(torch.equal(a[k], b[k]) for k in a)

    def losses(run):
        return [json.loads(line).get("loss") for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]

    assert losses("a") == losses("b")


def test_samples_without_split_are_refused(fixtures, tmp_path):
    from hba_tools.sft import main as sft

    rows = [json.loads(line) for line in fixtures.atlas.read_text().splitlines()]
    index = next(i for i, r in enumerate(rows) if r["dataset"] == "mmpsy_depression")
    rows[index].pop("split")
    path = tmp_path / "nosplit.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = _args(fixtures, tmp_path / "x", "--datasets", TEXT_ONLY)
    args[0] = str(path)
    result = CliRunner().invoke(sft, ["cls", *args])
    assert result.exit_code == 1
    assert f"nosplit.jsonl:{index + 1}" in result.output and "no 'split' field" in result.output


def test_config_file_with_flags_overriding_it(fixtures, tmp_path):
    from hba_tools.sft import main as sft

    config = tmp_path / "run.toml"
    config.write_text('epochs = 1\nlr = 0.5\nlora_r = 4\ndatasets = ["mmpsy_depression"]\n')
    result = CliRunner().invoke(sft, ["cls", *_args(fixtures, tmp_path / "r", "--config", str(config))])
    assert result.exit_code == 0, result.output
    options = json.loads((tmp_path / "r" / "config.json").read_text())["options"]
    assert options["lora_r"] == 4 and options["epochs"] == 1 and options["datasets"] == ["mmpsy_depression"]
    assert options["lr"] == 1e-3  # the flag wins over the file
    config.write_text("learning_rate = 1\n")
    result = CliRunner().invoke(sft, ["cls", *_args(fixtures, tmp_path / "r2", "--config", str(config))])
    assert result.exit_code == 1 and "unknown options ['learning_rate']" in result.output


def test_bfloat16_joint_run(fixtures, tmp_path):
    """bf16 weights with fp32 trainable parameters (autocast): trains, validates and saves."""
    from hba_tools.sft import main as sft

    result = CliRunner().invoke(
        sft,
        [
            "joint",
            *_args(
                fixtures,
                tmp_path / "bf16",
                "--datasets",
                "mmpsy_depression,siq2",
                "--epochs",
                "1",
                "--dtype",
                "bfloat16",
            ),
        ],
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "bf16" / "best" / "config.json").read_text())["metrics"]
    assert metrics["ce"] < float("inf") and "siq2/lm_ce" in metrics


def test_max_steps_before_any_validation_says_there_is_no_best(fixtures, tmp_path):
    from hba_tools.sft import main as sft

    result = CliRunner().invoke(
        sft, ["cls", *_args(fixtures, tmp_path / "short", "--datasets", TEXT_ONLY, "--max-steps", "1")]
    )
    assert result.exit_code == 1 and "no best/ checkpoint was selected; add --eval-every N" in result.output
    assert result.stdout.count("\n") <= 1 and str(tmp_path / "short" / "best") not in result.stdout
    assert json.loads((tmp_path / "short" / "summary.json").read_text())["best"] is None
    ok = CliRunner().invoke(
        sft,
        ["cls", *_args(fixtures, tmp_path / "evald", "--datasets", TEXT_ONLY, "--max-steps", "1", "--eval-every", "1")],
    )
    assert ok.exit_code == 0 and ok.stdout.strip().endswith(str(tmp_path / "evald" / "best"))

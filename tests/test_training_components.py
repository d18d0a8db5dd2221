"""hba_core.training: atomic checkpoint directories under a polling reader, RNG resume, the metrics log,
the one DeepSpeed config builder, file modes under the umask, and the empty-micro-batch guard."""

from __future__ import annotations

import json
import os
import stat
import threading

import pytest

torch = pytest.importorskip("torch")

from hba_core.errors import InputError  # noqa: E402
from hba_core.jsonl import atomic_output  # noqa: E402
from hba_core.training.deepspeed import deepspeed_config  # noqa: E402
from hba_core.training.metrics_log import MetricsLog, truncate_metrics  # noqa: E402
from hba_core.training.state import (  # noqa: E402
    atomic_dir,
    capture_state,
    restore_state,
    rng_state,
    set_rng_state,
)

# ------------------------------------------------------------------ atomic_dir


def _write_version(target, version: int, n_files: int = 10) -> None:
    with atomic_dir(target) as tmp:
        for i in range(n_files):
            (tmp / f"part-{i:02d}.txt").write_text(f"{version}\n" * 200)
        (tmp / "DONE").write_text(str(version))


def test_a_polling_reader_never_sees_the_checkpoint_missing_or_half_written(tmp_path):
    target = tmp_path / "best"
    _write_version(target, 0)
    seen, problems, stop = set(), [], threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                fd = os.open(target, os.O_RDONLY)  # the path must always resolve to a complete directory
            except FileNotFoundError:
                problems.append("missing")
                continue
            try:
                names = sorted(os.listdir(fd))
                texts = []
                for name in names:  # read through the handle: one version, even if a newer one is swapped in
                    with open(os.open(name, os.O_RDONLY, dir_fd=fd)) as fh:
                        texts.append(fh.read())
                stale = False
            except FileNotFoundError:
                stale = True
            try:
                # Swapped out while we read (and being removed)? Then the path already shows a newer one.
                stale = stale or os.stat(target).st_ino != os.fstat(fd).st_ino
            except FileNotFoundError:
                problems.append("missing")
                continue
            finally:
                os.close(fd)
            if stale:
                continue
            versions = {text.split("\n")[0] for text in texts}
            if len(names) != 11 or len(versions) != 1 or any(text.count("\n") not in (0, 200) for text in texts):
                problems.append(f"half-written: {len(names)} files, versions {sorted(versions)}")
            seen.update(versions)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for version in range(1, 20):
            _write_version(target, version)
    finally:
        stop.set()
        thread.join()
    assert problems == []
    assert len(seen) > 1  # the reader really watched replacements happen
    assert (target / "DONE").read_text() == "19"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best"]  # no temp or old folder left behind


def test_a_failed_write_leaves_the_old_directory(tmp_path):
    target = tmp_path / "last"
    _write_version(target, 1)
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "DONE").write_text("2")
        raise RuntimeError("killed mid-write")
    assert (target / "DONE").read_text() == "1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]


def test_a_leftover_temp_folder_from_a_killed_run_is_cleared(tmp_path):
    stale = tmp_path / ".best.tmp"
    stale.mkdir()
    (stale / "junk").write_text("x")
    _write_version(tmp_path / "best", 1, n_files=1)
    assert sorted(os.listdir(tmp_path / "best")) == ["DONE", "part-00.txt"]
    assert not stale.exists()


# ------------------------------------------------------------------ umask


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_atomic_output_respects_the_umask(tmp_path, umask_022):
    path = tmp_path / "preds.jsonl"
    with atomic_output(path) as fh:
        fh.write(b"{}\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_atomic_dir_respects_the_umask(tmp_path, umask_022):
    _write_version(tmp_path / "best", 1, n_files=1)
    assert stat.S_IMODE((tmp_path / "best").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "best" / "DONE").stat().st_mode) == 0o644


def test_a_private_umask_stays_private(tmp_path):
    old = os.umask(0o077)
    try:
        with atomic_output(tmp_path / "x.jsonl") as fh:
            fh.write(b"{}\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "x.jsonl").stat().st_mode) == 0o600


# ------------------------------------------------------------------ resumable state


def _tiny_run(steps: int, path, state=None):
    """A few AdamW steps with dropout: a resumed run matches only if weights, optimizer and RNG all come back.

    The straight run saves its state to ``path`` after 3 steps (at once: the captured tensors share storage
    with the live ones, as in the recipes, which save them straight away)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0 / (s + 1))
    start = 0
    if state is not None:
        start = restore_state(state, model, optimizer, scheduler)["step"]
    losses = []
    for step in range(start, steps):
        x = torch.randn(16, 4)
        loss = model(x).pow(2).mean()
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        losses.append(float(loss.detach()))
        if step == 2 and state is None:
            torch.save(capture_state(model, optimizer, scheduler, {"step": step + 1}), path)
    return losses, model


def test_resume_restores_weights_optimizer_scheduler_and_cpu_rng(tmp_path):
    straight, model_a = _tiny_run(6, tmp_path / "state.pt")
    torch.manual_seed(123)  # a fresh process would start from some other RNG state
    resumed, model_b = _tiny_run(6, None, state=torch.load(tmp_path / "state.pt", weights_only=True))
    assert resumed == straight[3:]
    assert all(torch.equal(a, b) for a, b in zip(model_a.state_dict().values(), model_b.state_dict().values()))


def test_cpu_rng_round_trip():
    state = rng_state()
    first = torch.rand(5)
    set_rng_state(state)
    assert torch.equal(torch.rand(5), first)
    set_rng_state(state["torch"])  # the bare CPU tensor older SFT states hold
    assert torch.equal(torch.rand(5), first)


@pytest.mark.gpu
def test_cuda_rng_round_trip_through_a_saved_state(tmp_path):
    state = rng_state()
    assert "cuda" in state and len(state["cuda"]) == torch.cuda.device_count()
    torch.save(state, tmp_path / "rng.pt")
    first = torch.rand(5, device="cuda")
    torch.rand(100, device="cuda")
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert torch.equal(torch.rand(5, device="cuda"), first)


# ------------------------------------------------------------------ metrics log


def test_metrics_truncate_on_resume_and_drop_a_torn_line(tmp_path):
    log = MetricsLog(tmp_path / "metrics.jsonl")
    log.start(resume_step=None)
    for step in range(1, 6):
        log.log({"step": step, "loss": 1.0 / step})
    with open(log.path, "ab") as fh:
        fh.write(b'{"step": 6, "lo')  # a kill in the middle of a line
    log.start(resume_step=3)
    assert [r["step"] for r in log.read()] == [1, 2, 3]
    log.log({"step": 4, "loss": 0.25})
    assert [r["step"] for r in log.read()] == [1, 2, 3, 4]
    assert log.path.read_bytes().endswith(b"\n")


def test_a_fresh_run_starts_an_empty_log_and_other_ranks_write_nothing(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps({"step": 9}) + "\n")
    MetricsLog(path).start(resume_step=None)
    assert path.read_text() == ""
    other = MetricsLog(path, main=False)
    other.start(resume_step=None)
    other.log({"step": 1})
    assert path.read_text() == ""


def test_truncate_counts_what_it_dropped(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text("".join(json.dumps({"step": s}) + "\n" for s in (1, 2, 2, 3)) + '{"step"')
    assert truncate_metrics(path, 2) == 2
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [1, 2, 2]


def test_unknown_sink_is_one_clear_error(tmp_path):
    with pytest.raises(InputError, match="unknown sink 'tensorbored'; valid: none, tensorboard, wandb"):
        MetricsLog(tmp_path / "m.jsonl", report_to="tensorbored")


def test_grpo_refuses_an_unknown_sink_before_loading_anything():
    from hba_core.rl.config import GrpoConfig
    from hba_core.rl.trainer import check_config

    with pytest.raises(InputError, match="unknown sink 'tb'; valid: none, tensorboard, wandb"):
        check_config(GrpoConfig(init="m", train="t", out="o", report_to="tb"))


def test_tensorboard_sink_writes_event_files(tmp_path):
    pytest.importorskip("tensorboard")
    log = MetricsLog(tmp_path / "metrics.jsonl", report_to="tensorboard", project="hba-test")
    log.start(resume_step=None)
    log.log({"step": 1, "loss": 0.5, "val_scores": {"cremad": None}})
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


# ------------------------------------------------------------------ DeepSpeed config


def test_deepspeed_builder_stage_2_and_3():
    two = deepspeed_config("zero2", micro_batch=2, accumulation=8, max_grad_norm=1.0, bf16=True)
    assert two["zero_optimization"]["stage"] == 2
    assert two["zero_optimization"]["reduce_bucket_size"] == two["zero_optimization"]["allgather_bucket_size"] == 2e8
    assert (two["train_micro_batch_size_per_gpu"], two["gradient_accumulation_steps"]) == (2, 8)
    assert two["gradient_clipping"] == 1.0 and two["bf16"] == {"enabled": True}
    assert not any(k.startswith("_") for k in two)  # comments are not passed to DeepSpeed
    three = deepspeed_config("zero3", micro_batch=1, accumulation=4, max_grad_norm=0.5, bf16=False)
    assert three["zero_optimization"]["stage"] == 3 and three["bf16"] == {"enabled": False}
    unmanaged = deepspeed_config(
        "zero2", micro_batch=4, accumulation=16, max_grad_norm=1.0, bf16=False, managed_accumulation=False
    )
    assert unmanaged["gradient_accumulation_steps"] == 1 and unmanaged["managed_gradient_accumulation"] is False


def test_max_stage_refuses_zero3_for_grpo(tmp_path):
    with pytest.raises(InputError, match="ZeRO stage 3 is not supported by hba-grpo"):
        deepspeed_config(
            "zero3", micro_batch=1, accumulation=1, max_grad_norm=1.0, bf16=False, max_stage=2, tool="hba-grpo"
        )
    own = tmp_path / "mine.json"
    own.write_text(json.dumps({"zero_optimization": {"stage": 3}}))
    with pytest.raises(InputError, match="ZeRO stage 3"):
        deepspeed_config(str(own), micro_batch=1, accumulation=1, max_grad_norm=1.0, bf16=False, max_stage=2)


def test_deepspeed_config_errors_name_the_file(tmp_path):
    with pytest.raises(InputError, match="no DeepSpeed config 'zero4'; use zero2, zero3 or a JSON file"):
        deepspeed_config("zero4", micro_batch=1, accumulation=1, max_grad_norm=1.0, bf16=False)
    bad = tmp_path / "bad.json"
    bad.write_text('{"zero_optimization": \n')
    with pytest.raises(InputError) as info:
        deepspeed_config(str(bad), micro_batch=1, accumulation=1, max_grad_norm=1.0, bf16=False)
    assert f"{bad}:" in str(info.value) and "not valid JSON" in str(info.value)


def test_grpo_asks_for_max_stage_2():
    from hba_core.rl.config import GrpoConfig
    from hba_core.rl.policy import deepspeed_config as grpo_config

    config = GrpoConfig(init="m", train="t.jsonl", out="o", deepspeed="zero3")
    with pytest.raises(InputError, match="not supported by hba-grpo"):
        grpo_config(config, 2)
    config.deepspeed = "zero2"
    built = grpo_config(config, 2)
    assert built["zero_optimization"]["stage"] == 2 and built["gradient_accumulation_steps"] == 1


# ------------------------------------------------------------------ empty micro-batches


def _rows(fixtures):
    return [json.loads(line) for line in fixtures.atlas.read_text().splitlines()]


def _broken(sample, suffix="broken"):
    """The sample with media that cannot be decoded (a path that does not exist)."""
    return {**sample, "id": f"{sample['id']}-{suffix}", "audios": ["audio/does-not-exist.wav"]}


def test_sft_skips_and_counts_a_micro_batch_whose_every_sample_failed(fixtures, tmp_path):
    """One cremad sample with missing audio sits alone in its batch (its own signature): counted, not a crash."""
    from hba_core.model.train import SftOptions, run_sft

    rows = [r for r in _rows(fixtures) if r["dataset"] == "mmpsy_depression" and r["split"] in ("train", "val")]
    cremad = next(r for r in _rows(fixtures) if r["dataset"] == "cremad" and r["split"] == "train")
    samples = tmp_path / "samples.jsonl"
    samples.write_text("".join(json.dumps(r) + "\n" for r in [*rows, _broken(cremad)]))
    summary = run_sft(
        SftOptions(
            stage="cls",
            samples=str(samples),
            out=str(tmp_path / "run"),
            data_root=str(fixtures.data),
            model=str(fixtures.omni),
            micro_batch=2,
            batch_size=2,
            warmup_steps=1,
            epochs=1,
            workers=0,
            gradient_checkpointing=False,
        )
    )
    assert summary["complete"] and summary["skipped_samples"] == 1 and summary["best"]
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "loss" in r]
    assert len(steps) == summary["steps"] == 3  # 2 real batches + the empty one, still a step of the plan
    assert [r["loss"] for r in steps].count(None) == 1  # the empty step has no loss (not a fake 0)
    assert steps[-1]["skipped"] == 1


def test_grpo_step_whose_every_prompt_failed_is_skipped_and_counted(fixtures, tmp_path):
    """Two audio prompts with missing media make up all of step 2: it is logged as skipped, the run goes on."""
    from hba_core.rl.config import GrpoConfig
    from hba_core.rl.trainer import read_metrics, train

    rows = _rows(fixtures)
    text = [r for r in rows if r["modality_signature"] == "text" and r["split"] == "train"][:2]
    cremad = [r for r in rows if r["dataset"] == "cremad" and r["split"] == "train"][:2]
    samples = tmp_path / "train.jsonl"
    samples.write_text("".join(json.dumps(r) + "\n" for r in [*text, *(_broken(r) for r in cremad)]))
    messages: list[str] = []
    config = GrpoConfig(
        init=str(fixtures.omni),
        train=str(samples),
        out=str(tmp_path / "rl"),
        data_root=str(fixtures.data),
        prompts_per_step=2,
        mini_batch=2,
        micro_batch=8,
        rollout_batch=2,
        group_size=2,
        max_new_tokens=4,
        epochs=1,
        save_every=1,
        val_every=100,
        seed=1,
    )
    from hba_core.rl.trainer import step_prompts

    plan = [{s["id"] for s in step_prompts([*text, *(_broken(r) for r in cremad)], k, 2, 1)} for k in range(2)]
    broken_step = next(k for k, ids in enumerate(plan) if all(i.endswith("-broken") for i in ids))
    final = train(config, reward_fn=lambda texts, samples: {"total": [0.0] * len(texts)}, log=messages.append)
    lines = read_metrics(tmp_path / "rl")
    assert [r["step"] for r in lines] == [1, 2] and final.is_dir()
    assert lines[broken_step] == {"step": broken_step + 1, "prompts": 0, "responses": 0, "skipped": 2}
    assert lines[1 - broken_step]["prompts"] == 2 and lines[1 - broken_step]["skipped"] == 0
    assert any("skipped: no prompt had decodable media (2 prompts)" in m for m in messages)


def test_bam_skips_and_counts_a_dataset_whose_every_training_sample_failed(fixtures, tmp_path):
    """mmsd's training media all missing: no adapter is trained on nothing; the dataset is skipped with the
    reason and the failed ids, and urfunny still trains."""
    pytest.importorskip("mediapipe")
    from hba_core.bam.run import BamJob, run_bam
    from hba_core.bam.train import BamSettings
    from hba_core.descriptors.extract import run_extract
    from hba_core.descriptors.video import VideoConfig
    from hba_core.model.backbone import LoraSettings, add_lora, load_processor, load_thinker
    from hba_core.model.checkpoint import run_config, save_checkpoint
    from hba_core.model.heads import default_label_space
    from hba_core.model.omnisapiens import OmniSapiens

    torch.manual_seed(0)
    model = OmniSapiens(add_lora(load_thinker(str(fixtures.omni)), LoraSettings(4, 8, 0.0)), default_label_space())
    config = run_config(
        tool="hba-sft",
        stage="cls",
        base_model=str(fixtures.omni),
        init=None,
        label_space=model.label_space,
        datasets=["mmsd", "urfunny"],
        options={},
        seed=0,
    )
    ckpt = save_checkpoint(model, tmp_path / "sft", config, processor=load_processor(str(fixtures.omni)))
    rows = [r for r in _rows(fixtures) if r["dataset"] in ("mmsd", "urfunny") and r["split"] in ("train", "val")]
    good = tmp_path / "good.jsonl"
    good.write_text("".join(json.dumps(r) + "\n" for r in rows))
    run_extract(good, fixtures.data, tmp_path / "desc.zarr", ("audio",), video=VideoConfig(fps=1.0))
    broken = [
        {**r, "videos": ["video/missing.mp4"]} if r["dataset"] == "mmsd" and r["split"] == "train" else r for r in rows
    ]
    samples = tmp_path / "samples.jsonl"
    samples.write_text("".join(json.dumps(r) + "\n" for r in broken))
    log = tmp_path / "log.txt"
    with open(log, "w") as fh:
        summary = run_bam(
            BamJob(
                checkpoint=str(ckpt),
                samples=str(samples),
                store=str(tmp_path / "desc.zarr"),
                datasets=["mmsd", "urfunny"],
                data_root=str(fixtures.data),
                out=str(tmp_path / "bam"),
                streams=("audio",),
                settings=BamSettings(epochs=1),
                fps=1.0,
                max_frames=2,
            ),
            log=fh,
        )
    mmsd = summary["datasets"]["mmsd"]
    assert mmsd["skipped"].startswith("no training sample left: the media of all 4 failed")
    assert len(mmsd["media_failed"]) == 4 and "saved" not in mmsd
    assert not (tmp_path / "bam" / "mmsd").exists()
    assert "saved" in summary["datasets"]["urfunny"]
    assert "bam: mmsd: skipped - no training sample left" in log.read_text()


@pytest.mark.slow
def test_sft_under_deepspeed_a_rank_with_an_empty_micro_batch_joins_the_step(fixtures, tmp_path):
    """Two CPU processes (ZeRO-2): the broken cremad sample empties one rank's micro-batch; that rank
    back-propagates a zero loss, so the collective step meets and the run completes."""
    import shutil
    import socket
    import subprocess

    launcher = shutil.which("deepspeed")
    if launcher is None:
        pytest.skip("deepspeed launcher not installed")
    rows = [r for r in _rows(fixtures) if r["dataset"] == "mmpsy_depression" and r["split"] in ("train", "val")]
    cremad = next(r for r in _rows(fixtures) if r["dataset"] == "cremad" and r["split"] == "train")
    samples = tmp_path / "samples.jsonl"
    anxiety = [r for r in _rows(fixtures) if r["dataset"] == "mmpsy_anxiety" and r["split"] == "train"][:2]
    # 4 batches of 2 (2 per rank, none dropped by sharding); the cremad one is empty after collation
    batch = [*rows, *anxiety, _broken(cremad), _broken(cremad, "b2")]
    samples.write_text("".join(json.dumps(r) + "\n" for r in batch))
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    out = tmp_path / "ds"
    cmd = [launcher, "--num_gpus", "2", "--master_port", str(port), "--module", "hba_tools.sft", "cls", str(samples)]
    cmd += ["--data-root", str(fixtures.data), "--model", str(fixtures.omni), "-o", str(out), "--micro-batch", "2"]
    cmd += ["--batch-size", "4", "--warmup-steps", "1", "--workers", "0", "--no-gradient-checkpointing"]
    cmd += ["--epochs", "1", "--deepspeed", "zero2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] and summary["skipped_samples"] == 2

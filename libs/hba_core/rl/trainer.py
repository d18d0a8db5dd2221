"""The GRPO / RLOO recipe of OmniSapiens-7B RL (paper §3.7, App. B.2, C.2): setup -> steps -> final model.

Each step (:func:`hba_core.rl.step.train_step`): take the next ``prompts_per_step`` training samples
(a fixed shuffle per epoch), sample ``group_size`` responses each (prompt = problem + think template),
reward them (Eq. 5), turn rewards into advantages per group (GRPO or RLOO), and make
``prompts_per_step / mini_batch`` clipped-surrogate updates accumulated over micro-batches. After each
step: one line in ``metrics.jsonl``; every ``save_every`` steps a checkpoint (a killed run resumes from
the newest one: same data order, same RNG, same weights and optimizer state); every ``val_every``
steps greedy generation on the validation samples, scored with the rewards and with :mod:`hba_core.scoring`
(the metrics of hba-score). At the end, ``final/`` holds the Thinker + processor for hba-predict.

Runs in one process (CPU or one GPU) or under ``deepspeed --num_gpus N`` (the ZeRO-2 config of
:mod:`hba_core.training.deepspeed`; ZeRO-3 is refused): each rank takes every N-th prompt of a step;
DeepSpeed averages gradients. Processes, RNG state, checkpoint directories and the metrics log are the
shared components of :mod:`hba_core.training`, as in hba-sft.

>>> from hba_core.rl.config import GrpoConfig                                      # doctest: +SKIP
>>> train(GrpoConfig(init="Qwen/Qwen2.5-Omni-7B", train="train.jsonl", out="runs/rl"))  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from hba_core import registry
from hba_core.errors import InputError, first_few
from hba_core.jsonl import atomic_output, iter_jsonl
from hba_core.rewards import training_reward
from hba_core.rl import checkpoint as ckpt
from hba_core.rl.config import GrpoConfig
from hba_core.rl.policy import Policy
from hba_core.rl.step import RewardFn, train_step
from hba_core.sample_checks import require_sample, where_of
from hba_core.samples import group_by_signature, iter_samples
from hba_core.threads import configure_torch_threads
from hba_core.training.distributed import all_gather, init_distributed, shutdown_distributed
from hba_core.training.metrics_log import SINKS, MetricsLog
from hba_core.training.state import rng_state, set_rng_state

METRICS = "metrics.jsonl"


def default_reward(weights: dict[str, float], name: str = "paper") -> RewardFn:
    """The reward ``name`` (``--reward``) against each sample's gold ``answer`` and ``dataset``:
    ``{"total", "accuracy", "format", "similarity"}`` (harpo adds ``overlong``)."""
    return training_reward(name, weights)


def load_prompts(path: str) -> list[dict[str, Any]]:
    """GRPO samples: every one needs a non-empty string ``answer`` (all problems reported at once)."""
    samples, problems = [], []
    for line, sample in iter_samples(path, media=True):
        require_sample(sample, where_of(path, line, sample))
        if not (isinstance(sample.get("answer"), str) and sample["answer"].strip()):
            problems.append(f"{path}:{line} ({sample['id']})")
        samples.append(sample)
    if problems:
        raise InputError(
            problems[0],
            f"{len(problems)} samples have no gold 'answer' (GRPO rewards need it): "
            f"{first_few(problems)}; fix or remove them",
        )
    if not samples:
        raise InputError(path, "no samples")
    return samples


def step_prompts(samples: list[dict[str, Any]], step: int, per_step: int, seed: int) -> list[dict[str, Any]]:
    """The prompts of global step ``step`` (0-based): a pure function of (samples, step, seed).

    Each epoch is a fresh shuffle seeded by (seed, epoch); the tail that does not fill a step is dropped.
    """
    steps_per_epoch = max(len(samples) // per_step, 1)
    epoch, index = divmod(step, steps_per_epoch)
    order = list(range(len(samples)))
    random.Random(seed * 100_003 + epoch).shuffle(order)
    return [samples[i] for i in order[index * per_step : (index + 1) * per_step]]


def total_steps(config: GrpoConfig, n_samples: int) -> int:
    steps = max(n_samples // config.prompts_per_step, 1) * config.epochs
    return min(steps, config.max_steps) if config.max_steps is not None else steps


def check_config(config: GrpoConfig) -> None:
    """Flag combinations that cannot work, as one clear line each."""
    if config.group_size < 2:
        raise InputError("--group-size", "a group needs at least 2 responses (advantages compare them)")
    if config.prompts_per_step % config.mini_batch:
        raise InputError(
            "--mini-batch", f"{config.mini_batch} does not divide --prompts-per-step {config.prompts_per_step}"
        )
    if config.estimator not in registry.estimators():
        unknown = registry.UnknownNameError("advantage estimator", config.estimator, registry.estimators())
        raise InputError("--estimator", str(unknown))
    if config.beta < 0 or not 0 < config.clip_eps < 1:
        raise InputError("--beta/--clip-eps", "need beta >= 0 and 0 < clip-eps < 1")
    if config.report_to not in SINKS:
        raise InputError("--report-to", f"unknown sink {config.report_to!r}; valid: {', '.join(SINKS)}")


def train(
    config: GrpoConfig,
    reward_fn: RewardFn | None = None,
    log: Callable[[str], None] = lambda m: print(m, file=sys.stderr),
) -> Path:
    """Run (or resume) GRPO; returns the ``final/`` model directory."""
    check_config(config)
    dist = init_distributed()
    configure_torch_threads(workers=0)  # rollouts decode media in this process
    rank, world = dist.rank, dist.world_size
    out = Path(config.out)
    train_samples = load_prompts(config.train)
    val_samples = load_prompts(config.val)[: config.val_limit] if config.val else []
    if len(train_samples) < config.prompts_per_step:
        raise InputError(
            config.train,
            f"{len(train_samples)} samples, fewer than --prompts-per-step {config.prompts_per_step}; lower it",
        )
    reward_fn = reward_fn or default_reward(config.reward_weights, config.reward)
    torch.manual_seed(config.seed + rank)
    policy = Policy(config, world_size=world)  # loads the newest checkpoint of `out` when there is one
    start = 0
    if policy.resume_from is not None:
        state = ckpt.read_trainer_state(policy.resume_from)
        start = int(state["step"])
        if policy.engine is not None:
            policy.engine.load_checkpoint(str(policy.resume_from / "deepspeed"), tag="state")
        else:
            policy.optimizer.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"][rank])
        policy.harpo.load_state_dict(state.get("harpo", {}))  # HARPO's EMAs resume exactly (empty otherwise)
        if rank == 0:
            log(f"resuming from {policy.resume_from} (step {start})")
    steps = total_steps(config, len(train_samples))
    metrics = MetricsLog(out / METRICS, main=rank == 0, report_to=config.report_to, project="hba-grpo")
    if rank == 0:
        _write_run_config(out, config)
    metrics.start(resume_step=start)  # lines logged after the checkpoint are redone
    for step in range(start, steps):
        prompts = step_prompts(train_samples, step, config.prompts_per_step, config.seed)[rank::world]
        line = train_step(policy, prompts, step, reward_fn, world=world)
        policy.rollout.sync_weights(policy.model)  # the next rollouts sample from the updated policy
        if val_samples and (step + 1) % config.val_every == 0:
            line.update(validate(policy, val_samples[rank::world], reward_fn, world))
        metrics.log(line)
        if rank == 0:
            log(_summary(line, steps))
        if (step + 1) % config.save_every == 0 or step + 1 == steps:
            _save(policy, out, step + 1, rank, world)
    final = out / "final"
    if rank == 0:
        final = ckpt.write_final(out, policy.model, policy.processor)
        log(f"final model: {final}")
    shutdown_distributed()  # cleanup: every rank waits for the final model; an open gloo/shm group can abort at exit
    return final


@torch.no_grad()
def validate(policy: Policy, samples: list[dict[str, Any]], reward_fn: RewardFn, world: int) -> dict[str, Any]:
    """Greedy answers on ``samples``: mean rewards, and the hba-score metrics of the datasets present."""
    from hba_core.model.omnisapiens import generate

    texts: list[str] = []
    kept: list[dict[str, Any]] = []
    start = time.perf_counter()
    policy.model.eval()  # validation generates as evaluation does; train() again below
    for i in range(0, len(samples), policy.config.rollout_batch):
        chunk = [policy.prompt(s) for s in samples[i : i + policy.config.rollout_batch]]
        for indices in group_by_signature(chunk).values():
            group = [chunk[j] for j in indices]
            batch = policy.collate(group)
            if batch.ids:
                texts += generate(
                    policy.model,
                    batch.to(policy.device),
                    policy.processor.tokenizer,
                    max_new_tokens=policy.config.max_new_tokens,
                    greedy=True,
                )
                by_id = {s["id"]: s for s in group}
                kept += [by_id[sid] for sid in batch.ids]
    policy.model.train()
    rewards = reward_fn(texts, kept) if kept else {"total": []}
    line = {
        f"val_reward_{k}" if k != "total" else "val_reward": (sum(v) / len(v) if v else 0.0) for k, v in rewards.items()
    }
    line["val_samples"] = len(kept)
    line["val_seconds"] = time.perf_counter() - start
    if world == 1:
        line["val_scores"] = _scores(kept, texts)
    return line


def _scores(samples: list[dict[str, Any]], texts: list[str]) -> dict[str, float | None]:
    """hba-score's metric per dataset (free-text datasets need judgments: reported as None)."""
    from hba_core.scoring import predictions_from_rows, score_model, truth_from_rows

    truth = truth_from_rows(samples)
    preds = predictions_from_rows("policy", [{"id": s["id"], "prediction": t} for s, t in zip(samples, texts)], truth)
    section, _ = score_model(truth, preds)
    return {name: report.get("value") for name, report in section["datasets"].items()}


def _save(policy: Policy, out: Path, step: int, rank: int, world: int) -> None:
    state: dict[str, Any] = {"step": step, "rng": all_gather(rng_state())}  # every rank's CPU + CUDA RNG
    state["harpo"] = policy.harpo.state_dict()  # identical on every rank (computed on the gathered batch)
    if policy.engine is None:
        state["optimizer"] = policy.optimizer.state_dict()
    ckpt.write_checkpoint(
        out,
        step,
        policy=policy.model,
        processor=policy.processor,
        trainer_state=state,
        deepspeed_engine=policy.engine,
        is_main=rank == 0,
    )


def _write_run_config(out: Path, config: GrpoConfig) -> None:
    from hba_core.model.checkpoint import run_config

    options = dataclasses.asdict(config)
    rc = run_config(
        tool="hba-grpo",
        stage=config.estimator,
        base_model=config.init,
        init=config.init,
        label_space={},
        datasets=[],
        options=options,
        seed=config.seed,
    )
    with atomic_output(out / "run-config.json") as fh:
        fh.write(json.dumps(rc, indent=2).encode() + b"\n")


def _summary(line: dict[str, Any], steps: int) -> str:
    if "reward" not in line:  # every prompt of the step was skipped
        return f"step {line['step']}/{steps} | skipped: no prompt had decodable media ({line['skipped']} prompts)"
    parts = [f"step {line['step']}/{steps}", f"reward {line['reward']:.3f}"]
    parts += [f"{k.removeprefix('reward_')} {line[k]:.3f}" for k in line if k.startswith("reward_")]
    parts += [
        f"format {line['format_rate']:.2f}",
        f"len {line['response_length']:.0f}",
        f"clip {line.get('clip_fraction', 0):.3f}",
        f"rollout {line['rollout_tokens_per_s']:.0f} tok/s",
        f"train {line['train_tokens_per_s']:.0f} tok/s",
    ]
    if "val_reward" in line:
        parts.append(f"val reward {line['val_reward']:.3f}")
    return " | ".join(parts)


def read_metrics(out: str | Path) -> list[dict[str, Any]]:
    """The metrics lines of a run directory."""
    return [row for _, row in iter_jsonl(Path(out) / METRICS)]

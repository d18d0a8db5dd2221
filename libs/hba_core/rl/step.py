"""One GRPO step, in pieces: rollouts -> rewards -> advantages -> pi_old log-probs -> PPO updates -> metrics.

:func:`train_step` chains them; :mod:`hba_core.rl.trainer` calls it once per step. Rows of a step are
the prompts repeated ``group_size`` times (a prompt's rows adjacent), so rewards reshape to (P, G).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from hba_core import registry
from hba_core.answers import extract_boxed, has_think
from hba_core.errors import HbaError, InputError
from hba_core.rl.advantages import compute_advantages
from hba_core.rl.loss import clipped_surrogate_loss
from hba_core.rl.policy import Policy
from hba_core.rl.rollout import PromptBatch, SamplingConfig, response_tensors
from hba_core.samples import group_by_signature
from hba_core.training.distributed import all_gather, launcher_env

# fn(completions, samples) -> {"total": [...], term: [...]}: every key's mean is logged as reward_<key>.
log = logging.getLogger(__name__)
RewardFn = Callable[[list[str], list[dict[str, Any]]], dict[str, list[float]]]


@dataclass
class Rollouts:
    """One step's responses, one entry per row (prompt repeated group_size times, rows of a prompt adjacent)."""

    samples: list[dict[str, Any]]  # templated sample of each row
    responses: list[list[int]]
    texts: list[str]
    prepared: dict[str, Any]  # sample id -> decoded media + chat text (collate.Prepared), reused for training
    skipped: list[tuple[str, str]]  # (sample id, why): undecodable media, counted in the metrics
    prepare_seconds: float  # media decoding + chat template
    generate_seconds: float  # processor + generate


def prepare_prompts(policy: Policy, prompts: Sequence[dict[str, Any]]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Decode each prompt's media once per step (its G rollouts and all its micro-batches reuse it)."""
    from hba_core.model.collate import prepare_sample

    prepared, skipped = {}, []
    for sample in prompts:
        try:
            prepared[sample["id"]] = prepare_sample(
                policy.prompt(sample), policy.processor, policy.media, with_target=False
            )
        except HbaError as exc:
            log.warning("skipping sample %s: %s", sample["id"], exc)
            skipped.append((sample["id"], str(exc)))
    return prepared, skipped


def encode_rows(policy: Policy, prepared: list[Any]) -> Any:
    """Thinker inputs (left-padded collate.Batch, on the policy's device) for prepared rows of one signature."""
    from hba_core.model.collate import encode_batch

    return encode_batch(prepared, policy.processor, policy.media).to(policy.device)


def generate_rollouts(
    policy: Policy, prompts: Sequence[dict[str, Any]], sampling: SamplingConfig, group: int, batch_prompts: int
) -> Rollouts:
    """Sample ``group`` responses per prompt, in generate calls of ``batch_prompts`` prompts of one signature."""
    start = time.perf_counter()
    prepared, skipped = prepare_prompts(policy, prompts)
    prepare_seconds = time.perf_counter() - start
    rows, responses = [], []
    kept = [s for s in prompts if s["id"] in prepared]
    for chunk in _signature_chunks(kept, batch_prompts):
        chunk_rows = [s for s in chunk for _ in range(group)]
        batch = encode_rows(policy, [prepared[s["id"]] for s in chunk_rows])
        _check_prompt_length(batch, policy.config.max_prompt_tokens)
        responses.extend(policy.rollout.generate(PromptBatch(chunk_rows, batch.inputs), sampling))
        rows.extend(chunk_rows)
    texts = policy.processor.tokenizer.batch_decode(responses, skip_special_tokens=True)
    return Rollouts(
        rows, responses, texts, prepared, skipped, prepare_seconds, time.perf_counter() - start - prepare_seconds
    )


def _signature_chunks(samples: list[dict[str, Any]], size: int) -> list[list[dict[str, Any]]]:
    """Consecutive chunks of at most ``size`` samples that share a modality signature (the processor needs it)."""
    groups = [[samples[i] for i in indices] for indices in group_by_signature(samples).values()]
    return [group[i : i + size] for group in groups for i in range(0, len(group), size)]


def _check_prompt_length(batch: Any, limit: int) -> None:
    lengths = batch.inputs["attention_mask"].sum(dim=1)
    for sid, n in zip(batch.ids, lengths.tolist()):
        if n > limit:
            raise InputError(
                sid, f"prompt is {n} tokens, over --max-prompt-tokens {limit}; raise it or lower the media limits"
            )


@dataclass
class MicroBatch:
    inputs: Any  # collate Batch (prompts, left-padded), on device
    response_ids: torch.Tensor  # (B, R)
    response_mask: torch.Tensor  # (B, R)
    advantages: torch.Tensor  # (B,)
    old_logp: torch.Tensor | None = None  # (B, R)
    ref_logp: torch.Tensor | None = None  # (B, R)
    prompt_index: list[int] = field(default_factory=list)  # which prompt group each row belongs to

    @property
    def n_tokens(self) -> int:
        return int(self.inputs.inputs["attention_mask"].sum() + self.response_mask.sum())


def build_micro_batches(policy: Policy, rollouts: Rollouts, advantages: torch.Tensor, group: int) -> list[MicroBatch]:
    """Micro-batches of ``micro_batch`` rows that never cross a modality signature, with their advantages."""
    size = policy.config.micro_batch
    micro = []
    for sig_rows in group_by_signature(rollouts.samples).values():
        for i in range(0, len(sig_rows), size):
            idx = sig_rows[i : i + size]
            batch = encode_rows(policy, [rollouts.prepared[rollouts.samples[r]["id"]] for r in idx])
            ids, mask = response_tensors([rollouts.responses[r] for r in idx], policy.pad_id)
            micro.append(
                MicroBatch(
                    batch,
                    ids.to(policy.device),
                    mask.to(policy.device),
                    advantages[idx].to(policy.device),
                    prompt_index=[r // group for r in idx],
                )
            )
    return micro


def response_logp(module: Any, mb: MicroBatch, temperature: float) -> torch.Tensor:
    """Log-probs (B, R) of the micro-batch's responses at the sampling temperature (pi_old, pi_theta, pi_ref)."""
    from hba_core.model.omnisapiens import response_logprobs

    return response_logprobs(module, mb.inputs, mb.response_ids, mb.response_mask, temperature=temperature)


@torch.no_grad()
def fill_reference_logps(policy: Policy, micro: list[MicroBatch], *, old: bool) -> None:
    """pi_old (the policy as it sampled) and, with beta > 0, pi_ref log-probs of every response token.

    The policy's dropout is off (:func:`~hba_core.rl.policy.disable_dropout`), so eval mode here and train
    mode in the updates compute the same network: before the first update pi_theta / pi_old is exactly 1.
    """
    temperature = policy.config.temperature
    policy.model.eval()
    for mb in micro:
        if old:
            mb.old_logp = response_logp(policy.forward_module, mb, temperature)
        if policy.config.beta > 0:
            if policy.ref_model is not None:
                mb.ref_logp = response_logp(policy.ref_model, mb, temperature)
            else:
                with policy.model.disable_adapter():  # LoRA: the base weights are the reference
                    mb.ref_logp = response_logp(policy.model, mb, temperature)
    policy.model.train()


def ppo_updates(policy: Policy, micro: list[MicroBatch], *, step_seed: int) -> dict[str, float]:
    """``ppo_epochs`` passes; each splits the step's prompt groups into ``prompts_per_step / mini_batch`` shuffled
    mini-batches (one optimizer step each), a micro-batch going with the prompt of its first row.

    Every rank makes the same number of optimizer steps (DeepSpeed's reductions are collective): a rank
    left without rows in a mini-batch (skipped prompts) back-propagates a zero-weighted micro-batch.
    """
    cfg = policy.config
    n_mini = cfg.prompts_per_step // cfg.mini_batch
    stats = {"loss": [], "clip_fraction": [], "kl": [], "grad_norm": [], "ratio": []}
    tokens, start = 0, time.perf_counter()
    rng = random.Random(step_seed)
    for _ in range(cfg.ppo_epochs):
        prompt_ids = sorted({p for mb in micro for p in mb.prompt_index})
        rng.shuffle(prompt_ids)
        mini_of = {p: i * n_mini // max(len(prompt_ids), 1) for i, p in enumerate(prompt_ids)}
        for m in range(n_mini):
            members = [mb for mb in micro if mini_of[mb.prompt_index[0]] == m]
            rows = sum(len(mb.prompt_index) for mb in members)
            if not members and policy.engine is None:
                continue
            for mb in members or micro[:1]:
                logp = response_logp(policy.forward_module, mb, cfg.temperature)
                old = mb.old_logp if mb.old_logp is not None else logp.detach()
                out = clipped_surrogate_loss(
                    logp,
                    old,
                    mb.advantages,
                    mb.response_mask,
                    clip_eps=cfg.clip_eps,
                    ref_logp=mb.ref_logp,
                    beta=cfg.beta,
                )
                weight = len(mb.prompt_index) / rows if members else 0.0  # exact mean over the mini-batch
                policy.backward_step(out.loss * weight)
                stats["loss"].append(float(out.loss.detach()))
                stats["clip_fraction"].append(out.clip_fraction)
                stats["ratio"].append(out.ratio_mean)
                if out.kl is not None:
                    stats["kl"].append(out.kl)
                tokens += mb.n_tokens
            stats["grad_norm"].append(policy.optimizer_step())
    seconds = time.perf_counter() - start
    summary = {k: sum(v) / len(v) for k, v in stats.items() if v}
    summary["train_tokens_per_s"] = tokens / seconds if seconds else 0.0
    summary["train_seconds"] = seconds
    return summary


def step_advantages(policy: Policy, total: torch.Tensor, prompts: Sequence[dict[str, Any]]) -> torch.Tensor:
    """Advantages (P, G) of this rank's rewards ``total`` (P, G) for its ``prompts`` (P,).

    HARPO rebalances across tasks with a running state, which must be the same on every rank: the ranks'
    rewards and tasks are gathered, HARPO runs on the whole step's batch (in rank order, as one process
    would see it), and each rank keeps its own rows. GRPO and RLOO are per prompt and need no gathering.
    """
    cfg = policy.config
    if cfg.estimator != "harpo":
        return compute_advantages(total, cfg.estimator, cfg.adv_eps)
    tasks = [registry.dataset(s["dataset"]).task.code for s in prompts]
    gathered = all_gather((total.tolist(), tasks))  # [(rewards, tasks)] in rank order; [ours] in one process
    rank = launcher_env()[0] if len(gathered) > 1 else 0
    offset = sum(len(names) for _, names in gathered[:rank])
    every = torch.tensor([row for rows, _ in gathered for row in rows], dtype=total.dtype)  # (P_all, G)
    names = [name for _, names in gathered for name in names]
    advantages = compute_advantages(every, "harpo", tasks=names, harpo_state=policy.harpo)
    return advantages[offset : offset + total.shape[0]]


def train_step(
    policy: Policy, prompts: list[dict[str, Any]], step: int, reward_fn: RewardFn, world: int = 1
) -> dict[str, Any]:
    """One GRPO step on this rank's prompts; returns its metrics line (averaged over ranks)."""
    cfg = policy.config
    sampling = SamplingConfig(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p)
    rollouts = generate_rollouts(policy, prompts, sampling, cfg.group_size, cfg.rollout_batch)
    if not rollouts.samples:  # every prompt's media failed: skipped and counted, as a single prompt is
        return _skipped_step(policy, step, rollouts.skipped, world)
    rewards = reward_fn(rollouts.texts, rollouts.samples)
    total = torch.tensor(rewards["total"], dtype=torch.float32).view(-1, cfg.group_size)  # (P, G)
    advantages = step_advantages(policy, total, rollouts.samples[:: cfg.group_size]).view(-1)  # (P*G,)
    micro = build_micro_batches(policy, rollouts, advantages, cfg.group_size)
    n_prompts = total.shape[0]
    single_update = cfg.ppo_epochs == 1 and cfg.mini_batch >= cfg.prompts_per_step
    start = time.perf_counter()
    fill_reference_logps(policy, micro, old=not single_update)
    logp_seconds = time.perf_counter() - start
    update = ppo_updates(policy, micro, step_seed=cfg.seed * 1_000_003 + step)
    lengths = [len(r) for r in rollouts.responses]
    gen_tokens = sum(lengths)
    line: dict[str, Any] = {"step": step + 1, "prompts": n_prompts, "responses": len(lengths)}
    line.update({f"reward_{k}" if k != "total" else "reward": sum(v) / len(v) for k, v in rewards.items()})
    line["format_rate"] = sum(has_think(t) and extract_boxed(t) is not None for t in rollouts.texts) / len(lengths)
    line["response_length"] = gen_tokens / len(lengths)
    line["truncated_rate"] = sum(not r or r[-1] != policy.eos_id for r in rollouts.responses) / len(lengths)
    line["rollout_tokens_per_s"] = gen_tokens / rollouts.generate_seconds if rollouts.generate_seconds else 0.0
    line["rollout_seconds"] = rollouts.generate_seconds
    line["media_seconds"] = rollouts.prepare_seconds
    line["logp_seconds"] = logp_seconds
    line.update(update)
    line["skipped"] = len(rollouts.skipped)
    return _reduce_metrics(line, world)


def _skipped_step(policy: Policy, step: int, skipped: list[tuple[str, str]], world: int) -> dict[str, Any]:
    """The step of a rank left without any prompt: in one process a line with the counts and no update.

    Across processes the others' collective backward passes would wait for this rank, and ZeRO needs a
    real batch to join them; there is none, so this is an error naming the samples.
    """
    if world > 1:
        ids = ", ".join(sample_id for sample_id, _ in skipped[:3])
        raise InputError(
            f"step {step + 1}",
            f"every prompt of rank {torch.distributed.get_rank()} was skipped (undecodable media: {ids}); "
            "fix or remove those samples",
        )
    log.warning("step %d: every prompt was skipped (%d), no update", step + 1, len(skipped))
    return {"step": step + 1, "prompts": 0, "responses": 0, "skipped": len(skipped)}


def _reduce_metrics(line: dict[str, Any], world: int) -> dict[str, Any]:
    """Averages (sums for counts) over the ranks that have a value; identity in one process."""
    if world == 1:
        return line
    lines: list[Any] = [None] * world
    torch.distributed.all_gather_object(lines, line)
    sums = {"prompts", "responses", "skipped", "rollout_tokens_per_s", "train_tokens_per_s"}
    merged: dict[str, Any] = {}
    for other in lines:  # a rank whose prompts were all skipped has only the counts
        merged.update({k: v for k, v in other.items() if k not in merged})
    for key, value in list(merged.items()):
        if isinstance(value, (int, float)) and key != "step":
            values = [float(other[key]) for other in lines if key in other]
            merged[key] = type(value)(sum(values)) if key in sums else sum(values) / len(values)
    return merged

"""HARPO advantages (OmniSapiens 2.0, arXiv 2602.10635): GRPO, rebalanced across tasks and prompts.

The Atlas mixes tasks whose rewards live on very different scales (a binary label is right or wrong; a
free-text answer earns a graded similarity). Plain GRPO normalises inside each prompt's group only, so
tasks whose groups carry more spread dominate the update. HARPO keeps GRPO's per-prompt normalisation
and multiplies each advantage by two factors, as the reference's active defaults do
(``patches/0002-hba-harpo-advantage.patch``, ``compute_harpo_outcome_advantage`` with the
``task_mixture_density_adapter`` on, responsibilities off, geometric scaling)::

    A_pg   = (r_pg - mean_g r_p) / max(std_g r_p, eps)          # population std, per prompt p
    rho_t  = EMA_beta( mean_{p in t, g} |A_pg| )                 # task t's signal density
    s_t    = clip( exp( EMA_beta( log gmean_t' rho_t' - log rho_t ) ), 0.5, 4 )
    m_p    = mean_g |A_pg|;   s_p = clip( gmean_{p' in t} m_p' / m_p, 0.5, 3 )   # within a task
    A'_pg  = A_pg * s_t * s_p

Where hba departs from the reference, on purpose (docs/reference.md lists each):

- The EMA state (``rho``, the log multiplier) lives in :class:`HarpoState`, saved in every checkpoint and
  restored on resume; the reference keeps it in module globals, lost on restart.
- A group whose rewards are all equal carries no information (all its A are 0, m_p = eps). The reference
  puts its log(eps) into the within-task geometric mean, dragging every informative prompt of that task
  to the 0.5 floor; hba leaves such groups out of that mean (their own advantages stay exactly 0).
- The reference min-max scales all raw scores of the batch first; per-prompt z-scores are invariant to
  that affine map (up to the eps floor), so hba does not do it.

>>> import torch
>>> state = HarpoState()
>>> adv, factors = harpo_advantages(torch.tensor([[1.0, 0.0], [0.2, 0.0]]), ["EMO", "SOC"], state)
>>> adv.tolist()
[[1.0, -1.0], [1.0, -1.0]]
>>> sorted(state.rho)
['EMO', 'SOC']
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass(frozen=True)
class HarpoSettings:
    """HARPO's constants: the reference's active defaults."""

    beta_rho: float = 0.95  # EMA decay of each task's signal density (share of the previous value kept)
    beta_log_mult: float = 0.95  # EMA decay of each task's log multiplier
    task_scale: tuple[float, float] = (0.5, 4.0)  # clamp of the per-task factor s_t
    prompt_scale: tuple[float, float] = (0.5, 3.0)  # clamp of the per-prompt factor s_p within a task
    eps: float = 1e-6
    skip_uninformative: bool = True  # leave all-equal groups out of the within-task mean (see module doc)


@dataclass
class HarpoState:
    """The EMA state HARPO carries from step to step, per task (checkpointed; resumes exactly)."""

    rho: dict[str, float] = field(default_factory=dict)
    log_mult: dict[str, float] = field(default_factory=dict)

    def state_dict(self) -> dict[str, Any]:
        return {"rho": dict(self.rho), "log_mult": dict(self.log_mult)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rho = {str(k): float(v) for k, v in state.get("rho", {}).items()}
        self.log_mult = {str(k): float(v) for k, v in state.get("log_mult", {}).items()}


def _ema(previous: float, value: float, beta: float) -> float:
    return beta * previous + (1.0 - beta) * value


def _grpo_population(rewards: torch.Tensor, eps: float) -> torch.Tensor:
    """Per-prompt ``(r - mean) / max(std, eps)`` with the population std (the reference's ``ddof=0``)."""
    mean = rewards.mean(dim=1, keepdim=True)  # (P, 1)
    std = rewards.std(dim=1, keepdim=True, unbiased=False).clamp_min(eps)  # (P, 1)
    return (rewards - mean) / std


def harpo_advantages(
    rewards: torch.Tensor,
    tasks: Sequence[str],
    state: HarpoState,
    settings: HarpoSettings | None = None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """HARPO advantages of ``rewards`` (P prompts x G responses) whose prompts belong to ``tasks`` (P,).

    Updates ``state`` in place (one EMA step per task present) and returns the advantages (P, G) with the
    factors used: ``{"task_scale": {task: s_t}, "prompt_scale": [s_p per prompt], "rho": {task: rho_t}}``.
    """
    settings = settings or HarpoSettings()
    if rewards.dim() != 2 or rewards.shape[1] < 2:
        raise ValueError(f"rewards must be (prompts, group >= 2), got {tuple(rewards.shape)}")
    if len(tasks) != rewards.shape[0]:
        raise ValueError(f"{len(tasks)} task names for {rewards.shape[0]} prompts")
    eps = settings.eps
    work = rewards.double()
    adv = _grpo_population(work, eps)  # (P, G)
    informative = (work.max(dim=1).values - work.min(dim=1).values) > 0  # (P,)
    adv = torch.where(informative[:, None], adv, torch.zeros_like(adv))  # all-equal groups: exactly 0
    m = adv.abs().mean(dim=1)  # (P,) mean |A| of each prompt

    by_task: dict[str, list[int]] = {}
    for p, task in enumerate(tasks):
        by_task.setdefault(task, []).append(p)

    # Per task: EMA of its signal density, then the EMA'd log ratio to the geometric mean of all tasks present.
    rho: dict[str, float] = {}
    for task, rows in by_task.items():
        batch = max(float(m[rows].mean()), eps)
        rho[task] = max(_ema(state.rho.get(task, batch), batch, settings.beta_rho), eps)
    log_ref = sum(math.log(r) for r in rho.values()) / len(rho)
    low, high = settings.task_scale
    task_scale: dict[str, float] = {}
    for task, r in rho.items():
        log_mult = _ema(state.log_mult.get(task, 0.0), log_ref - math.log(r), settings.beta_log_mult)
        state.rho[task], state.log_mult[task] = r, log_mult
        task_scale[task] = min(high, max(low, math.exp(log_mult)))

    # Per prompt within its task: the geometric mean of the task's prompts' mean |A| over this prompt's.
    prompt_scale = [1.0] * len(tasks)
    low, high = settings.prompt_scale
    for rows in by_task.values():
        pool = [p for p in rows if informative[p]] if settings.skip_uninformative else rows
        if len(rows) < 2 or not pool:
            continue
        log_mbar = sum(math.log(max(float(m[p]), eps)) for p in pool) / len(pool)
        for p in rows:
            prompt_scale[p] = min(high, max(low, math.exp(log_mbar - math.log(max(float(m[p]), eps)))))

    scale = torch.tensor([task_scale[t] * s for t, s in zip(tasks, prompt_scale)], dtype=adv.dtype)  # (P,)
    out = (adv * scale[:, None]).to(rewards.dtype)
    return out, {"task_scale": task_scale, "prompt_scale": prompt_scale, "rho": rho}

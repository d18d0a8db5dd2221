"""Advantages from a group of rewards: GRPO's group normalisation (Eq. 1), RLOO's leave-one-out baseline, HARPO.

Rewards come as a ``(P, G)`` tensor: P prompts, G sampled responses each. Every response's advantage
is broadcast to all of its tokens by the loss.

>>> import torch
>>> grpo_advantages(torch.tensor([[1.0, 0.0], [0.5, 0.5]]))
tensor([[ 0.7071, -0.7071],
        [ 0.0000,  0.0000]])
>>> rloo_advantages(torch.tensor([[1.0, 0.0, 0.5]]))
tensor([[ 0.7500, -0.7500,  0.0000]])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from hba_core import registry
from hba_core.rl.harpo import HarpoState, harpo_advantages

ESTIMATORS = tuple(registry.estimators())  # the names are declared in the registry; the functions live here


def grpo_advantages(rewards: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """``(r - mean_group) / (std_group + eps)`` per row of ``rewards`` (P, G); std is the sample std.

    A group whose rewards are all equal has std 0 and gets advantage exactly 0 (no NaN): it carries
    no signal about which response was better, so it moves nothing.
    """
    _check_groups(rewards)
    mean = rewards.mean(dim=1, keepdim=True)  # (P, 1)
    std = rewards.std(dim=1, keepdim=True)  # (P, 1), unbiased as in GRPO's reference implementations
    return _zero_where_tied((rewards - mean) / (std + eps), rewards)


def rloo_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """REINFORCE leave-one-out: ``r_i - mean_{j != i} r_j`` per row of ``rewards`` (P, G); no std scaling."""
    _check_groups(rewards)
    group = rewards.shape[1]
    others_mean = (rewards.sum(dim=1, keepdim=True) - rewards) / (group - 1)  # (P, G)
    return _zero_where_tied(rewards - others_mean, rewards)


def compute_advantages(
    rewards: torch.Tensor,
    estimator: str = "grpo",
    eps: float = 1e-6,
    *,
    tasks: Sequence[str] | None = None,
    harpo_state: HarpoState | None = None,
) -> torch.Tensor:
    """Dispatch on ``estimator`` (a name of the registry's ``[rl] estimators``).

    ``harpo`` also needs each prompt's task and the run's :class:`~hba_core.rl.harpo.HarpoState`.
    """
    if estimator == "grpo":
        return grpo_advantages(rewards, eps)
    if estimator == "rloo":
        return rloo_advantages(rewards)
    if estimator == "harpo":
        if tasks is None or harpo_state is None:
            raise ValueError("the harpo estimator needs the prompts' tasks and the run's HarpoState")
        return harpo_advantages(rewards, tasks, harpo_state)[0]
    raise registry.UnknownNameError("advantage estimator", estimator, list(ESTIMATORS))


def _zero_where_tied(advantages: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
    # Exactly 0 for all-equal groups: float rounding of the mean would otherwise leave +-1e-8 residues.
    tied = (rewards == rewards[:, :1]).all(dim=1, keepdim=True)  # (P, 1)
    return torch.where(tied, torch.zeros_like(advantages), advantages)


def _check_groups(rewards: torch.Tensor) -> None:
    if rewards.dim() != 2 or rewards.shape[1] < 2:
        raise ValueError(
            f"rewards must be (prompts, group) with a group of at least 2 responses, got {tuple(rewards.shape)}"
        )

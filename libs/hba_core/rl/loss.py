"""GRPO's policy loss (paper App. B.2, Eqs. 2-4): token-level clipped surrogate, averaged per response length.

For response i with tokens k = 1..n_i, ratio phi_ik = pi_theta / pi_old at token k, and advantage A_i:

    J = mean_i [ (1 / n_i) * sum_k min(phi_ik * A_i, clip(phi_ik, 1 - eps, 1 + eps) * A_i) ] - beta * KL

and the loss is ``-J``. Each response counts equally whatever its length (Eq. 4's 1/n_i). The KL term,
against a frozen reference policy, is the non-negative ``k3`` estimator
``exp(ref - logp) - (ref - logp) - 1`` averaged the same way; it is off by default (beta = 0, as in the paper).

>>> import torch
>>> logp = torch.zeros(1, 3, requires_grad=True)
>>> out = clipped_surrogate_loss(logp, logp.detach(), torch.tensor([1.0]), torch.tensor([[1, 1, 0]]))
>>> round(out.loss.item(), 4), out.clip_fraction
(-1.0, 0.0)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class PolicyLoss:
    """The loss to backpropagate and what the metrics log about it (plain floats, already detached)."""

    loss: torch.Tensor
    clip_fraction: float
    kl: float | None
    ratio_mean: float


def per_response_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over each response's own tokens: (B, T) -> (B,); an empty response counts 0."""
    mask = mask.to(values.dtype)
    return (values * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


def clipped_surrogate_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip_eps: float = 0.2,
    ref_logp: torch.Tensor | None = None,
    beta: float = 0.0,
) -> PolicyLoss:
    """The GRPO loss over a batch of responses.

    Args:
        logp: log pi_theta of the response tokens, (B, T), with grad.
        old_logp: log pi_old of the same tokens (the policy that sampled them), (B, T).
        advantages: one advantage per response, (B,).
        mask: 1 on response tokens, 0 on padding, (B, T).
        clip_eps: the clip range epsilon of Eq. 2.
        ref_logp: log pi_ref (frozen reference policy), (B, T); needed when ``beta > 0``.
        beta: KL weight; 0 (the paper's setting) skips the term.

    Returns the loss averaged over the B responses: a caller splitting a mini-batch into micro-batches
    scales each micro-batch loss by ``B_micro / B_mini`` to reproduce the mini-batch mean exactly.
    """
    if beta > 0 and ref_logp is None:
        raise ValueError("beta > 0 needs the reference policy's log-probs (ref_logp)")
    ratio = torch.exp(logp - old_logp)  # (B, T)
    adv = advantages.unsqueeze(1).to(ratio.dtype)  # (B, 1), broadcast over tokens
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * adv
    objective = per_response_mean(torch.minimum(unclipped, clipped), mask)  # (B,)
    loss = -objective.mean()
    kl_value = None
    if beta > 0:
        delta = ref_logp - logp  # (B, T)
        kl = per_response_mean(torch.exp(delta) - delta - 1.0, mask).mean()
        loss = loss + beta * kl
        kl_value = float(kl.detach())
    with torch.no_grad():
        # A token is clipped when the clipped branch is the active one (its gradient is zero).
        is_clipped = ((ratio < 1.0 - clip_eps) & (adv < 0)) | ((ratio > 1.0 + clip_eps) & (adv > 0))
        valid = mask.bool()
        tokens = max(int(valid.sum()), 1)
        clip_fraction = float((is_clipped & valid).sum()) / tokens
        ratio_mean = float(ratio[valid].sum()) / tokens
    return PolicyLoss(loss=loss, clip_fraction=clip_fraction, kl=kl_value, ratio_mean=ratio_mean)

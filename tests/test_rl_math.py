"""Advantages (GRPO, RLOO) and the clipped surrogate loss (App. B.2, Eqs. 1-4)."""

from __future__ import annotations

import pytest
import torch

from hba_core.errors import UnknownNameError
from hba_core.rl.advantages import compute_advantages, grpo_advantages, rloo_advantages
from hba_core.rl.loss import clipped_surrogate_loss, per_response_mean


def test_grpo_advantages_hand_computed():
    rewards = torch.tensor([[1.7, 0.2, 0.2, 0.2], [0.0, 1.0, 2.0, 3.0]])
    adv = grpo_advantages(rewards, eps=0.0)
    # group 1: mean 0.575, sample std 0.75
    assert adv[0].tolist() == pytest.approx([1.5, -0.5, -0.5, -0.5], abs=1e-5)
    std = torch.tensor([0.0, 1.0, 2.0, 3.0]).std().item()
    assert adv[1].tolist() == pytest.approx([(v - 1.5) / std for v in (0, 1, 2, 3)], abs=1e-5)
    assert adv.mean(dim=1).abs().max() < 1e-6


def test_identical_rewards_give_zero_advantage_not_nan():
    adv = grpo_advantages(torch.tensor([[0.7, 0.7, 0.7], [0.0, 0.0, 0.0]]))
    assert torch.equal(adv, torch.zeros(2, 3))
    assert torch.equal(rloo_advantages(torch.tensor([[0.7, 0.7, 0.7]])), torch.zeros(1, 3))


def test_rloo_baseline_is_mean_of_the_others():
    adv = rloo_advantages(torch.tensor([[1.0, 0.0, 0.5, 0.5]]))
    # response 0: 1 - (0 + 0.5 + 0.5)/3 ; response 1: 0 - (1 + 0.5 + 0.5)/3
    assert adv[0].tolist() == pytest.approx([1 - 1 / 3, -2 / 3, 0.5 - 0.5, 0.5 - 0.5], abs=1e-6)


def test_estimator_dispatch_and_errors():
    r = torch.tensor([[1.0, 0.0]])
    assert torch.equal(compute_advantages(r, "rloo"), rloo_advantages(r))
    with pytest.raises(UnknownNameError, match="Valid: grpo, rloo, harpo"):
        compute_advantages(r, "ppo")
    with pytest.raises(ValueError, match="at least 2"):
        grpo_advantages(torch.tensor([[1.0], [0.0]]))


def test_gradient_sign_follows_the_advantage():
    logp = torch.log(torch.full((2, 3), 0.3)).requires_grad_()
    out = clipped_surrogate_loss(logp, logp.detach(), torch.tensor([1.0, -1.0]), torch.ones(2, 3))
    out.loss.backward()
    # descending the loss raises log-probs of the positive-advantage response, lowers the negative one
    assert (logp.grad[0] < 0).all() and (logp.grad[1] > 0).all()
    assert out.clip_fraction == 0.0 and out.ratio_mean == pytest.approx(1.0)


def test_clipping_stops_the_gradient_outside_the_trust_region():
    old = torch.zeros(2, 1)
    # ratio e^0.5 = 1.65 > 1.2 with A > 0 -> clipped; ratio e^-0.5 = 0.61 < 0.8 with A < 0 -> clipped
    logp = torch.tensor([[0.5], [-0.5]], requires_grad=True)
    out = clipped_surrogate_loss(logp, old, torch.tensor([1.0, -1.0]), torch.ones(2, 1), clip_eps=0.2)
    out.loss.backward()
    assert torch.equal(logp.grad, torch.zeros(2, 1))
    assert out.clip_fraction == 1.0
    assert out.loss.item() == pytest.approx(-(1.2 * 1.0 + 0.8 * -1.0) / 2)
    # the same ratios with the opposite advantages are NOT clipped (min picks the unclipped branch)
    logp2 = torch.tensor([[0.5], [-0.5]], requires_grad=True)
    out2 = clipped_surrogate_loss(logp2, old, torch.tensor([-1.0, 1.0]), torch.ones(2, 1), clip_eps=0.2)
    out2.loss.backward()
    assert out2.clip_fraction == 0.0 and (logp2.grad != 0).all()


def test_loss_averages_per_response_length_eq4():
    # a 1-token and a 3-token response with the same advantage weigh the same (1/n_i inside the sum)
    logp = torch.zeros(2, 3, requires_grad=True)
    mask = torch.tensor([[1, 0, 0], [1, 1, 1]])
    out = clipped_surrogate_loss(logp, logp.detach(), torch.tensor([1.0, 1.0]), mask)
    out.loss.backward()
    assert out.loss.item() == pytest.approx(-1.0)
    assert logp.grad[0].tolist() == pytest.approx([-0.5, 0.0, 0.0])
    assert logp.grad[1].tolist() == pytest.approx([-0.5 / 3] * 3)
    assert per_response_mean(torch.ones(1, 2), torch.zeros(1, 2)).item() == 0.0  # empty response


def test_kl_penalty_is_zero_at_the_reference_and_positive_away():
    logp = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    adv, mask = torch.tensor([0.0]), torch.ones(1, 2)
    same = clipped_surrogate_loss(logp, logp.detach(), adv, mask, ref_logp=logp.detach(), beta=0.1)
    assert same.kl == pytest.approx(0.0)
    away = clipped_surrogate_loss(logp, logp.detach(), adv, mask, ref_logp=torch.tensor([[-0.5, -0.5]]), beta=0.1)
    assert away.kl > 0 and away.loss.item() == pytest.approx(0.1 * away.kl, rel=1e-5)
    assert clipped_surrogate_loss(logp, logp.detach(), adv, mask).kl is None
    with pytest.raises(ValueError, match="ref_logp"):
        clipped_surrogate_loss(logp, logp.detach(), adv, mask, beta=0.1)

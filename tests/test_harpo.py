"""HARPO advantages: every factor hand-computed on a small batch of several tasks; EMA state round-trips."""

import math

import pytest

torch = pytest.importorskip("torch")

from hba_core.rl.harpo import HarpoSettings, HarpoState, harpo_advantages  # noqa: E402


def _z(values):
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))  # population std
    return [(v - mean) / std for v in values]


def test_every_factor_by_hand():
    # EMO: two prompts, one spread wide in |A| terms equal (z-scores), one with a 3-way split; SOC: one prompt.
    rewards = torch.tensor(
        [
            [1.0, 0.0, 0.0, 0.0],  # EMO p0
            [1.0, 1.0, 0.0, 0.0],  # EMO p1
            [0.9, 0.7, 0.8, 0.6],  # SOC p2
        ],
        dtype=torch.float64,
    )
    tasks = ["EMO", "EMO", "SOC"]
    state = HarpoState()
    adv, factors = harpo_advantages(rewards, tasks, state)

    z = [_z(row) for row in rewards.tolist()]
    m = [sum(abs(a) for a in row) / 4 for row in z]
    # rho: first step, the EMA starts at the batch value
    rho = {"EMO": (m[0] + m[1]) / 2, "SOC": m[2]}
    assert factors["rho"] == pytest.approx(rho, rel=1e-12)
    log_ref = (math.log(rho["EMO"]) + math.log(rho["SOC"])) / 2
    s_t = {t: min(4.0, max(0.5, math.exp(0.05 * (log_ref - math.log(rho[t]))))) for t in rho}  # EMA from 0
    assert factors["task_scale"] == pytest.approx(s_t, rel=1e-12)
    gmean_emo = math.exp((math.log(m[0]) + math.log(m[1])) / 2)
    s_p = [min(3.0, max(0.5, gmean_emo / m[0])), min(3.0, max(0.5, gmean_emo / m[1])), 1.0]  # SOC: one prompt
    assert factors["prompt_scale"] == pytest.approx(s_p, rel=1e-12)
    expected = [[a * s_t[t] * s for a in row] for row, t, s in zip(z, tasks, s_p)]
    assert adv.flatten().tolist() == pytest.approx([v for row in expected for v in row], rel=1e-12)
    assert state.log_mult == pytest.approx({t: 0.05 * (log_ref - math.log(rho[t])) for t in rho}, rel=1e-12)


def test_second_step_follows_the_ema():
    state = HarpoState()
    rewards = torch.tensor([[1.0, 0.0], [0.3, 0.1]], dtype=torch.float64)
    harpo_advantages(rewards, ["EMO", "SOC"], state)
    before = state.state_dict()
    wider = torch.tensor([[1.0, 0.0, 0.0], [0.3, 0.1, 0.2]], dtype=torch.float64)
    _, factors = harpo_advantages(wider, ["EMO", "SOC"], state)
    m_emo = sum(abs(a) for a in _z([1.0, 0.0, 0.0])) / 3
    assert factors["rho"]["EMO"] == pytest.approx(0.95 * before["rho"]["EMO"] + 0.05 * m_emo, rel=1e-12)


def test_clamps_hold():
    state = HarpoState(rho={"A": 1e-3, "B": 10.0}, log_mult={"A": 10.0, "B": -10.0})
    rewards = torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    _, factors = harpo_advantages(rewards, ["A", "B"], state)
    assert factors["task_scale"] == {"A": 4.0, "B": 0.5}


def test_an_all_equal_group_does_not_drag_its_task_to_the_floor():
    rewards = torch.tensor([[1.0, 0.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.5, 0.5]], dtype=torch.float64)
    adv, factors = harpo_advantages(rewards, ["EMO"] * 3, HarpoState())
    assert adv[2].abs().sum() == 0  # no information, no update
    assert all(s > 0.5 for s in factors["prompt_scale"][:2])
    # The reference's way (the tied group inside the geometric mean) puts both informative prompts at the floor.
    _, ref = harpo_advantages(rewards, ["EMO"] * 3, HarpoState(), HarpoSettings(skip_uninformative=False))
    assert ref["prompt_scale"][:2] == [0.5, 0.5]


def test_state_round_trips_bit_exactly():
    state = HarpoState()
    harpo_advantages(torch.tensor([[1.0, 0.0], [0.3, 0.1]]), ["EMO", "SOC"], state)
    copy = HarpoState()
    copy.load_state_dict(state.state_dict())
    nxt = torch.tensor([[0.0, 1.0], [0.2, 0.1]])
    a, _ = harpo_advantages(nxt, ["EMO", "SOC"], state)
    b, _ = harpo_advantages(nxt, ["EMO", "SOC"], copy)
    assert torch.equal(a, b) and state.state_dict() == copy.state_dict()


def test_task_scales_even_out_mean_abs_advantage_against_grpo():
    from hba_core.rl.advantages import grpo_advantages

    gen = torch.Generator().manual_seed(0)
    state = HarpoState()
    for _ in range(60):  # EMO: 0/1 rewards (wide spread); SOC: similarity scores in a narrow band
        emo = (torch.rand(8, 4, generator=gen) > 0.5).double()
        soc = 0.6 + 0.05 * torch.rand(8, 4, generator=gen).double()
        rewards = torch.cat([emo, soc])
        tasks = ["EMO"] * 8 + ["SOC"] * 8
        harpo, _ = harpo_advantages(rewards, tasks, state)
    grpo = grpo_advantages(rewards)
    ratio = lambda a: float(a[:8].abs().mean() / a[8:].abs().mean())  # noqa: E731
    assert abs(math.log(ratio(harpo))) < abs(math.log(ratio(grpo)))


def test_shapes_are_checked():
    with pytest.raises(ValueError, match="task names"):
        harpo_advantages(torch.zeros(2, 2), ["EMO"], HarpoState())

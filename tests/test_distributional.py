"""C51 categorical projection against a slow per-sample, per-atom transcription of Bellemare
et al. 2017, Algorithm 1 (with the l == b == u case giving the whole mass to atom b)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from reprl.agents.distributional import categorical_projection, make_support


def slow_projection(probs, rewards, discounts, v_min, v_max):
    """Algorithm 1 literally, one sample and one atom at a time, in float64."""
    batch, k = probs.shape
    dz = (v_max - v_min) / (k - 1)
    out = np.zeros((batch, k))
    for i in range(batch):
        for j in range(k):
            z_j = v_min + j * dz
            tz = min(max(rewards[i] + discounts[i] * z_j, v_min), v_max)
            b = (tz - v_min) / dz
            lo, up = math.floor(b), math.ceil(b)
            if lo == up:  # exact landing: Algorithm 1's two shares are both 0
                out[i, lo] += probs[i, j]
            else:
                out[i, lo] += probs[i, j] * (up - b)
                out[i, up] += probs[i, j] * (b - lo)
    return out


def random_inputs(batch: int, k: int, seed: int):
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(k), size=batch)
    rewards = rng.normal(scale=6.0, size=batch)  # often pushes past [v_min, v_max]
    discounts = rng.choice([0.0, 0.99, 0.99**3, 1.0], size=batch)  # 0: terminated
    rewards[:4] = [0.0, 1.0, -3.0, 25.0]  # exact atom landings and a far-out reward
    discounts[:4] = [1.0, 1.0, 0.0, 0.9]
    return probs, rewards, discounts


@pytest.mark.parametrize("k,v_min,v_max", [(51, -10.0, 10.0), (21, -10.0, 10.0), (7, -1.5, 2.0)])
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_slow_reference(k, v_min, v_max, seed):
    probs, rewards, discounts = random_inputs(64, k, seed)
    support = make_support(v_min, v_max, k, dtype=torch.float64)
    got = categorical_projection(
        torch.from_numpy(probs), torch.from_numpy(rewards), torch.from_numpy(discounts), support
    )
    want = slow_projection(probs, rewards, discounts, v_min, v_max)
    np.testing.assert_allclose(got.numpy(), want, atol=1e-10)
    np.testing.assert_allclose(got.sum(1).numpy(), 1.0, atol=1e-10)


@pytest.mark.parametrize("k", [11, 21, 51])
def test_zero_reward_unit_discount_is_identity(k):
    """Every atom maps exactly onto itself (l == u everywhere): no mass may vanish."""
    support = make_support(-10.0, 10.0, k)
    probs = torch.softmax(torch.randn(8, k, generator=torch.Generator().manual_seed(0)), 1)
    got = categorical_projection(probs, torch.zeros(8), torch.ones(8), support)
    torch.testing.assert_close(got, probs)


def test_terminal_puts_mass_on_reward():
    support = make_support(-10.0, 10.0, 21)  # dz = 1
    probs = torch.softmax(torch.randn(3, 21), 1)
    rewards = torch.tensor([2.0, 2.25, -50.0])
    got = categorical_projection(probs, rewards, torch.zeros(3), support)
    want = torch.zeros(3, 21)
    want[0, 12] = 1.0
    want[1, 12], want[1, 13] = 0.75, 0.25
    want[2, 0] = 1.0  # clamped to v_min
    torch.testing.assert_close(got, want)


def test_rows_sum_to_one_float32_edges():
    """Rewards/discounts that drive b to the support's ends and to round-off near atoms."""
    k = 51
    support = make_support(-10.0, 10.0, k)
    probs = torch.softmax(torch.randn(256, k), 1)
    rewards = torch.cat([torch.full((64,), 100.0), torch.full((64,), -100.0), torch.randn(128)])
    discounts = torch.cat([torch.ones(128), torch.rand(64), torch.full((64,), 0.99)])
    got = categorical_projection(probs, rewards, discounts, support)
    assert (got >= 0).all()
    torch.testing.assert_close(got.sum(1), torch.ones(256))
    assert got[:64, -1].allclose(torch.ones(64)) and got[64:128, 0].allclose(torch.ones(64))


def test_gradient_flows_to_next_probs():
    support = make_support(-5.0, 5.0, 11, dtype=torch.float64)
    probs = torch.softmax(torch.randn(4, 11, dtype=torch.float64), 1).requires_grad_(True)
    rewards = torch.tensor([0.3, -1.0, 0.0, 7.0], dtype=torch.float64)
    discounts = torch.tensor([0.9, 0.0, 1.0, 0.5], dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda p: categorical_projection(p, rewards, discounts, support), (probs,)
    )
    with torch.no_grad():
        assert not categorical_projection(probs, rewards, discounts, support).requires_grad


def test_make_support():
    z = make_support(-10.0, 10.0, 51)
    assert z.shape == (51,) and z[0] == -10.0 and z[-1] == 10.0
    torch.testing.assert_close(z[1:] - z[:-1], torch.full((50,), 0.4))
    with pytest.raises(ValueError):
        make_support(0.0, 1.0, 1)
    with pytest.raises(ValueError):
        make_support(1.0, 1.0, 5)

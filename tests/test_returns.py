"""GAE and returns against a slow forward-sum reference, with terminations, truncations and
next-step-autoreset (invalid) steps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reprl.data.returns import compute_gae, compute_nstep_returns


def slow_gae(reward, value, term, trunc, valid, boot, gamma, lam):
    """A_t = sum_l (gamma*lam)^l delta_{t+l}, summed forward until the episode ends."""
    n, t_len = reward.shape
    adv = np.zeros((n, t_len))
    for i in range(n):
        for t in range(t_len):
            if not valid[i, t]:
                continue
            total, k = 0.0, t
            while True:
                next_v = value[i, k + 1] if k + 1 < t_len else boot[i]
                delta = reward[i, k] + gamma * next_v * (0.0 if term[i, k] else 1.0) - value[i, k]
                total += (gamma * lam) ** (k - t) * delta
                if term[i, k] or trunc[i, k] or k + 1 >= t_len:
                    break
                k += 1
            adv[i, t] = total
    return adv


def random_rollout(n: int, t_len: int, seed: int):
    rng = np.random.default_rng(seed)
    reward = rng.normal(size=(n, t_len))
    value = rng.normal(size=(n, t_len))
    done_kind = rng.choice(3, size=(n, t_len), p=[0.8, 0.1, 0.1])  # 0 none, 1 term, 2 trunc
    term, trunc = done_kind == 1, done_kind == 2
    valid = np.ones((n, t_len), dtype=bool)
    valid[:, 1:] = ~(term | trunc)[:, :-1]  # the step after an end is the reset step
    # On the reset step the env ignores the action and returns reward 0, no flags.
    reward[~valid], term[~valid], trunc[~valid] = 0.0, False, False
    valid[:, 1:] = ~(term | trunc)[:, :-1]
    boot = rng.normal(size=n)
    return reward, value, term, trunc, valid, boot


@pytest.mark.parametrize("gamma,lam", [(0.99, 0.95), (0.9, 1.0), (0.98, 0.0)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gae_matches_slow_reference(gamma: float, lam: float, seed: int) -> None:
    reward, value, term, trunc, valid, boot = random_rollout(4, 40, seed)
    assert term.any() and trunc.any() and (~valid).any()
    t = lambda x: torch.as_tensor(x)  # noqa: E731
    adv, ret = compute_gae(
        t(reward).float(),
        t(value).float(),
        t(term),
        t(trunc),
        t(valid),
        t(boot).float(),
        gamma,
        lam,
    )
    ref = slow_gae(reward, value, term, trunc, valid, boot, gamma, lam)
    np.testing.assert_allclose(adv.numpy(), ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ret.numpy(), ref + value, rtol=1e-5, atol=1e-5)
    assert (adv.numpy()[~valid] == 0).all()


def test_truncation_bootstraps_from_final_observation_value() -> None:
    # One env: steps 0,1 then truncation at 1; step 2 is the reset step whose value is
    # V(final obs) = 10; the truncated transition must bootstrap from it, a terminated one not.
    reward = torch.tensor([[1.0, 1.0, 0.0, 1.0]])
    value = torch.tensor([[0.0, 0.0, 10.0, 0.0]])
    valid = torch.tensor([[True, True, False, True]])
    none = torch.zeros(1, 4, dtype=torch.bool)
    ends = torch.tensor([[False, True, False, False]])
    boot = torch.tensor([0.0])
    adv_trunc, _ = compute_gae(reward, value, none, ends, valid, boot, 0.5, 1.0)
    adv_term, _ = compute_gae(reward, value, ends, none, valid, boot, 0.5, 1.0)
    assert adv_trunc[0, 1].item() == pytest.approx(1.0 + 0.5 * 10.0)
    assert adv_term[0, 1].item() == pytest.approx(1.0)
    assert adv_trunc[0, 0].item() == pytest.approx(1.0 + 0.5 * (1.0 + 5.0))
    assert adv_trunc[0, 2].item() == 0.0


def test_nstep_returns_are_discounted_sums() -> None:
    reward = torch.tensor([[1.0, 2.0, 3.0]])
    value = torch.zeros(1, 3)
    flags = torch.zeros(1, 3, dtype=torch.bool)
    ret = compute_nstep_returns(reward, value, flags, flags, ~flags, torch.tensor([4.0]), 0.5)
    expected = [1 + 0.5 * 2 + 0.25 * 3 + 0.125 * 4, 2 + 0.5 * 3 + 0.25 * 4, 3 + 0.5 * 4]
    np.testing.assert_allclose(ret[0].numpy(), expected)

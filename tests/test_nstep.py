"""n-step targets against a slow per-step reference, with terminations, truncations and
next-step-autoreset (invalid) steps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reprl.data.nstep import nstep_targets


def random_rollout(n: int, t_len: int, seed: int):
    """Like ``tests/test_returns.py``: the step after an episode end is an invalid reset step
    with reward 0 and no flags."""
    rng = np.random.default_rng(seed)
    reward = rng.normal(size=(n, t_len))
    done_kind = rng.choice(3, size=(n, t_len), p=[0.8, 0.1, 0.1])  # 0 none, 1 term, 2 trunc
    term, trunc = done_kind == 1, done_kind == 2
    valid = np.ones((n, t_len), dtype=bool)
    valid[:, 1:] = ~(term | trunc)[:, :-1]
    reward[~valid], term[~valid], trunc[~valid] = 0.0, False, False
    valid[:, 1:] = ~(term | trunc)[:, :-1]
    return reward, term, trunc, valid


def slow_nstep(reward, term, trunc, valid, gamma, n):
    num_envs, t_len = reward.shape
    ret, disc = np.zeros((num_envs, t_len)), np.zeros((num_envs, t_len))
    idx = np.tile(np.arange(t_len), (num_envs, 1))
    for i in range(num_envs):
        for t in range(t_len):
            if not valid[i, t]:
                continue
            total, m, terminal = 0.0, 0, False
            for k in range(n):
                if t + k >= t_len:
                    break
                total += gamma**k * reward[i, t + k]
                m += 1
                if term[i, t + k]:
                    terminal = True
                    break
                if trunc[i, t + k]:
                    break
            ret[i, t], disc[i, t], idx[i, t] = total, 0.0 if terminal else gamma**m, t + m
    return ret, disc, idx


@pytest.mark.parametrize("n", [1, 3, 5])
@pytest.mark.parametrize("gamma", [0.99, 0.8])
@pytest.mark.parametrize("seed", [0, 1])
def test_nstep_matches_slow_reference(n: int, gamma: float, seed: int) -> None:
    reward, term, trunc, valid = random_rollout(4, 50, seed)
    assert term.any() and trunc.any() and (~valid).any()
    t = torch.as_tensor
    ret, disc, idx = nstep_targets(t(reward), t(term), t(trunc), t(valid), gamma, n)
    ref_ret, ref_disc, ref_idx = slow_nstep(reward, term, trunc, valid, gamma, n)
    np.testing.assert_allclose(ret.numpy(), ref_ret, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(disc.numpy(), ref_disc, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(idx.numpy(), ref_idx)
    assert idx.dtype == torch.int64 and (idx.numpy() <= reward.shape[1]).all()
    # float32 inputs keep their dtype
    ret32, disc32, _ = nstep_targets(t(reward).float(), t(term), t(trunc), t(valid), gamma, n)
    assert ret32.dtype == disc32.dtype == torch.float32
    np.testing.assert_allclose(ret32.numpy(), ref_ret, rtol=1e-5, atol=1e-5)


def test_hand_checked_termination_and_truncation() -> None:
    # One env, gamma 0.5, n 3. Steps: 0 1 2 | 3 (reset) 4 5 | 6 (reset) 7.
    reward = torch.tensor([[1.0, 2.0, 4.0, 0.0, 1.0, 1.0, 0.0, 8.0]])
    term = torch.tensor([[False, False, True, False, False, False, False, False]])
    trunc = torch.tensor([[False, False, False, False, False, True, False, False]])
    valid = torch.tensor([[True, True, True, False, True, True, False, True]])
    ret, disc, idx = nstep_targets(reward, term, trunc, valid, 0.5, 3)
    # t=0: 1 + 0.5*2 + 0.25*4 = 3, terminated inside the window -> discount 0.
    # t=1: 2 + 0.5*4 = 4, terminated; t=2: 4, terminated.
    # t=4: 1 + 0.5*1 = 1.5, truncation at 5 keeps gamma^2 and bootstraps from obs[6] (the
    #      final observation on the reset step); t=5: 1, gamma^1, index 6.
    # t=7: sequence end after 1 step: 8, gamma^1, index 8 == T (caller's next obs).
    torch.testing.assert_close(ret, torch.tensor([[3.0, 4.0, 4.0, 0.0, 1.5, 1.0, 0.0, 8.0]]))
    torch.testing.assert_close(disc, torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.25, 0.5, 0.0, 0.5]]))
    torch.testing.assert_close(idx, torch.tensor([[3, 3, 3, 3, 6, 6, 6, 8]]))


def test_full_window_without_ends() -> None:
    reward = torch.ones(2, 6)
    none = torch.zeros(2, 6, dtype=torch.bool)
    ret, disc, idx = nstep_targets(reward, none, none, ~none, 0.9, 3)
    torch.testing.assert_close(ret[:, 0], torch.full((2,), 1 + 0.9 + 0.81))
    torch.testing.assert_close(disc[:, :4], torch.full((2, 4), 0.9**3))
    torch.testing.assert_close(idx[0], torch.tensor([3, 4, 5, 6, 6, 6]))
    torch.testing.assert_close(disc[0, 4:], torch.tensor([0.81, 0.9]))


@pytest.mark.parametrize("n", [1, 3])
def test_window_targets_equal_step_zero_of_nstep(n: int) -> None:
    """The replay path (step 0 of windows of 1 + n steps, short path for n = 1) equals the
    general n-step targets' first column on windows whose step 0 is valid."""
    from reprl.data.nstep import window_targets

    reward, term, trunc, valid = random_rollout(400, n + 1, seed=3)
    keep = valid[:, 0]
    args = [torch.as_tensor(x[keep]) for x in (reward, term, trunc, valid)]
    assert bool(term[keep, 0].any()) and bool(trunc[keep, 0].any())  # both kinds at step 0
    got = window_targets(*args, 0.9, n)
    want = nstep_targets(*args, 0.9, n)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w[:, 0])

"""n-step return targets on ``(N, T)`` sequences (Sutton & Barto 2018, sec. 7.1; used by
Rainbow, Hessel et al. 2018, and R2D2, Kapturowski et al. 2019).

For a valid step ``t`` the window runs ``m <= n`` steps and stops early, inclusively, at the
first termination or truncation at or after ``t``, or at the sequence end::

    R_t = sum_{k < m} gamma^k r_{t+k}
    target_t = R_t + discount_t * Q(obs[bootstrap_index_t])

Bootstrap convention (next-step autoreset, see :class:`reprl.types.Batch`): after an
episode ends at step ``s``, step ``s + 1`` is ``valid = False`` and its ``obs`` is the final
observation of the ended episode. So the observation to bootstrap from is always at
``t + m``: the ``n``-th next step, or the reset step holding the final observation after a
truncation (time-limit bootstrap, Pardo et al. 2018). After a termination ``discount`` is 0,
so the index only has to be in range. When ``t + m == T`` the caller must use the
observation after the sequence (e.g. ``next_obs`` / the next window's first step).
"""

from __future__ import annotations

import torch


def nstep_targets(
    reward: torch.Tensor,
    terminated: torch.Tensor,
    truncated: torch.Tensor,
    valid: torch.Tensor,
    gamma: float,
    n: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """n-step discounted reward sums, bootstrap discounts and bootstrap time indices.

    Args:
        reward: ``(N, T)`` float.
        terminated, truncated, valid: ``(N, T)`` bool.
        gamma: discount factor.
        n: maximum window length (``n >= 1``).

    Returns:
        ``(returns, discount, bootstrap_index)`` all ``(N, T)``: ``returns`` in ``reward``'s
        dtype; ``discount = gamma^m`` unless the window ended in a termination (then 0);
        ``bootstrap_index = t + m`` (int64, may equal ``T``). Invalid steps get returns 0,
        discount 0 and ``bootstrap_index = t``.
    """
    if reward.dim() != 2:
        raise ValueError(f"reward must be (N, T), got shape {tuple(reward.shape)}")
    for name, x in (("terminated", terminated), ("truncated", truncated), ("valid", valid)):
        if x.shape != reward.shape:
            raise ValueError(f"{name} shape {tuple(x.shape)} != reward {tuple(reward.shape)}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    num_envs, t_len = reward.shape
    device, dtype = reward.device, reward.dtype
    # Pad the time axis by n so step t + k is column t + k of the padded tensors; the padding
    # is never read while a window is alive because windows stop at the sequence end.
    pad = torch.zeros(num_envs, n, dtype=dtype, device=device)
    reward_p = torch.cat([reward, pad], dim=1)
    ends = terminated | truncated
    false_pad = torch.zeros(num_envs, n, dtype=torch.bool, device=device)
    term_p = torch.cat([terminated, false_pad], dim=1)
    ends_p = torch.cat([ends, false_pad], dim=1)
    time = torch.arange(t_len, device=device).expand(num_envs, t_len)

    returns = torch.zeros_like(reward)
    steps = torch.zeros(num_envs, t_len, dtype=torch.long, device=device)
    hit_terminal = torch.zeros(num_envs, t_len, dtype=torch.bool, device=device)
    alive = valid.clone()  # window of step t still accumulating at offset k
    for k in range(n):
        r_k = reward_p[:, k : k + t_len]
        returns = returns + torch.where(alive, (gamma**k) * r_k, torch.zeros_like(r_k))
        steps = steps + alive.long()
        hit_terminal = hit_terminal | (alive & term_p[:, k : k + t_len])
        # The ending step's reward is included; then stop at an end or the sequence end.
        alive = alive & ~ends_p[:, k : k + t_len] & (time + k + 1 < t_len)

    discount = torch.pow(torch.full_like(returns, gamma), steps.to(dtype))
    discount = torch.where(hit_terminal | ~valid, torch.zeros_like(discount), discount)
    bootstrap_index = time + steps  # steps == 0 on invalid steps, so this is t there
    return returns, discount, bootstrap_index


def window_targets(
    reward: torch.Tensor,
    terminated: torch.Tensor,
    truncated: torch.Tensor,
    valid: torch.Tensor,
    gamma: float,
    n: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`nstep_targets` of step 0 only, for replay windows ``(B, 1 + n)`` whose step 0
    is valid (the replay buffer samples only such windows): ``(returns, discount,
    bootstrap_index)``, each ``(B,)``.

    One-step windows take a short path (no loop, no padding): ``r_0``, ``gamma`` or 0 after a
    termination, and index 1 (the next step, or the reset step holding the final observation
    after a truncation).
    """
    if n == 1 and reward.dim() == 2 and reward.shape[1] >= 2:
        discount = (~terminated[:, 0]).to(reward.dtype) * gamma
        index = torch.ones(reward.shape[0], dtype=torch.long, device=reward.device)
        return reward[:, 0], discount, index
    returns, discount, index = nstep_targets(reward, terminated, truncated, valid, gamma, n)
    return returns[:, 0], discount[:, 0], index[:, 0]

"""Advantage and return estimators on ``(N, T)`` rollouts.

Next-step autoreset (see :class:`reprl.types.Batch`): the step after an episode ends is
``valid = False`` and its ``value`` is V(final observation). So the value to bootstrap a
transition from is always ``value[:, t + 1]`` (or ``bootstrap_value`` at the rollout's end):
it is multiplied by 0 on termination and kept on truncation, which is the correct
time-limit bootstrap (Pardo et al. 2018, "Time Limits in Reinforcement Learning").
"""

from __future__ import annotations

import torch


def compute_gae(
    reward: torch.Tensor,
    value: torch.Tensor,
    terminated: torch.Tensor,
    truncated: torch.Tensor,
    valid: torch.Tensor,
    bootstrap_value: torch.Tensor,
    gamma: float,
    gae_lambda: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016, eq. 16).

    Args:
        reward, value, terminated, truncated, valid: ``(N, T)``.
        bootstrap_value: ``(N,)`` value of the observation after the last step.
        gamma, gae_lambda: discount and GAE lambda.

    Returns:
        ``(advantage, returns)`` both ``(N, T)``; zero advantage on invalid steps.
    """
    n, t_len = reward.shape
    next_value = torch.cat([value[:, 1:], bootstrap_value.reshape(n, 1)], dim=1)
    not_terminated = (~terminated).to(value.dtype)
    # No trace crosses an episode end (either kind) nor an invalid (reset) step.
    carry = ((~(terminated | truncated)) & valid).to(value.dtype) * (gamma * gae_lambda)
    validf = valid.to(value.dtype)
    delta = (reward + gamma * next_value * not_terminated - value) * validf
    advantage = torch.empty_like(value)
    last = torch.zeros(n, dtype=value.dtype, device=value.device)
    for t in range(t_len - 1, -1, -1):
        last = delta[:, t] + carry[:, t] * last
        advantage[:, t] = last
    return advantage, advantage + value


def compute_nstep_returns(
    reward: torch.Tensor,
    value: torch.Tensor,
    terminated: torch.Tensor,
    truncated: torch.Tensor,
    valid: torch.Tensor,
    bootstrap_value: torch.Tensor,
    gamma: float,
) -> torch.Tensor:
    """Discounted returns bootstrapped at the rollout's end (A2C's targets): GAE with
    lambda = 1, returned as ``advantage + value``."""
    _, returns = compute_gae(
        reward, value, terminated, truncated, valid, bootstrap_value, gamma, 1.0
    )
    return returns

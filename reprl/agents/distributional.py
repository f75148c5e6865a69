"""Categorical (C51) distributional targets (Bellemare et al. 2017, "A Distributional
Perspective on Reinforcement Learning", Algorithm 1).

The return distribution is a categorical over a fixed support ``z_i = v_min + i * dz``,
``dz = (v_max - v_min) / (K - 1)``. The target of a transition is the distribution of
``r + discount * Z(s', a*)`` projected back onto that support.
"""

from __future__ import annotations

import torch


def make_support(
    v_min: float,
    v_max: float,
    num_atoms: int,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """The ``(num_atoms,)`` evenly spaced support ``v_min .. v_max`` (C51: -10..10, 51 atoms)."""
    if num_atoms < 2:
        raise ValueError(f"num_atoms must be >= 2, got {num_atoms}")
    if not v_min < v_max:
        raise ValueError(f"need v_min < v_max, got {v_min} and {v_max}")
    return torch.linspace(v_min, v_max, num_atoms, device=device, dtype=dtype)


def categorical_projection(
    next_probs: torch.Tensor,
    rewards: torch.Tensor,
    discounts: torch.Tensor,
    support: torch.Tensor,
) -> torch.Tensor:
    """Project the distribution of ``r + discount * z`` onto ``support`` (Algorithm 1).

    Differentiable with respect to ``next_probs`` (the result is linear in it); agents compute
    targets under ``torch.no_grad()``.

    Args:
        next_probs: ``(B, K)`` probabilities of the next state's (greedy) return distribution.
        rewards: ``(B,)`` (n-step) rewards.
        discounts: ``(B,)`` bootstrap discounts, already ``gamma ** n`` and 0 after a
            termination (then all the mass lands on the atoms around ``r``).
        support: ``(K,)`` evenly spaced atoms, see :func:`make_support`.

    Returns:
        ``(B, K)`` projected probabilities; each row sums to the row sum of ``next_probs``.
    """
    batch, num_atoms = next_probs.shape
    if support.shape != (num_atoms,):
        raise ValueError(f"support has shape {tuple(support.shape)}, expected ({num_atoms},)")
    support = support.to(next_probs.dtype)
    v_min, v_max = support[0], support[-1]
    delta_z = (v_max - v_min) / (num_atoms - 1)
    # Bellman update of each atom, clamped to the support (Algorithm 1, line 6).
    tz = rewards.to(support.dtype).reshape(batch, 1) + discounts.to(support.dtype).reshape(
        batch, 1
    ) * support.reshape(1, num_atoms)
    tz = tz.clamp(v_min, v_max)
    # Fractional index of each updated atom; the clamp guards against round-off past K - 1.
    b = ((tz - v_min) / delta_z).clamp(0, num_atoms - 1)
    lower = b.floor().long()
    upper = b.ceil().long()
    # When b is an exact integer, l == u and Algorithm 1's two shares (u - b) and (b - l) are
    # both 0: the mass vanishes. Move one bound by one atom so that the whole mass goes to
    # atom b (fix from Kaixhin/Rainbow, "Fix disappearing probability mass when l = b = u").
    lower[(upper > 0) & (lower == upper)] -= 1
    upper[(lower < num_atoms - 1) & (lower == upper)] += 1
    # Distribute the probability of each atom to its two neighbours (lines 8-9).
    projected = torch.zeros_like(next_probs)
    projected.scatter_add_(1, lower, next_probs * (upper.to(b.dtype) - b))
    projected.scatter_add_(1, upper, next_probs * (b - lower.to(b.dtype)))
    return projected

"""Pieces shared by the on-policy actor-critic agents (PPO, A2C): what acting stores and how
advantages are prepared. Functions, not a base class, so agents compose them."""

from __future__ import annotations

from typing import Any

import torch

from reprl.data.returns import compute_gae
from reprl.types import Batch

BOOTSTRAP_KEYS = ("next_obs", "next_is_first")


def behaviour_extras(out: Any, action: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-step log-probability of the taken action and value estimate, float32 ``(N, 1)``."""
    return {"log_prob": out.dist.log_prob(action).float(), "value": out.value[..., 0].float()}


@torch.no_grad()
def gae_prepare(agent: Any, batch: Batch, gamma: float, gae_lambda: float) -> Batch:
    """Add ``advantage`` and ``returns`` (GAE), bootstrapped from V(next_obs) at the rollout's
    end, and drop the bootstrap-only extras."""
    with agent.autocast():
        (out, _), _ = agent.model(batch.extras["next_obs"], None, batch.extras["next_is_first"])
    adv, ret = compute_gae(
        batch.reward,
        batch.extras["value"],
        batch.terminated,
        batch.truncated,
        batch.valid,
        out.value[:, 0, 0].float(),
        gamma,
        gae_lambda,
    )
    extras = {k: v for k, v in batch.extras.items() if k not in BOOTSTRAP_KEYS}
    return batch.replace(extras=extras | {"advantage": adv, "returns": ret})

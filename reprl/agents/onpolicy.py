"""Pieces shared by the on-policy actor-critic agents (PPO, A2C): what acting stores and how
advantages are prepared. Functions, not a base class, so agents compose them."""

from __future__ import annotations

from typing import Any

import torch

from reprl.data.returns import compute_gae
from reprl.types import Batch

BOOTSTRAP_KEYS = ("next_obs", "next_is_first", "next_state")


def is_recurrent(model: Any) -> bool:
    """Whether the model's neck carries a state (LSTM, GRU) across steps."""
    return model.initial_state(1) is not None


def start_state(model: Any, batch: Batch, key: str = "initial_state") -> Any:
    """The neck state stored in ``batch.extras[key]`` (the rollout's start by default), unpacked
    for the model; None (the model starts from its initial state) when there is none."""
    packed = batch.extras.get(key)
    return None if packed is None else model.neck.state_from_batch(packed)


def behaviour_extras(out: Any, action: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-step log-probability of the taken action and value estimate, float32 ``(N, 1)``
    (and ``value_int``, the second value head's, when the policy has one: RND)."""
    extras = {"log_prob": out.dist.log_prob(action).float(), "value": out.value[..., 0].float()}
    if out.value.shape[-1] > 1:
        extras["value_int"] = out.value[..., 1].float()
    return extras


@torch.no_grad()
def gae_prepare(agent: Any, batch: Batch, gamma: float, gae_lambda: float) -> Batch:
    """Add ``advantage`` and ``returns`` (GAE), bootstrapped from V(next_obs) at the rollout's
    end, and drop the bootstrap-only extras. A recurrent neck continues from the state the
    rollout reached (``next_state``), as acting would have on the next step."""
    next_state = start_state(agent.model, batch, "next_state")
    with agent.autocast():
        (out, _), _ = agent.model(
            batch.extras["next_obs"], next_state, batch.extras["next_is_first"]
        )
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
    extras |= {"advantage": adv, "returns": ret}
    streams = ((a, a.intrinsic()) for a in agent.auxiliaries.values())
    intrinsic = [(a, spec) for a, spec in streams if spec is not None]
    if intrinsic:
        # A second reward stream (RND, Burda et al. 2018, section 2.3): its own value head,
        # discount and non-episodic returns (no episode end cuts them: the trace bootstraps
        # from V_int of the final observation and stops at the reset step), then the mixed
        # advantage ext_coef * A_ext + int_coef * A_int.
        (aux, spec), no_end = intrinsic[0], torch.zeros_like(batch.terminated)
        reward_int = aux.intrinsic_reward(batch)
        adv_int, ret_int = compute_gae(
            reward_int,
            batch.extras["value_int"],
            no_end,
            no_end,
            batch.valid,
            out.value[:, 0, 1].float(),
            spec.gamma,
            gae_lambda,
        )
        extras |= {
            "advantage": spec.ext_coef * adv + spec.int_coef * adv_int,
            "returns_int": ret_int,
            "reward_int": reward_int,
        }
    return batch.replace(extras=extras)

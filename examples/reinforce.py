"""A new algorithm in one file with ``reprl.make_train``: REINFORCE with a learned baseline
(Williams 1992; Sutton & Barto 2018, section 13.4) on CartPole.

The loss is the only new part: the policy-gradient term ``-log pi(a|s) * (G - V(s))`` with
the Monte-Carlo-like returns that reprl's on-policy agents already prepare (GAE with
``lambda = 1`` gives the discounted return bootstrapped only at the rollout's end), a squared
error for the baseline, and an entropy bonus. Collection, advantages, evaluation,
checkpoints, logging and resume are reprl's. Run it::

    python examples/reinforce.py                       # CartPole, until solved
    python examples/reinforce.py total_steps=20000     # any reprl override
"""

from __future__ import annotations

import sys
from typing import Any

import torch

from reprl import make_train
from reprl.agents.base import mean_weights
from reprl.types import Batch

DEFAULTS = [
    "experiment=ppo_cartpole",  # its env, model and rollout settings
    "agent.gae_lambda=1.0",  # Monte-Carlo returns within each rollout
    "agent.num_epochs=1",  # one pass: REINFORCE is on-policy, without PPO's clipping
    "agent.num_minibatches=1",
    "agent.num_steps=128",
    "agent.lr=0.003",
    "name=reinforce_cartpole",
]


def make_loss_fn(agent: Any, cfg: Any) -> Any:
    """REINFORCE with baseline on the agent's minibatches (they hold ``returns``)."""

    def loss_fn(mb: Batch) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        w = mean_weights(mb.valid)  # the rollout's reset steps weigh 0
        (out, _), _ = agent.model(mb.obs, None, mb.is_first)
        value = out.value[..., 0]
        advantage = (mb.extras["returns"] - value).detach()
        advantage = advantage / (advantage.std() + 1e-8)
        entropy = (out.dist.entropy() * w).sum()
        losses = {
            "loss_rl_policy": -(out.dist.log_prob(mb.action) * advantage * w).sum(),
            "loss_rl_baseline": 0.5 * ((mb.extras["returns"] - value) ** 2 * w).sum(),
            "loss_rl_entropy": -0.01 * entropy,
        }
        return losses, {"stats/entropy": entropy.detach()}

    return loss_fn


train = make_train(make_loss_fn=make_loss_fn)


if __name__ == "__main__":
    result = train([*DEFAULTS, *sys.argv[1:]])
    print(f"final evaluation: {result.final_eval}; solved at step {result.solved_step}")

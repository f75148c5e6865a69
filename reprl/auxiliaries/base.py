"""The auxiliary interface: components that add losses (and maybe an intrinsic reward) to any
agent, switched on in YAML (``aux.<name>.<option>=...``) and composed, never subclassed.

An auxiliary is an ``nn.Module`` built as ``cls(cfg, spec, model)``; ``model`` is the agent's
:class:`~reprl.models.AgentModel`, which auxiliaries on the shared backbone (modified RND,
BYOL, Barlow Twins) read through :attr:`Auxiliary.agent_model` without registering it as a
submodule (its parameters stay the agent's). The auxiliary's own parameters are trained by
the agent's update together with the agent's (one summed loss, one backward). Hooks:

- :meth:`Auxiliary.intrinsic_reward` (during ``prepare``, no grad): an ``(N, T)`` reward
  stream for the agent to learn a second value head on, described by :meth:`intrinsic`;
- :meth:`Auxiliary.compute_loss` (per minibatch): ``{"loss_<group>_<name>": coef * loss}``,
  given the agent's backbone embedding of the minibatch's observations when it has one;
- :meth:`Auxiliary.coefficients`: the loss weights, logged every iteration;
- :meth:`Auxiliary.after_update`: EMA targets and the like;
- :meth:`extra_state` / :meth:`load_extra_state`: non-tensor state (normalisers) for
  checkpoints, next to the module's ``state_dict``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from reprl.types import Batch


@dataclass(frozen=True)
class IntrinsicSpec:
    """How an agent uses an auxiliary's intrinsic reward stream."""

    gamma: float
    """Discount of the intrinsic returns (non-episodic)."""
    ext_coef: float
    """Weight of the extrinsic advantage in the mixed advantage."""
    int_coef: float
    """Weight of the intrinsic advantage."""


class Auxiliary(nn.Module):
    """Base class: every hook is optional."""

    def __init__(self, model: nn.Module | None = None) -> None:
        super().__init__()
        # Kept out of the module tree: the agent owns (trains, saves) the model's parameters.
        self.__dict__["agent_model"] = model

    agent_model: Any
    """The agent's model (backbone -> neck -> policy), or None."""

    def coefficients(self) -> dict[str, float]:
        """The weights this auxiliary applies to its losses, e.g. ``{"a_RND": 1.0}``."""
        return {}

    def warmup(self, envs: Any, seed: int) -> None:
        """Before training starts (not on resume): e.g. statistics from random-policy steps.
        The agent's Source resets the envs afterwards."""

    def intrinsic(self) -> IntrinsicSpec | None:
        """The intrinsic reward stream this auxiliary produces (None: none)."""
        return None

    def intrinsic_reward(self, batch: Batch) -> torch.Tensor:
        """``(N, T)`` intrinsic rewards of the batch's transitions."""
        raise NotImplementedError

    def compute_loss(
        self, mb: Batch, agent: Any, embedding: torch.Tensor | None = None
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Weighted losses and statistics of one minibatch; ``embedding`` is the agent's
        backbone output ``(N, T, D)`` for ``mb.obs`` (with its graph), when it has one."""
        return {}, {}

    def after_update(self) -> None:
        """After each optimizer step."""

    def extra_state(self) -> dict[str, Any]:
        """Non-tensor state saved in checkpoints."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`extra_state`."""


def next_observations(batch: Batch) -> torch.Tensor:
    """The observation each step reaches, ``(N, T, ...)``: ``obs[:, t + 1]``, and the
    rollout's ``next_obs`` for the last step (next-step autoreset: after an episode end the
    reset step holds the final observation)."""
    return torch.cat([batch.obs[:, 1:], batch.extras["next_obs"]], dim=1)

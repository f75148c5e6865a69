"""Advantage Actor-Critic (Mnih et al. 2016, synchronous variant as in SB3/OpenAI baselines).

One gradient step per rollout on the whole batch, n-step returns (GAE with lambda = 1 by
default), RMSprop as in the paper and SB3 (alpha 0.99, eps 1e-5).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from reprl.agents.base import Agent, masked_mean
from reprl.agents.onpolicy import behaviour_extras, gae_prepare, start_state
from reprl.errors import ConfigError
from reprl.optim.optimizers import RMSprop, check_max_grad_norm
from reprl.optim.schedules import Schedule
from reprl.registry import AGENTS
from reprl.types import Batch


@dataclass
class A2CConfig:
    """A2C hyperparameters (defaults: SB3 / RL Zoo)."""

    num_steps: int = 5
    """Steps collected per env per update."""
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 1.0
    """GAE lambda (1.0: classic n-step returns)."""
    lr: Schedule = field(default_factory=lambda: Schedule("constant", 7e-4))
    """Learning rate (number or schedule)."""
    optimizer: str = "rmsprop"
    """rmsprop (paper, SB3) or adam."""
    adam_eps: float = 1e-5
    """Epsilon of RMSprop/Adam."""
    rms_alpha: float = 0.99
    """RMSprop smoothing constant."""
    vf_coef: float = 0.5
    """Weight of the value loss."""
    ent_coef: Schedule = field(default_factory=lambda: Schedule("constant", 0.0))
    """Weight of the entropy bonus."""
    norm_adv: bool = False
    """Normalise advantages over the batch."""
    max_grad_norm: float | None = 0.5
    """Global gradient-norm clipping (None: off)."""
    autocast: str = "none"
    """Mixed precision: none or bf16."""

    def validate(self, path: str) -> None:
        """Reject inconsistent options at load time."""
        check_max_grad_norm(self.max_grad_norm, path)
        if self.optimizer not in ("rmsprop", "adam"):
            raise ConfigError(f"{path}.optimizer: unknown '{self.optimizer}'; valid: adam, rmsprop")
        if self.autocast not in ("none", "bf16"):
            raise ConfigError(f"{path}.autocast: unknown '{self.autocast}'; valid: bf16, none")


@AGENTS.register("a2c", A2CConfig)
class A2C(Agent):
    """A2C on the shared loop: one update on each whole rollout."""

    requires = ("log_prob", "value", "advantage", "returns")

    def make_optimizer(self) -> Any:
        """RMSprop (alpha 0.99, eps 1e-5) as in the paper and SB3, or Adam."""
        if self.cfg.optimizer == "adam":
            return super().make_optimizer()
        params = [p for p in self.model.parameters() if p.requires_grad]
        return RMSprop(params, lr=self.cfg.lr(0.0), alpha=self.cfg.rms_alpha, eps=self.cfg.adam_eps)

    def act_extras(self, out: Any, action: torch.Tensor) -> dict[str, torch.Tensor]:
        """Store the behaviour policy's log-probability and value estimate."""
        return behaviour_extras(out, action)

    def on_iteration_start(self, progress: float) -> None:
        """Evaluate schedules."""
        super().on_iteration_start(progress)
        self.ent_coef = self.cfg.ent_coef(progress)

    def prepare(self, batch: Batch) -> Batch:
        """n-step (GAE-lambda) advantages bootstrapped from V(next_obs)."""
        return gae_prepare(self, batch, self.cfg.gamma, self.cfg.gae_lambda)

    def compute_loss(self, mb: Batch) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Policy gradient with the advantage, squared value error, entropy bonus."""
        valid = mb.valid
        with self.autocast():  # a recurrent neck re-runs the rollout from its start state
            (out, _), _ = self.model(mb.obs, start_state(self.model, mb), mb.is_first)
        logp = out.dist.log_prob(mb.action).float()
        entropy = out.dist.entropy().float()
        value = out.value[..., 0].float()
        adv = mb.extras["advantage"]
        if self.cfg.norm_adv:
            mean = masked_mean(adv, valid)
            adv = (adv - mean) / (masked_mean((adv - mean) ** 2, valid).sqrt() + 1e-8)
        losses = {
            "loss_rl_policy": -masked_mean(adv * logp, valid),
            "loss_rl_value": self.cfg.vf_coef
            * masked_mean((mb.extras["returns"] - value) ** 2, valid),
            "loss_rl_entropy": -self.ent_coef * masked_mean(entropy, valid),
        }
        return losses, {"stats/entropy": masked_mean(entropy.detach(), valid)}

"""TD3 (Fujimoto et al. 2018, "Addressing Function Approximation Error in Actor-Critic
Methods") and DDPG (Lillicrap et al. 2016), which is TD3 without its three changes.

TD3 = DDPG + (1) clipped double-Q: targets use the minimum of two target critics;
(2) delayed policy updates: the actor and the targets move every ``policy_delay`` (2) critic
updates; (3) target policy smoothing: clipped Gaussian noise on the target action.

One gradient step on a replay window (step 0 learned from, bootstrap step ``m``):

- critics: ``y = R + gamma^m min_j Q'_j(s_m, clip(mu'(s_m) + clip(eps, -c, c), -1, 1))``,
  ``eps ~ N(0, target_policy_noise)``; loss ``sum_j MSE(Q_j(s, a), y)`` (SB3's scaling);
- actor (every ``policy_delay`` steps): ``-Q_1(s, mu(s))``, then Polyak updates of the
  target actor and critics.

Exploration: ``mu(s) + N(0, exploration_noise)`` in the normalised action space, clipped to
``[-1, 1]`` (SB3's NormalActionNoise on the scaled action), after ``learning_starts`` uniform
random steps. DDPG (``agent=ddpg``) is the same file with ``policy_delay`` 1, no target
smoothing and one critic (``model/policy=ddpg``), as SB3 defines it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from reprl.agents.offpolicy import ContinuousAgent, ContinuousConfig
from reprl.errors import ConfigError
from reprl.optim.schedules import Schedule
from reprl.registry import AGENTS
from reprl.types import Batch


@dataclass
class TD3Config(ContinuousConfig):
    """TD3 hyperparameters (defaults: SB3's TD3 and the paper's)."""

    lr: Schedule = field(default_factory=lambda: Schedule("constant", 1e-3))
    """Learning rate of the critics and (unless ``actor_lr``) the actor (paper: 1e-3)."""
    policy_delay: int = 2
    """Actor and target updates every this many critic updates (paper: 2)."""
    target_policy_noise: float = 0.2
    """Std of the Gaussian noise on target actions (normalised scale; paper: 0.2)."""
    target_noise_clip: float = 0.5
    """Clip of that noise (paper: 0.5)."""
    exploration_noise: float = 0.1
    """Std of the Gaussian exploration noise (normalised scale; paper: 0.1)."""

    def validate(self, path: str) -> None:
        """Reject negative noise on top of the shared checks."""
        super().validate(path)
        for name in ("target_policy_noise", "target_noise_clip", "exploration_noise"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{path}.{name}: must be >= 0, got {getattr(self, name)}")


@dataclass
class DDPGConfig(TD3Config):
    """DDPG as SB3 defines it: TD3 with ``policy_delay`` 1 and no target smoothing (use one
    critic: ``model/policy=ddpg``)."""

    policy_delay: int = 1
    """Actor and target updates every critic update."""
    target_policy_noise: float = 0.0
    """No target policy smoothing."""
    target_noise_clip: float = 0.0
    """No target policy smoothing."""


@AGENTS.register("td3", TD3Config)
class TD3(ContinuousAgent):
    """TD3 (and DDPG) on the shared loop (replay Source, deterministic ``actor_q`` policy)."""

    def __init__(self, cfg: TD3Config, spec: Any, model: Any, device: torch.device) -> None:
        super().__init__(cfg, spec, model, device)
        if self.policy.gaussian:
            raise ConfigError(
                "model.policy.actor: td3/ddpg need the deterministic actor "
                "(model/policy=td3 or model/policy=ddpg)"
            )

    # ------------------------------------------------------------------ acting
    @torch.inference_mode()
    def act(
        self, obs: torch.Tensor, state: Any, is_first: torch.Tensor, deterministic: bool = False
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], Any]:
        """``mu(s)`` plus clipped Gaussian noise (none when ``deterministic``), in the env's
        bounds; uniform random actions before ``learning_starts`` with ``random_warmup``."""
        if not deterministic and self.cfg.random_warmup and not self.learning:
            return self.warmup_action(obs.shape[0]), {}, state
        with self.autocast():
            features, state = self.encode(obs, state, is_first)
            action, _ = self.policy.sample(features, deterministic=True)
        action = action.float()
        if not deterministic and self.cfg.exploration_noise > 0:
            noise = torch.randn_like(action) * self.cfg.exploration_noise
            action = (action + noise).clamp(-1.0, 1.0)
        return self.policy.to_env(action), {}, state

    # ------------------------------------------------------------------ learning
    def compute_loss(self, mb: Batch) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Critic loss, plus the actor loss every ``policy_delay`` steps."""
        cfg = self.cfg
        returns, discount, action, feat, _, target_boot = self.window_features(mb, False)
        target_policy = self.target.target.policy
        with torch.no_grad(), self.autocast():
            next_action, _ = target_policy.sample(target_boot, deterministic=True)
            next_action = next_action.float()
            if cfg.target_policy_noise > 0:
                noise = torch.randn_like(next_action) * cfg.target_policy_noise
                noise = noise.clamp(-cfg.target_noise_clip, cfg.target_noise_clip)
                next_action = (next_action + noise).clamp(-1.0, 1.0)
            next_q = target_policy.q(target_boot, next_action).float().min(0).values
            target_q = returns + discount * next_q
        with self.autocast():
            q = self.policy.q(feat, action).float()
        losses = {"loss_rl_critic": (q - target_q).square().mean(-1).sum()}
        info = {"stats/q": q.detach().mean()}
        if self.actor_step():
            with self.autocast():
                detached = feat.detach()
                pi_action, _ = self.policy.sample(detached, deterministic=True)
                q_pi = self.policy.q(detached, pi_action, detach_params=True)[0].float()
            losses["loss_rl_actor"] = -q_pi.mean()
        return losses, info

    def after_update(self, mb: Batch, info: dict[str, torch.Tensor]) -> None:
        """Count the step; after an actor update, Polyak-average the targets."""
        if self.actor_step():
            self.actor_updates += 1
            self.target.update(self.actor_updates)
        self.gradient_steps_done += 1


AGENTS.add("ddpg", TD3, DDPGConfig)

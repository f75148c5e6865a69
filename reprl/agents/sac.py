"""Soft Actor-Critic (Haarnoja et al. 2018, "Soft Actor-Critic Algorithms and Applications",
arXiv 1812.05905) for continuous actions, with automatic entropy tuning.

One gradient step on a replay window (step 0 learned from, bootstrap step ``m``):

- critics: ``y = R + gamma^m (min_j Q'_j(s_m, a') - alpha log pi(a'|s_m))``,
  ``a' ~ pi(.|s_m)`` from the *online* actor, ``Q'`` the Polyak target critics; loss
  ``0.5 * sum_j MSE(Q_j(s, a), y)`` (SB3's scaling);
- actor (every ``policy_delay`` steps): ``alpha log pi(a~|s) - min_j Q_j(s, a~)`` with the
  reparameterised ``a~ ~ pi(.|s)`` (eq. 7);
- entropy coefficient (``autotune``): ``-log_alpha * (log pi(a~|s) + H_target)`` with
  ``H_target = -dim(A)`` (eq. 18; the parameter is ``log alpha``, as SB3 and CleanRL do).

All three losses are summed and take one backward and one step of three Adams
(:class:`reprl.agents.offpolicy.ContinuousAgent` explains why that equals separate updates).
The target networks follow the online ones by Polyak averaging every
``target_update_period`` gradient steps.
Observations can come from pixels through a CNN backbone trained by the critic loss only
(SAC-AE / DrQ convention; ``augment: random_shift`` gives DrQ, Kostrikov et al. 2020).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from reprl.agents import fused_sac
from reprl.agents.offpolicy import ContinuousAgent, ContinuousConfig
from reprl.errors import ConfigError
from reprl.optim.schedules import Schedule
from reprl.registry import AGENTS
from reprl.types import Batch


@dataclass
class SACConfig(ContinuousConfig):
    """SAC hyperparameters (defaults: SB3's SAC, which follows the paper's Table 1)."""

    alpha: float = 1.0
    """Initial entropy coefficient (SB3 ``ent_coef="auto"`` starts at 1.0); the fixed value
    when ``autotune`` is off (the paper's v1: 0.2 for most MuJoCo tasks)."""
    autotune: bool = True
    """Learn alpha towards ``target_entropy`` (Haarnoja et al. 2018, section 5)."""
    target_entropy: float | None = None
    """Entropy target of autotuning (None: ``-dim(A)``, the paper's heuristic)."""
    alpha_lr: Schedule | None = None
    """Learning rate of log alpha (None: the actor's)."""
    target_update_period: int = 1
    """Polyak-average the targets every this many gradient steps (SB3's
    ``target_update_interval``; pytorch_sac and DrQ: 2)."""
    parallel_actor: bool = False
    """Where the step is written out by hand (ReLU MLPs, float32, CPU: see
    :mod:`reprl.agents.fused_sac`), compute the next actions and the actor's and entropy
    coefficient's losses and gradients on a second thread while this one computes the
    critics': a second core's worth of speed (each thread with ``torch_threads`` torch
    threads), the same results bit for bit. Off: one thread, as ``torch_threads`` says."""

    def validate(self, path: str) -> None:
        """Reject a non-positive alpha on top of the shared checks."""
        super().validate(path)
        if self.alpha <= 0:
            raise ConfigError(f"{path}.alpha: must be > 0, got {self.alpha}")
        if self.target_update_period < 1:
            raise ConfigError(f"{path}.target_update_period: must be >= 1")


@AGENTS.register("sac", SACConfig)
class SAC(ContinuousAgent):
    """Soft Actor-Critic on the shared loop (replay Source, ``actor_q`` policy)."""

    def __init__(self, cfg: SACConfig, spec: Any, model: Any, device: torch.device) -> None:
        super().__init__(cfg, spec, model, device)
        if not self.policy.gaussian:
            raise ConfigError("model.policy.actor: sac needs the gaussian actor")
        dim = int(np.prod(spec.action_shape))
        self.target_entropy = -float(dim) if cfg.target_entropy is None else cfg.target_entropy
        # ReLU MLPs learned on CPU in float32 by a stateless model: the whole step's gradients
        # by hand (fused_sac.sac_losses), each loss still an autograd output.
        nets = fused_sac.Nets.of(self.policy)
        stateless = model.initial_state(1, device) is None
        trainable = all(p.requires_grad for p in self.policy.parameters())
        fused = nets is not None and stateless and trainable and not self._autocast
        target = fused_sac.Nets.of(self.target.target.policy) if fused else None
        self.fused_nets = (nets, target) if nets is not None and target is not None else None
        """The online and target nets of the hand-written step (None: autograd)."""
        if cfg.parallel_actor and self.fused_nets is None:
            raise ConfigError(
                "agent.parallel_actor: needs SAC's hand-written step (stateless, trainable ReLU "
                "MLP actor and critics in float32 on CPU, no autocast); this model learns "
                "through autograd: set agent.parallel_actor=false"
            )

    def make_extra_params(self, cfg: Any, spec: Any, device: torch.device) -> dict[str, Any]:
        """``log_alpha`` (trained only with ``autotune``)."""
        log_alpha = torch.tensor(float(np.log(cfg.alpha)), device=device)
        return {"alpha": log_alpha.requires_grad_(True)} if cfg.autotune else {}

    def extra_lr(self, name: str) -> Schedule:
        """``alpha_lr``, else the actor's learning rate."""
        return self.actor_lr if self.cfg.alpha_lr is None else self.cfg.alpha_lr

    @property
    def alpha(self) -> torch.Tensor:
        """The current entropy coefficient (a constant for the losses)."""
        if "alpha" in self.extra_params:
            return self.extra_params["alpha"].detach().exp()
        return torch.tensor(self.cfg.alpha, device=self.device)

    # ------------------------------------------------------------------ acting
    @torch.inference_mode()
    def act(
        self, obs: torch.Tensor, state: Any, is_first: torch.Tensor, deterministic: bool = False
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], Any]:
        """Sampled (or, ``deterministic``, mean) squashed actions in the env's bounds; uniform
        random ones before ``learning_starts`` with ``random_warmup``."""
        if not deterministic and self.cfg.random_warmup and not self.learning:
            return self.warmup_action(obs.shape[0]), {}, state
        with self.autocast():
            features, state = self.encode(obs, state, is_first)
            if self.fused_nets is not None:  # the actor from its kept views: same numbers
                action = fused_sac.act(self.fused_nets[0], features, deterministic)
            else:
                action, _ = self.policy.sample(features, deterministic, with_log_prob=False)
        return self.policy.to_env(action.float()), {}, state

    # ------------------------------------------------------------------ learning
    def compute_loss(self, mb: Batch) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Critic, actor and entropy-coefficient losses on windows ``(B, 1 + n_step)``."""
        returns, discount, action, feat, feat_boot, target_boot = self.window_features(mb)
        assert feat_boot is not None  # computed without gradient
        if self.fused_nets is not None and fused_sac.FUSED_SAC:
            return fused_sac.sac_losses(
                *self.fused_nets,
                feat,
                feat_boot,
                target_boot,
                action,
                returns,
                discount,
                self.extra_params.get("alpha"),
                self.alpha,
                self.target_entropy,
                self.actor_step(),
                self.cfg.parallel_actor,
            )
        policy, alpha = self.policy, self.alpha
        with torch.no_grad(), self.autocast():
            next_action, next_log_prob = policy.sample(feat_boot)
            next_q = self.target.target.policy.q(target_boot, next_action).float().min(0).values
            target_q = returns + discount * (next_q - alpha * next_log_prob)
        with self.autocast():
            q = policy.q(feat, action).float()
        critic_loss = 0.5 * (q - target_q).square().mean(-1).sum()
        losses = {"loss_rl_critic": critic_loss}
        info = {"stats/q": q.detach().mean(), "stats/alpha": alpha}
        if self.actor_step():
            with self.autocast():
                detached = feat.detach()
                pi_action, log_prob = policy.sample(detached)
                q_pi = policy.q(detached, pi_action, detach_params=True).float().min(0).values
            losses["loss_rl_actor"] = (alpha * log_prob - q_pi).mean()
            if "alpha" in self.extra_params:
                log_alpha = self.extra_params["alpha"]
                gap = (log_prob.detach() + self.target_entropy).mean()
                losses["loss_rl_alpha"] = -log_alpha * gap
            info["stats/entropy"] = -log_prob.detach().mean()
        return losses, info

    def after_update(self, mb: Batch, info: dict[str, torch.Tensor]) -> None:
        """Count the step; Polyak-average the targets every ``target_update_period`` steps."""
        if self.actor_step():
            self.actor_updates += 1
        self.gradient_steps_done += 1
        if self.gradient_steps_done % self.cfg.target_update_period == 0:
            self.target.update(self.gradient_steps_done)

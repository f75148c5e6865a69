"""Proximal Policy Optimization (Schulman et al. 2017), clipped surrogate objective.

Implementation details follow Huang et al. 2022, "The 37 Implementation Details of PPO"
(and CleanRL's ``ppo.py``): GAE, per-minibatch advantage normalisation, value clipping,
global gradient clipping, Adam eps 1e-5, learning-rate and clip annealing (here as data
schedules), approximate-KL early stopping (Schulman's estimator ``(r - 1) - log r``,
http://joschu.net/blog/kl-approx.html).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from reprl.agents.base import Agent, mean_weights
from reprl.agents.onpolicy import behaviour_extras, gae_prepare, is_recurrent, start_state
from reprl.data.rollout import check_sequence_split
from reprl.errors import ConfigError
from reprl.optim.optimizers import check_max_grad_norm
from reprl.optim.schedules import Schedule
from reprl.registry import AGENTS
from reprl.types import Batch, EnvSpec

MINIBATCH_LAYOUTS = ("auto", "sequences", "transitions")


@dataclass
class PPOConfig:
    """PPO hyperparameters (defaults: CleanRL ppo_atari / Huang et al. 2022)."""

    num_steps: int = 128
    """Steps collected per env per iteration (the rollout's T)."""
    num_epochs: int = 4
    """Passes over each rollout."""
    num_minibatches: int = 4
    """Minibatches per epoch (minibatch size = num_envs * num_steps / num_minibatches)."""
    minibatch_layout: str = "auto"
    """How minibatches are cut from a rollout: ``transitions`` (shuffled single steps),
    ``sequences`` (whole env sequences in time order; num_envs divisible by num_minibatches)
    or ``auto`` (sequences when the model's neck is recurrent, else transitions)."""
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 0.95
    """GAE lambda."""
    lr: Schedule = field(default_factory=lambda: Schedule("constant", 2.5e-4))
    """Learning rate (a number or a schedule, e.g. {type: linear, start: 1e-3, end: 0})."""
    adam_eps: float = 1e-5
    """Adam epsilon."""
    clip_coef: Schedule = field(default_factory=lambda: Schedule("constant", 0.2))
    """Policy ratio clipping epsilon (number or schedule)."""
    clip_vloss: bool = False
    """Clip the value update around the old value (CleanRL default on; SB3 off)."""
    vf_clip_coef: float | None = None
    """Value clipping range (None: same as clip_coef)."""
    huber_value_loss: bool = False
    """Huber instead of squared value loss."""
    huber_delta: float = 1.0
    """Huber threshold."""
    rl_coef: float = 1.0
    """a_RL: weight of the whole RL loss ``L_RL`` next to auxiliary losses (a_SSL, a_RND are
    the auxiliaries' ``coef``)."""
    pg_coef: float = 1.0
    """a_act: weight of the policy (actor) loss."""
    vf_coef: float = 0.5
    """a_crt: weight of the value (critic) loss."""
    ext_vf_coef: float = 1.0
    """a_e: weight of the extrinsic value head's loss inside the critic loss."""
    int_vf_coef: float = 1.0
    """a_i: weight of the intrinsic value head's loss (with an intrinsic reward, e.g. RND)."""
    ent_coef: Schedule = field(default_factory=lambda: Schedule("constant", 0.01))
    """a_H: weight of the entropy bonus (number or schedule). In all,
    ``L_RL = a_act L_act + a_crt (a_e L_crt_ext + a_i L_crt_int) - a_H H``."""
    backbone_grad: bool = True
    """Whether the RL loss trains the backbone (false: the backbone is shaped only by
    auxiliary losses, or stays as initialised, e.g. from a pretrained checkpoint)."""
    grad_projection: bool = False
    """Project the auxiliary losses' backbone gradient off the RL gradient when they
    conflict (negative cosine; :mod:`reprl.optim.gradproj`); logs ``stats/grad_cosine`` and
    ``stats/projection_fired`` (its mean is the fraction of updates that projected)."""
    norm_adv: bool = True
    """Normalise advantages per minibatch."""
    max_grad_norm: float | None = 0.5
    """Global gradient-norm clipping (None: off)."""
    target_kl: float | None = None
    """Stop this iteration's epochs once the approximate KL exceeds this (None: off)."""
    autocast: str = "none"
    """Mixed precision for acting and learning: none or bf16."""

    def validate(self, path: str) -> None:
        """Reject inconsistent options at load time."""
        check_max_grad_norm(self.max_grad_norm, path)
        if self.autocast not in ("none", "bf16"):
            raise ConfigError(f"{path}.autocast: unknown '{self.autocast}'; valid: bf16, none")
        if self.minibatch_layout not in MINIBATCH_LAYOUTS:
            raise ConfigError(
                f"{path}.minibatch_layout: unknown '{self.minibatch_layout}'; "
                f"valid: {', '.join(MINIBATCH_LAYOUTS)}"
            )
        for name in ("num_steps", "num_epochs", "num_minibatches"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{path}.{name}: must be >= 1, got {getattr(self, name)}")


def value_loss(
    value: torch.Tensor, target: torch.Tensor, old_value: torch.Tensor, cfg: Any, clip: float
) -> torch.Tensor:
    """Element-wise value loss, optionally Huber and clipped around the old estimate."""

    def err(v: torch.Tensor) -> torch.Tensor:
        if cfg.huber_value_loss:
            return F.huber_loss(v, target, reduction="none", delta=cfg.huber_delta)
        return (v - target) ** 2  # the PPO paper's squared error (as SB3; CleanRL halves it)

    loss = err(value)
    if cfg.clip_vloss:
        vclip = clip if cfg.vf_clip_coef is None else cfg.vf_clip_coef
        clipped = old_value + (value - old_value).clamp(-vclip, vclip)
        loss = torch.max(loss, err(clipped))
    return loss


@AGENTS.register("ppo", PPOConfig)
class PPO(Agent):
    """PPO on the shared loop: rollouts -> GAE -> epochs of shuffled minibatches."""

    requires = ("log_prob", "value", "advantage", "returns")
    supports_auxiliaries = True
    supports_intrinsic = True

    def __init__(self, cfg: PPOConfig, spec: EnvSpec, model: Any, device: torch.device) -> None:
        super().__init__(cfg, spec, model, device)
        recurrent = is_recurrent(model)
        if recurrent and cfg.minibatch_layout == "transitions":
            raise ConfigError(
                "agent.minibatch_layout: transitions cut a recurrent neck's sequences from their "
                "state; use sequences (or auto) with model.neck lstm/gru"
            )
        self.sequences = cfg.minibatch_layout == "sequences" or (
            cfg.minibatch_layout == "auto" and recurrent
        )
        """Whether minibatches are whole env sequences (:meth:`minibatches`)."""

    def make_source(self, envs: Any, seed: int, device: torch.device) -> Any:
        """The rollout source; checks at the start that sequence minibatches can split the
        envs (rather than after the first rollout)."""
        if self.sequences:
            check_sequence_split(envs.num_envs, self.cfg.num_minibatches)
        return super().make_source(envs, seed, device)

    def act_extras(self, out: Any, action: torch.Tensor) -> dict[str, torch.Tensor]:
        """Store the behaviour policy's log-probability and value estimate."""
        return behaviour_extras(out, action)

    def on_iteration_start(self, progress: float) -> None:
        """Evaluate the schedules at this training fraction."""
        super().on_iteration_start(progress)
        self.clip = self.cfg.clip_coef(progress)
        self.ent_coef = self.cfg.ent_coef(progress)

    def prepare(self, batch: Batch) -> Batch:
        """GAE advantages and returns, bootstrapped from V(next_obs) at the rollout's end."""
        return gae_prepare(self, batch, self.cfg.gamma, self.cfg.gae_lambda)

    def minibatches(self, source: Any, batch: Batch) -> Iterator[Batch]:
        """num_epochs passes of num_minibatches: shuffled transitions, or whole env sequences
        with a recurrent neck (CleanRL ppo_atari_lstm.py)."""
        if self.sequences:
            return source.sequence_minibatches(batch, self.cfg.num_epochs, self.cfg.num_minibatches)
        return source.minibatches(batch, self.cfg.num_epochs, self.cfg.num_minibatches)

    def compute_loss(self, mb: Batch) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Clipped surrogate + value loss - entropy bonus on one minibatch."""
        cfg = self.cfg
        w = mean_weights(mb.valid)  # masked means: (x * w).sum(); invalid reset steps weigh 0
        embedding = None
        # A recurrent neck re-runs each sequence from its rollout-start state (None: initial).
        state = start_state(self.model, mb)
        with self.autocast():
            if self.auxiliaries or not cfg.backbone_grad:
                # One backbone pass shared with the auxiliaries that read the embedding.
                embedding, _ = self.model.backbone(mb.obs)
                rl_input = embedding if cfg.backbone_grad else embedding.detach()
                (out, _), _ = self.model.from_embedding(rl_input, state, mb.is_first)
            else:
                (out, _), _ = self.model(mb.obs, state, mb.is_first)
        logp = out.dist.log_prob(mb.action).float()
        entropy = out.dist.entropy().float()
        value = out.value[..., 0].float()
        log_ratio = logp - mb.extras["log_prob"]
        ratio = log_ratio.exp()
        adv = mb.extras["advantage"]
        if cfg.norm_adv:  # per-minibatch normalisation (Huang et al. 2022, detail 7)
            mean = (adv * w).sum()
            std = (((adv - mean) ** 2) * w).sum().sqrt()
            adv = (adv - mean) / (std + 1e-8)
        pg = torch.max(-adv * ratio, -adv * ratio.clamp(1 - self.clip, 1 + self.clip))
        v_loss = value_loss(value, mb.extras["returns"], mb.extras["value"], cfg, self.clip)
        v_loss = cfg.ext_vf_coef * v_loss
        if "returns_int" in mb.extras:  # the intrinsic value head (RND), summed as CleanRL
            v_int = out.value[..., 1].float()
            v_loss = v_loss + cfg.int_vf_coef * value_loss(
                v_int, mb.extras["returns_int"], mb.extras["value_int"], cfg, self.clip
            )
        ent = (entropy * w).sum()
        a_rl = cfg.rl_coef
        losses = {
            "loss_rl_policy": a_rl * cfg.pg_coef * (pg * w).sum(),
            "loss_rl_value": a_rl * cfg.vf_coef * (v_loss * w).sum(),
            "loss_rl_entropy": -a_rl * self.ent_coef * ent,
        }
        with torch.no_grad():
            info = {
                "stats/approx_kl": (((ratio - 1) - log_ratio) * w).sum(),
                "stats/clipfrac": (((ratio - 1).abs() > self.clip) * w).sum(),
                "stats/entropy": ent.detach(),
            }
        if self.auxiliaries:
            aux_losses, aux_info = self.aux_losses(mb, embedding)
            losses |= aux_losses
            info |= aux_info
            if "reward_int" in mb.extras:
                info["stats/reward_int"] = (mb.extras["reward_int"] * w).sum()
        return losses, info

    def iteration_metrics(self) -> dict[str, float]:
        """The coefficients of ``L_RL`` and of the auxiliaries in force this iteration."""
        cfg = self.cfg
        coefs = {
            "a_RL": cfg.rl_coef,
            "a_act": cfg.pg_coef,
            "a_crt": cfg.vf_coef,
            "a_e": cfg.ext_vf_coef,
            "a_H": self.ent_coef,
        }
        if any(a.intrinsic() is not None for a in self.auxiliaries.values()):
            coefs["a_i"] = cfg.int_vf_coef
        return {f"coef/{k}": float(v) for k, v in coefs.items()} | super().iteration_metrics()

    def after_update(self, mb: Batch, info: dict[str, torch.Tensor]) -> None:
        """Target-KL early stop: end this iteration's epochs once KL is too large."""
        if self.cfg.target_kl is not None and info["stats/approx_kl"].item() > self.cfg.target_kl:
            self.stop_updates = True

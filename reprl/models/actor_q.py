"""Actor and Q-critics for continuous control (SAC, TD3, DDPG): policy ``actor_q``.

Features ``(N, T, D)`` from the backbone and neck feed two parts:

- the **actor**: an MLP, then either a tanh-squashed diagonal Gaussian (``actor: gaussian``,
  SAC; Haarnoja et al. 2018, appendix C) or a deterministic tanh output
  (``actor: deterministic``, DDPG/TD3; Lillicrap et al. 2016, Fujimoto et al. 2018);
- ``num_critics`` **Q-networks** ``Q_j(features, action)`` (2 for SAC and TD3's clipped
  double-Q, 1 for DDPG), run together as one batched matmul per layer
  (:class:`reprl.models.layers.StackedMLP`): the critics share their input, so two critics
  cost about one.

Actions are *normalised* inside the policy: the actor outputs ``a`` in ``[-1, 1]`` and the
critics take normalised actions, as SB3 does; :meth:`ActorQPolicy.to_env` /
:meth:`ActorQPolicy.from_env` map to and from the env's bounds (agents store env-scale
actions in the replay buffer, what the env was given). Bounded action spaces only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from reprl.errors import ConfigError, choices_hint
from reprl.models.kernels import stacked_linear
from reprl.models.layers import MLP, StackedMLP, check_activation, tanh
from reprl.registry import POLICIES
from reprl.types import EnvSpec

Info = dict[str, torch.Tensor]
ACTORS = ("gaussian", "deterministic")
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


@dataclass(slots=True)
class ActorQOutput:
    """The actor's raw output for features ``(N, T, D)`` (critics are called separately).

    ``dist`` and ``value`` are None: agents sample through :meth:`ActorQPolicy.sample`, which
    also returns the squashed log-probability.
    """

    mean: torch.Tensor
    """Pre-tanh mean ``(N, T, A)`` (deterministic actor: pre-tanh action)."""
    log_std: torch.Tensor | None = None
    """Clamped log standard deviation ``(N, T, A)`` (gaussian actor only)."""
    dist: None = None
    """Always None."""
    value: None = None
    """Always None (the critics need an action: :meth:`ActorQPolicy.q`)."""


@dataclass
class ActorQConfig:
    """An actor MLP and ``num_critics`` Q MLPs on the shared features."""

    actor: str = "gaussian"
    """gaussian (tanh-squashed, SAC) or deterministic (tanh, TD3/DDPG)."""
    actor_hidden: list[int] = field(default_factory=lambda: [256, 256])
    """Hidden sizes of the actor MLP (SB3/CleanRL SAC and TD3: [256, 256])."""
    critic_hidden: list[int] = field(default_factory=lambda: [256, 256])
    """Hidden sizes of each Q MLP (input: features and the normalised action)."""
    num_critics: int = 2
    """Number of Q-networks (SAC/TD3: 2, the minimum is used for targets; DDPG: 1)."""
    activation: str = "relu"
    """Activation of the hidden layers: tanh, relu, elu, gelu or silu."""
    log_std_min: float = -20.0
    """Lower clamp of the Gaussian log std (SB3: -20)."""
    log_std_max: float = 2.0
    """Upper clamp of the Gaussian log std (SB3: 2)."""

    def validate(self, path: str) -> None:
        """Reject bad sizes and choices at load time."""
        check_activation(self.activation, f"{path}.activation")
        if self.actor not in ACTORS:
            raise ConfigError(
                f"{path}.actor: unknown '{self.actor}'; {choices_hint(self.actor, ACTORS)}"
            )
        if self.num_critics < 1:
            raise ConfigError(f"{path}.num_critics: must be >= 1, got {self.num_critics}")
        for name in ("actor_hidden", "critic_hidden"):
            if any(h <= 0 for h in getattr(self, name)):
                raise ConfigError(f"{path}.{name}: sizes must be positive")
        if not self.log_std_min < self.log_std_max:
            raise ConfigError(f"{path}.log_std_min: must be below log_std_max")


class StackedCritics(nn.Module):
    """``k`` Q MLPs ``(features, action) -> Q`` with PyTorch's default ``Linear`` init, run
    as one batched matmul per layer."""

    def __init__(self, in_dim: int, hidden: list[int], activation: str, k: int) -> None:
        super().__init__()
        self.k = k
        mlps = [MLP(in_dim, hidden, activation) for _ in range(k)]
        self.hidden = StackedMLP(mlps) if hidden else None
        outs = [nn.Linear(mlps[0].out_dim, 1) for _ in range(k)]
        with torch.no_grad():
            self.out_weight = nn.Parameter(torch.stack([o.weight.T for o in outs]).contiguous())
            self.out_bias = nn.Parameter(torch.stack([o.bias for o in outs]).unsqueeze(1))

    def forward(self, x: torch.Tensor, detach_params: bool = False) -> torch.Tensor:
        """``(B, in_dim) -> (k, B)``. ``detach_params``: the critics as constants (gradients
        flow to ``x`` only), for actor losses summed with the critic loss."""
        if self.hidden is not None:
            out = self.hidden.forward_head(x, self.out_weight, self.out_bias, detach_params)
        elif detach_params:
            h = x.expand(self.k, *x.shape)
            out = stacked_linear(self.out_bias.detach(), h, self.out_weight.detach())
        else:
            out = stacked_linear(self.out_bias, x.expand(self.k, *x.shape), self.out_weight)
        return out[..., 0]


def squashed_gaussian(
    mean: torch.Tensor, log_std: torch.Tensor, eps: torch.Tensor, with_log_prob: bool = True
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """``(tanh(u), log pi(tanh(u)) or None, std)`` for ``u = mean + std * eps``: the sample
    and log-probability of :meth:`ActorQPolicy.sample` (see there) for given noise ``eps``
    (also used by SAC's hand-written step, :mod:`reprl.agents.fused_sac`)."""
    std = log_std.exp()
    u = mean + std * eps
    action = tanh(u)
    if not with_log_prob:
        return action, None, std
    log_prob = (-0.5 * eps.square() - log_std - _HALF_LOG_2PI).sum(-1)
    log_prob = log_prob - (2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))).sum(-1)
    return action, log_prob, std


@POLICIES.register("actor_q", ActorQConfig)
class ActorQPolicy(nn.Module):
    """Continuous actor (Gaussian or deterministic, tanh-bounded) and stacked Q-critics."""

    def __init__(self, cfg: ActorQConfig, in_dim: int, spec: EnvSpec) -> None:
        super().__init__()
        cfg.validate("model.policy")
        if spec.discrete:
            raise ConfigError(
                f"model.policy: 'actor_q' needs continuous actions; env {spec.env_id!r} is "
                "discrete (use q or actor_critic)"
            )
        low, high = spec.action_low, spec.action_high
        if low is None or high is None or not (np.isfinite(low).all() and np.isfinite(high).all()):
            raise ConfigError(
                f"model.policy: 'actor_q' squashes actions into the env's bounds; env "
                f"{spec.env_id!r} has unbounded actions"
            )
        self.cfg, self.in_dim = cfg, in_dim
        self.action_dim = int(np.prod(spec.action_shape))
        self.gaussian = cfg.actor == "gaussian"
        self.actor_mlp = MLP(in_dim, cfg.actor_hidden, cfg.activation)
        out = 2 * self.action_dim if self.gaussian else self.action_dim
        self.actor_out = nn.Linear(self.actor_mlp.out_dim, out)
        self.critics = StackedCritics(
            in_dim + self.action_dim, cfg.critic_hidden, cfg.activation, cfg.num_critics
        )
        low_t = torch.as_tensor(low, dtype=torch.float32).reshape(-1)
        high_t = torch.as_tensor(high, dtype=torch.float32).reshape(-1)
        # Buffers move with .to(device); not saved (they come from the env spec).
        self.register_buffer("action_scale", (high_t - low_t) / 2.0, persistent=False)
        self.register_buffer("action_bias", (high_t + low_t) / 2.0, persistent=False)

    # ------------------------------------------------------------------ actor
    def forward(self, features: torch.Tensor) -> tuple[ActorQOutput, Info]:
        """``(N, T, D) -> (ActorQOutput(mean, log_std), {})``."""
        if features.dim() != 3 or features.shape[2] != self.in_dim:
            raise ValueError(
                f"policy features must be shaped (N, T, {self.in_dim}), got {tuple(features.shape)}"
            )
        return self.actor(features), {}

    def actor(self, features: torch.Tensor) -> ActorQOutput:
        """The actor's raw output for features of any leading shape ``(..., D)``."""
        out = self.actor_mlp.forward_head(features, self.actor_out.weight, self.actor_out.bias)
        out = out.float()
        if not self.gaussian:
            return ActorQOutput(mean=out)
        mean, log_std = out.chunk(2, dim=-1)
        log_std = log_std.clamp(self.cfg.log_std_min, self.cfg.log_std_max)
        return ActorQOutput(mean=mean, log_std=log_std)

    def sample(
        self, features: torch.Tensor, deterministic: bool = False, with_log_prob: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Normalised actions ``(..., A)`` in ``[-1, 1]`` and (Gaussian, sampled) their
        log-probability ``(...)`` under the tanh-squashed Gaussian.

        ``log pi(a) = log N(u; mean, std) - sum_i log(1 - tanh(u_i)^2)`` (Haarnoja et al.
        2018, appendix C, eq. 21) with ``log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u))``,
        which stays finite where ``tanh(u)`` rounds to 1. Deterministic (or deterministic
        actor): ``tanh(mean)`` and no log-probability.
        """
        out = self.actor(features)
        if deterministic or out.log_std is None:
            return tanh(out.mean), None
        action, log_prob, _ = squashed_gaussian(
            out.mean, out.log_std, torch.randn_like(out.mean), with_log_prob
        )
        return action, log_prob

    # ------------------------------------------------------------------ critics
    def q(
        self, features: torch.Tensor, action: torch.Tensor, detach_params: bool = False
    ) -> torch.Tensor:
        """Q-values ``(k, ...)`` of normalised ``action`` ``(..., A)`` for ``features``
        ``(..., D)``; ``detach_params`` treats the critics as constants."""
        lead = features.shape[:-1]
        x = torch.cat([features, action.to(features.dtype)], dim=-1).reshape(
            -1, self.in_dim + self.action_dim
        )
        return self.critics(x, detach_params).reshape(self.critics.k, *lead)

    # ------------------------------------------------------------------ scaling
    def to_env(self, action: torch.Tensor) -> torch.Tensor:
        """Normalised ``[-1, 1]`` actions -> the env's bounds."""
        return self.action_bias + self.action_scale * action

    def from_env(self, action: torch.Tensor) -> torch.Tensor:
        """Env-scale actions -> normalised ``[-1, 1]``."""
        return (action - self.action_bias) / self.action_scale

    def actor_parameters(self) -> list[nn.Parameter]:
        """The actor's parameters (its own optimizer in SAC/TD3)."""
        return [*self.actor_mlp.parameters(), *self.actor_out.parameters()]

    def critic_parameters(self) -> list[nn.Parameter]:
        """The critics' parameters."""
        return list(self.critics.parameters())

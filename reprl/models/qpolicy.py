"""Q-value policy for value-based agents (DQN and its Rainbow switches).

Features ``(N, T, D)`` -> action values ``q (N, T, A)`` and, with ``num_atoms > 1``, the logits
``(N, T, A, K)`` of a categorical return distribution over ``K`` atoms (C51). Discrete actions
only. Noisy nets (Fortunato et al. 2018) are not implemented yet: exploration is the agent's
epsilon-greedy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from reprl.errors import ConfigError
from reprl.models.layers import MLP, check_activation
from reprl.registry import POLICIES
from reprl.types import EnvSpec

Info = dict[str, torch.Tensor]


@dataclass(slots=True)
class QOutput:
    """What the Q policy returns for features ``(N, T, D)``.

    ``dist`` and ``value`` are ``None``: a greedy argmax is not a distribution to sample from
    (exploration is the agent's job), and a Q network has no separate state-value output.
    """

    q: torch.Tensor
    """Action values ``(N, T, A)`` (C51: the expectation of the return distribution)."""
    logits: torch.Tensor | None = None
    """C51 logits ``(N, T, A, K)`` over the support atoms (None when ``num_atoms == 1``)."""
    dist: None = None
    """Always None (no action distribution)."""
    value: None = None
    """Always None (no state-value head)."""


@dataclass
class QConfig:
    """A Q head on the features: optional MLP, then one output per action (and atom)."""

    hidden: list[int] = field(default_factory=list)
    """Hidden layer sizes of the head's MLP ([] puts the output layer on the features)."""
    activation: str = "relu"
    """Activation of the hidden layers: tanh, relu, elu, gelu or silu."""
    dueling: bool = False
    """Dueling architecture (Wang et al. 2016): ``Q = V + A - mean_a A`` from two streams,
    each with its own ``hidden`` MLP."""
    num_atoms: int = 1
    """1: plain Q-values. > 1: C51 categorical return distribution over this many atoms
    (Bellemare et al. 2017; 51 in the paper)."""
    v_min: float = -10.0
    """Lowest atom of the C51 support."""
    v_max: float = 10.0
    """Highest atom of the C51 support."""

    def validate(self, path: str) -> None:
        """Reject bad sizes, atoms or support at load time."""
        check_activation(self.activation, f"{path}.activation")
        if any(h <= 0 for h in self.hidden):
            raise ConfigError(f"{path}.hidden: sizes must be positive, got {self.hidden}")
        if self.num_atoms < 1:
            raise ConfigError(f"{path}.num_atoms: must be >= 1, got {self.num_atoms}")
        if self.num_atoms > 1 and not self.v_min < self.v_max:
            raise ConfigError(f"{path}.v_min/v_max: need v_min < v_max")


@POLICIES.register("q", QConfig)
class QPolicy(nn.Module):
    """Q-values for every discrete action, optionally dueling and/or distributional (C51)."""

    def __init__(self, cfg: QConfig, in_dim: int, spec: EnvSpec) -> None:
        super().__init__()
        if not spec.discrete:
            raise ConfigError(
                f"model.policy: 'q' needs discrete actions; env {spec.env_id!r} is continuous "
                "(use actor_critic)"
            )
        cfg.validate("model.policy")
        self.in_dim, self.num_actions = in_dim, spec.num_actions
        self.num_atoms, self.dueling = cfg.num_atoms, cfg.dueling
        k = cfg.num_atoms
        self.mlp = MLP(in_dim, cfg.hidden, cfg.activation)
        self.q_out = nn.Linear(self.mlp.out_dim, self.num_actions * k)
        self.value_mlp: MLP | None = None
        self.value_out: nn.Linear | None = None
        if cfg.dueling:
            self.value_mlp = MLP(in_dim, cfg.hidden, cfg.activation)
            self.value_out = nn.Linear(self.value_mlp.out_dim, k)
        # A buffer (moves with .to(device)); not saved: it comes from the config.
        # Same support as reprl.agents.distributional.make_support (not imported: models must
        # not import agents, which import models).
        support = torch.linspace(cfg.v_min, cfg.v_max, k) if k > 1 else None
        self.register_buffer("support", support, persistent=False)

    def forward(self, features: torch.Tensor) -> tuple[QOutput, Info]:
        """``(N, T, D) -> (QOutput(q (N, T, A), logits (N, T, A, K) | None), {})``."""
        if features.dim() != 3 or features.shape[2] != self.in_dim:
            raise ValueError(
                f"policy features must be shaped (N, T, {self.in_dim}), got {tuple(features.shape)}"
            )
        n, t = features.shape[:2]
        x = features.reshape(-1, self.in_dim)
        h = self.mlp(x)
        out = F.linear(h, self.q_out.weight, self.q_out.bias).view(n, t, self.num_actions, -1)
        if self.value_mlp is not None and self.value_out is not None:
            v = self.value_out(self.value_mlp(x)).view(n, t, 1, -1)
            # Wang et al. 2016, eq. 9: subtract the mean advantage for identifiability.
            out = v + out - out.mean(dim=2, keepdim=True)
        out = out.float()
        if self.num_atoms == 1:
            return QOutput(q=out[..., 0]), {}
        probs = out.softmax(dim=-1)
        q = (probs * self.support).sum(-1)
        return QOutput(q=q, logits=out), {}

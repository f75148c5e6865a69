"""Q-value policy for value-based agents (DQN and its Rainbow switches).

Features ``(N, T, D)`` -> action values ``q (N, T, A)`` and, with ``num_atoms > 1``, the logits
``(N, T, A, K)`` of a categorical return distribution over ``K`` atoms (C51). Discrete actions
only. With ``noisy`` the head's hidden and output linear layers are :class:`NoisyLinear`
(Fortunato et al. 2018, factorised Gaussian noise), and exploration comes from the noise
instead of the agent's epsilon-greedy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from reprl.errors import ConfigError
from reprl.models import kernels
from reprl.models.layers import ACTIVATION_FNS, MLP, check_activation
from reprl.registry import POLICIES
from reprl.types import EnvSpec

Info = dict[str, torch.Tensor]


def _scaled_noise(size: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Fortunato et al. 2018, section 3(b): ``f(x) = sign(x) sqrt(|x|)`` of standard normals."""
    x = torch.randn(size, device=device, dtype=dtype)
    return x.sign() * x.abs().sqrt()


class NoisyLinear(nn.Module):
    """A linear layer with factorised Gaussian parameter noise (Fortunato et al. 2018).

    ``y = (mu_w + sigma_w * eps_w) x + mu_b + sigma_b * eps_b`` with ``eps_w = f(eps_out)
    f(eps_in)^T`` and ``eps_b = f(eps_out)`` (factorised noise, eq. 10-11). Initialisation as
    in section 3.2 for factorised noise: ``mu ~ U(-1/sqrt(p), 1/sqrt(p))`` and
    ``sigma = sigma0 / sqrt(p)`` with ``p = in_features`` (sigma0 = 0.5 in the paper).

    The noise is held in two buffers and changes only on :meth:`reset_noise`. It is used when
    ``noise_enabled`` and the module is training (or ``noise_in_eval`` is set, as DQN does for
    its target network, which is kept in eval mode); otherwise the mean weights are used.
    It is deliberately not an ``nn.Linear``, so :func:`reprl.models.layers.orthogonal_init_`
    leaves its parameters alone.
    """

    def __init__(self, in_features: int, out_features: int, sigma0: float = 0.5) -> None:
        super().__init__()
        self.in_features, self.out_features, self.sigma0 = in_features, out_features, sigma0
        self.weight_mu = nn.Parameter(torch.empty(out_features, in_features))
        self.weight_sigma = nn.Parameter(torch.empty(out_features, in_features))
        self.bias_mu = nn.Parameter(torch.empty(out_features))
        self.bias_sigma = nn.Parameter(torch.empty(out_features))
        # Not saved: fresh noise is drawn after loading anyway.
        self.register_buffer("eps_in", torch.zeros(in_features), persistent=False)
        self.register_buffer("eps_out", torch.zeros(out_features), persistent=False)
        self.noise_enabled = True
        self.noise_in_eval = False
        self.reset_parameters()
        self.reset_noise()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The paper's factorised-noise initialisation (section 3.2)."""
        bound = 1.0 / math.sqrt(self.in_features)
        self.weight_mu.uniform_(-bound, bound)
        self.bias_mu.uniform_(-bound, bound)
        self.weight_sigma.fill_(self.sigma0 / math.sqrt(self.in_features))
        self.bias_sigma.fill_(self.sigma0 / math.sqrt(self.in_features))

    @torch.no_grad()
    def reset_noise(self) -> None:
        """Draw fresh factorised noise (in place: also valid under ``torch.inference_mode``)."""
        device, dtype = self.weight_mu.device, self.weight_mu.dtype
        self.eps_in.copy_(_scaled_noise(self.in_features, device, dtype))
        self.eps_out.copy_(_scaled_noise(self.out_features, device, dtype))

    @property
    def noisy(self) -> bool:
        """Whether :meth:`forward` currently adds the noise."""
        return self.noise_enabled and (self.training or self.noise_in_eval)

    def effective_weight_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The weight and bias :meth:`forward` uses now (noisy or mean)."""
        if not self.noisy:
            return self.weight_mu, self.bias_mu
        weight = self.weight_mu + self.weight_sigma * torch.outer(self.eps_out, self.eps_in)
        return weight, self.bias_mu + self.bias_sigma * self.eps_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., in_features) -> (..., out_features)``."""
        weight, bias = self.effective_weight_bias()
        return kernels.linear(x, weight, bias)

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, sigma0={self.sigma0}"


class NoisyMLP(nn.Module):
    """:class:`reprl.models.layers.MLP` with :class:`NoisyLinear` layers (no layer norm)."""

    def __init__(
        self, in_dim: int, hidden_sizes: list[int], activation: str, sigma0: float
    ) -> None:
        super().__init__()
        check_activation(activation)
        sizes = [in_dim, *hidden_sizes]
        self.layers = nn.ModuleList(
            NoisyLinear(a, b, sigma0) for a, b in zip(sizes[:-1], sizes[1:], strict=True)
        )
        self.act = ACTIVATION_FNS[activation]
        self.out_dim = sizes[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., in_dim) -> (..., out_dim)``."""
        for layer in self.layers:
            x = self.act(layer(x))
        return x


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
    noisy: bool = False
    """Noisy nets (Fortunato et al. 2018): the head's hidden and output linear layers (both
    dueling streams) are :class:`NoisyLinear` with factorised Gaussian noise; DQN then acts
    greedily on the noisy network (its epsilon is ignored)."""
    noisy_std: float = 0.5
    """sigma0 of the factorised noise initialisation (paper: 0.5; Data-Efficient Rainbow:
    0.1)."""

    def validate(self, path: str) -> None:
        """Reject bad sizes, atoms or support at load time."""
        check_activation(self.activation, f"{path}.activation")
        if any(h <= 0 for h in self.hidden):
            raise ConfigError(f"{path}.hidden: sizes must be positive, got {self.hidden}")
        if self.num_atoms < 1:
            raise ConfigError(f"{path}.num_atoms: must be >= 1, got {self.num_atoms}")
        if self.num_atoms > 1 and not self.v_min < self.v_max:
            raise ConfigError(f"{path}.v_min/v_max: need v_min < v_max")
        if self.noisy_std < 0:
            raise ConfigError(f"{path}.noisy_std: must be >= 0, got {self.noisy_std}")


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
        self.noisy = cfg.noisy
        k = cfg.num_atoms

        def mlp() -> nn.Module:
            if cfg.noisy:
                return NoisyMLP(in_dim, cfg.hidden, cfg.activation, cfg.noisy_std)
            return MLP(in_dim, cfg.hidden, cfg.activation)

        def linear(a: int, b: int) -> nn.Module:
            return NoisyLinear(a, b, cfg.noisy_std) if cfg.noisy else nn.Linear(a, b)

        self.mlp = mlp()
        self.q_out = linear(self.mlp.out_dim, self.num_actions * k)
        self.value_mlp: nn.Module | None = None
        self.value_out: nn.Module | None = None
        if cfg.dueling:
            self.value_mlp = mlp()
            self.value_out = linear(self.value_mlp.out_dim, k)
        # A buffer (moves with .to(device)); not saved: it comes from the config.
        # Same support as reprl.agents.distributional.make_support (not imported: models must
        # not import agents, which import models).
        support = torch.linspace(cfg.v_min, cfg.v_max, k) if k > 1 else None
        self.register_buffer("support", support, persistent=False)

    def noisy_layers(self) -> list[NoisyLinear]:
        """Every :class:`NoisyLinear` of the head (empty unless ``noisy``)."""
        return [m for m in self.modules() if isinstance(m, NoisyLinear)]

    def reset_noise(self) -> None:
        """Resample the noise of every :class:`NoisyLinear` (no-op without noisy layers)."""
        for layer in self.noisy_layers():
            layer.reset_noise()

    def set_noise(self, enabled: bool | None = None, in_eval: bool | None = None) -> None:
        """Switch the noise of every :class:`NoisyLinear` on/off, and whether it also applies
        in eval mode (``None`` leaves a setting as it is)."""
        for layer in self.noisy_layers():
            if enabled is not None:
                layer.noise_enabled = enabled
            if in_eval is not None:
                layer.noise_in_eval = in_eval

    def plain_layers(self) -> tuple[list[torch.Tensor], list[torch.Tensor]] | None:
        """``(weights, biases)`` of every linear layer, input to output, when the head is a
        plain ReLU MLP and its Q layer (no LayerNorm, dueling, noise or atoms), as DQN's fused
        TD step (:mod:`reprl.agents.fused_td`) takes it; None for any other head."""
        mlp = self.mlp
        if self.noisy or self.dueling or self.num_atoms > 1 or not isinstance(mlp, MLP):
            return None
        if mlp.layers and not mlp.fusable:  # another activation, or LayerNorm
            return None
        layers = [*mlp.layers, self.q_out]
        return [la.weight for la in layers], [la.bias for la in layers]

    def _q_out(self, x: torch.Tensor) -> torch.Tensor:
        """The Q head's output layer on features ``x (B, D)``: ``(B, A * K)``."""
        if isinstance(self.q_out, NoisyLinear):
            return self.q_out(self.mlp(x))
        # one autograd node for the MLP and the head (kernels.mlp)
        return self.mlp.forward_head(x, self.q_out.weight, self.q_out.bias)

    def q_values(self, features: torch.Tensor) -> torch.Tensor:
        """Action values ``q (N, T, A)`` float32 of features ``(N, T, D)``: ``forward``'s
        ``q`` without its checks and output record (acting needs only these; ~6 us less per
        call on one observation). Dueling and C51 heads run :meth:`forward`."""
        if self.num_atoms > 1 or self.dueling:
            return self.forward(features)[0].q
        n, t = features.shape[:2]
        out = self._q_out(features.reshape(-1, self.in_dim))
        return out.view(n, t, self.num_actions).float()

    def forward(self, features: torch.Tensor) -> tuple[QOutput, Info]:
        """``(N, T, D) -> (QOutput(q (N, T, A), logits (N, T, A, K) | None), {})``."""
        if features.dim() != 3 or features.shape[2] != self.in_dim:
            raise ValueError(
                f"policy features must be shaped (N, T, {self.in_dim}), got {tuple(features.shape)}"
            )
        n, t = features.shape[:2]
        if self.num_atoms == 1 and not self.dueling:  # plain Q: one view, no select
            return QOutput(q=self.q_values(features)), {}
        x = features.reshape(-1, self.in_dim)
        out = self._q_out(x).view(n, t, self.num_actions, -1)
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

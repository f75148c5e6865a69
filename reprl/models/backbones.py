"""Backbones: observations ``(N, T, *obs_shape)`` -> features ``(N, T, D)``.

A backbone is built as ``cls(cfg, spec)`` from its config dataclass and the env's
:class:`~reprl.types.EnvSpec`. ``uint8`` observations (images) stay ``uint8`` until here and
are converted to float in ``[0, 1]`` inside ``forward``. Image backbones fold T into N.

Every backbone config inherits :class:`~reprl.models.pretrained.BackboneInit` (``init_from``,
``freeze``), which :func:`~reprl.models.build_model` applies after initialisation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from reprl.errors import ConfigError
from reprl.models.kernels import Linear
from reprl.models.layers import MLP as MLPNet
from reprl.models.layers import check_activation
from reprl.models.pretrained import BackboneInit
from reprl.registry import BACKBONES
from reprl.types import EnvSpec

Info = dict[str, torch.Tensor]


class Backbone(nn.Module):
    """Base class: input checks and uint8 scaling shared by every backbone."""

    obs_ndim: int | None = None
    """Number of observation dims this backbone needs (3 for ``(C, H, W)``); None: any."""

    def __init__(self, spec: EnvSpec) -> None:
        super().__init__()
        self.obs_shape = tuple(spec.obs_shape)
        if self.obs_ndim is not None and len(self.obs_shape) != self.obs_ndim:
            raise ConfigError(
                f"backbone {type(self).__name__} needs {self.obs_ndim}-D observations "
                f"(C, H, W), but env {spec.env_id!r} has obs_shape {self.obs_shape}"
            )

    def _check(self, obs: torch.Tensor) -> None:
        if obs.shape[2:] != self.obs_shape:
            raise ValueError(
                f"{type(self).__name__}: obs must be shaped (N, T, *{self.obs_shape}), "
                f"got {tuple(obs.shape)}"
            )


def _to_float(x: torch.Tensor, memory_format: torch.memory_format) -> torch.Tensor:
    """uint8 -> float32 in [0, 1] (divided by 255), in ``memory_format``.

    The layout change happens on the 1-byte uint8 tensor (``float()`` keeps it): measured
    4 ms against 12 ms for a fused ``to(float32, memory_format=...)`` on 256 4x84x84 frames.
    """
    x = x.contiguous(memory_format=memory_format)
    if x.dtype == torch.uint8:
        # Under autocast the convs cast their input to the autocast dtype anyway: convert
        # straight to it and skip a float32 copy of the frames (same numbers reach the conv).
        dtype = torch.float32
        if torch.is_autocast_enabled(x.device.type):
            dtype = torch.get_autocast_dtype(x.device.type)
        x = x.to(dtype).div_(255.0)
    return x


# ---------------------------------------------------------------------------------------------
# MLP
# ---------------------------------------------------------------------------------------------
@dataclass
class MLPConfig(BackboneInit):
    """Multi-layer perceptron over flattened observations."""

    hidden_sizes: list[int] = field(default_factory=lambda: [64, 64])
    """Hidden layer sizes; ``[]`` makes the backbone a flatten (features = raw observation),
    as SB3-style policies with separate actor and critic networks use."""
    activation: str = "tanh"
    """Activation after each hidden layer: tanh, relu, elu, gelu or silu."""
    layer_norm: bool = False
    """Apply LayerNorm after each hidden linear layer (before the activation)."""

    def validate(self, path: str) -> None:
        """Called by the config loader after construction; ``path`` is e.g. model.backbone."""
        check_activation(self.activation, f"{path}.activation")
        if any(h <= 0 for h in self.hidden_sizes):
            raise ConfigError(f"{path}.hidden_sizes: must be positive, got {self.hidden_sizes}")


@BACKBONES.register("mlp", MLPConfig)
class MLP(Backbone):
    """Flatten the observation dims, then an MLP (identity when ``hidden_sizes`` is empty)."""

    def __init__(self, cfg: MLPConfig, spec: EnvSpec) -> None:
        super().__init__(spec)
        in_dim = math.prod(self.obs_shape)
        self.net = MLPNet(in_dim, cfg.hidden_sizes, cfg.activation, cfg.layer_norm)
        self.out_dim = self.net.out_dim
        self.flatten_only = not cfg.hidden_sizes
        """No hidden layers: the features are the flattened observation (no MLP call)."""

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, Info]:
        """``(N, T, *obs_shape) -> ((N, T, D), {})``."""
        self._check(obs)
        if self.flatten_only:
            x = obs if obs.dim() == 3 else obs.reshape(obs.shape[0], obs.shape[1], -1)
            return (x.float().div_(255.0) if x.dtype == torch.uint8 else x), {}
        n, t = obs.shape[:2]
        x = obs.reshape(n * t, -1)  # 2-D matmuls skip a reshape per layer
        if x.dtype == torch.uint8:
            x = x.float().div_(255.0)
        return self.net(x).view(n, t, -1), {}


# ---------------------------------------------------------------------------------------------
# Nature CNN (Mnih et al. 2015)
# ---------------------------------------------------------------------------------------------
LAST_LAYERS = ("linear", "conv")


@dataclass
class NatureCNNConfig(BackboneInit):
    """The DQN Nature network (Mnih et al. 2015): 3 convs and a linear layer, ReLU.

    Variants for embedding studies: an extra hidden layer (``hidden_dim``; CleanRL's
    ``ppo_rnd_envpool.py`` agent uses 256 then 448) and the last layer written as a conv
    (``last_layer: conv``)."""

    features_dim: int = 512
    """Size of the last layer's output (the feature dim D, the embedding the policy and
    auxiliaries see), e.g. 16, 448, 512, 2048."""
    last_layer: str = "linear"
    """linear: ``Linear(flat, D)`` on the flattened conv features (the paper's). conv: a
    ``Conv2d`` with D output channels whose kernel covers the whole remaining feature map (7x7
    for 84x84 frames), so its output is 1x1 and flattens to D. It is the conv form of a fully
    connected layer: the same function class and the same parameter count (weight
    ``(D, 64, 7, 7)`` is the linear ``(D, 64*7*7)`` reshaped in flatten order)."""
    hidden_dim: int | None = None
    """Optional hidden layer of this size (+ ReLU) before the last layer; null: none (the
    paper's). With last_layer conv it is the whole-map conv and the last layer a 1x1 conv."""
    channels_last: bool = False
    """Run the convolutions in ``torch.channels_last`` memory format (faster on CPUs with
    oneDNN and on tensor-core GPUs; same results within float tolerance)."""

    def validate(self, path: str) -> None:
        """Called by the config loader after construction; ``path`` is e.g. model.backbone."""
        if self.last_layer not in LAST_LAYERS:
            raise ConfigError(
                f"{path}.last_layer: unknown '{self.last_layer}'; valid: {', '.join(LAST_LAYERS)}"
            )
        if self.features_dim <= 0:
            raise ConfigError(f"{path}.features_dim: must be positive, got {self.features_dim}")
        if self.hidden_dim is not None and self.hidden_dim <= 0:
            raise ConfigError(f"{path}.hidden_dim: must be positive or null, got {self.hidden_dim}")


class _ConvBackbone(Backbone):
    """Shared ``forward`` of image backbones: fold T into N, convs, flatten, head."""

    obs_ndim = 3
    convs: nn.Module
    """Convolutional stack, ``(B, C, H, W) -> (B, C', H', W')``."""
    head: nn.Module
    """Flattened conv features -> ``(B, D)`` (``(B, C', H', W') -> (B, D, 1, 1)`` when
    :attr:`head_on_map`)."""
    head_on_map: bool = False
    """The head takes the unflattened conv feature map (a conv head)."""

    def __init__(self, spec: EnvSpec, channels_last: bool) -> None:
        super().__init__(spec)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def _conv_out_dim(self) -> int:
        with torch.no_grad():
            return self.convs(torch.zeros(1, *self.obs_shape)).numel()

    def _finish(self) -> None:
        """Convert conv weights (every 4-D tensor: ``Module.to`` leaves linear weights as they
        are) to the chosen memory format, after the layers are built."""
        self.to(memory_format=self.memory_format)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, Info]:
        """``(N, T, C, H, W) -> ((N, T, D), {})``; T is folded into N for the convs."""
        self._check(obs)
        n, t = obs.shape[:2]
        x = _to_float(obs.reshape(n * t, *self.obs_shape), self.memory_format)
        x = self.convs(x)
        x = self.head(x).flatten(1) if self.head_on_map else self.head(x.flatten(1))
        return x.view(n, t, -1), {}


@BACKBONES.register("nature_cnn", NatureCNNConfig)
class NatureCNN(_ConvBackbone):
    """Conv 32 8x8 s4, conv 64 4x4 s2, conv 64 3x3 s1, [hidden], last layer ``features_dim``;
    ReLU after each. Parameter names: ``convs.{0,2,4}``, then ``head.0`` (and ``head.2`` with
    a hidden layer), linear or conv as ``last_layer`` says."""

    def __init__(self, cfg: NatureCNNConfig, spec: EnvSpec) -> None:
        cfg.validate("model.backbone")  # also when built from an unvalidated config
        super().__init__(spec, cfg.channels_last)
        c = self.obs_shape[0]
        self.convs = nn.Sequential(
            nn.Conv2d(c, 32, 8, stride=4),
            nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2),
            nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1),
            nn.ReLU(),
        )
        with torch.no_grad():
            channels, height, width = self.convs(torch.zeros(1, *self.obs_shape)).shape[1:]
        sizes = [cfg.hidden_dim, cfg.features_dim] if cfg.hidden_dim else [cfg.features_dim]
        layers: list[nn.Module] = []
        if cfg.last_layer == "conv":
            kernel = (height, width)  # the first layer sees the whole map, the next are 1x1
            for size in sizes:
                layers += [nn.Conv2d(channels, size, kernel), nn.ReLU()]
                channels, kernel = size, (1, 1)
            self.head_on_map = True
        else:
            in_dim = channels * height * width
            for size in sizes:
                layers += [Linear(in_dim, size), nn.ReLU()]
                in_dim = size
        self.head = nn.Sequential(*layers)
        self.out_dim = cfg.features_dim
        self._finish()


# ---------------------------------------------------------------------------------------------
# Configurable conv stack (DrQ / SAC-AE encoder, Data-Efficient Rainbow encoder, ...)
# ---------------------------------------------------------------------------------------------
HEADS = ("relu", "layernorm_tanh", "none")


@dataclass
class ConvConfig(BackboneInit):
    """A plain conv stack (each conv followed by ReLU), flattened, then an optional linear
    head. Defaults: the pixel encoder of SAC-AE (Yarats et al. 2019) and DrQ (Kostrikov et
    al. 2020): four 3x3 convs of 32 channels, strides 2, 1, 1, 1, then linear to 50,
    LayerNorm and tanh. Data-Efficient Rainbow (van Hasselt et al. 2019): channels [32, 64],
    kernels [5, 5], strides [5, 5], features_dim null."""

    channels: list[int] = field(default_factory=lambda: [32, 32, 32, 32])
    """Output channels of each conv."""
    kernels: list[int] = field(default_factory=lambda: [3, 3, 3, 3])
    """Kernel size of each conv."""
    strides: list[int] = field(default_factory=lambda: [2, 1, 1, 1])
    """Stride of each conv."""
    features_dim: int | None = 50
    """Size of the linear head (the feature dim D); null: the flattened conv output."""
    head: str = "layernorm_tanh"
    """After the linear head: relu, layernorm_tanh (SAC-AE/DrQ) or none."""
    channels_last: bool = False
    """Run the convolutions in ``torch.channels_last`` memory format."""

    def validate(self, path: str) -> None:
        """Lists of one length, positive sizes, a known head."""
        n = len(self.channels)
        if n == 0 or len(self.kernels) != n or len(self.strides) != n:
            raise ConfigError(
                f"{path}: channels, kernels and strides need one (equal, non-zero) length, got "
                f"{len(self.channels)}, {len(self.kernels)}, {len(self.strides)}"
            )
        if min(self.channels + self.kernels + self.strides) <= 0:
            raise ConfigError(f"{path}: channels, kernels and strides must be positive")
        if self.features_dim is not None and self.features_dim <= 0:
            raise ConfigError(f"{path}.features_dim: must be positive or null")
        if self.head not in HEADS:
            raise ConfigError(f"{path}.head: unknown '{self.head}'; valid: {', '.join(HEADS)}")


class _LayerNormTanh(nn.Module):
    """LayerNorm then tanh (SAC-AE's bounded encoder output)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.norm(x))


@BACKBONES.register("conv", ConvConfig)
class ConvNet(_ConvBackbone):
    """``channels``/``kernels``/``strides`` convs with ReLU, flatten, optional linear head."""

    def __init__(self, cfg: ConvConfig, spec: EnvSpec) -> None:
        super().__init__(spec, cfg.channels_last)
        layers: list[nn.Module] = []
        in_ch = self.obs_shape[0]
        for out_ch, kernel, stride in zip(cfg.channels, cfg.kernels, cfg.strides, strict=True):
            layers += [nn.Conv2d(in_ch, out_ch, kernel, stride=stride), nn.ReLU()]
            in_ch = out_ch
        self.convs = nn.Sequential(*layers)
        try:
            flat = self._conv_out_dim()
        except RuntimeError as exc:  # kernels larger than the remaining image
            raise ConfigError(
                f"model.backbone: the conv stack does not fit {self.obs_shape} images ({exc})"
            ) from None
        if cfg.features_dim is None:
            self.head = nn.Identity()
            self.out_dim = flat
        else:
            post: nn.Module = {
                "relu": nn.ReLU(),
                "layernorm_tanh": _LayerNormTanh(cfg.features_dim),
                "none": nn.Identity(),
            }[cfg.head]
            self.head = nn.Sequential(Linear(flat, cfg.features_dim), post)
            self.out_dim = cfg.features_dim
        self._finish()


# ---------------------------------------------------------------------------------------------
# IMPALA CNN (Espeholt et al. 2018)
# ---------------------------------------------------------------------------------------------
@dataclass
class ImpalaCNNConfig(BackboneInit):
    """The IMPALA residual network (Espeholt et al. 2018, figure 3), as in Procgen baselines."""

    channels: list[int] = field(default_factory=lambda: [16, 32, 32])
    """Output channels of each stack (conv 3x3 + max-pool 3x3 s2 + 2 residual blocks)."""
    features_dim: int = 256
    """Size of the final linear layer (the feature dim D)."""
    channels_last: bool = False
    """Run the convolutions in ``torch.channels_last`` memory format."""

    def validate(self, path: str) -> None:
        """Called by the config loader after construction; ``path`` is e.g. model.backbone."""
        if not self.channels or any(c <= 0 for c in self.channels):
            raise ConfigError(f"{path}.channels: must be non-empty and positive: {self.channels}")


class _ResidualBlock(nn.Module):
    """``x + conv(relu(conv(relu(x))))`` with 3x3 convs keeping the channel count."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv1(torch.relu(self.conv0(torch.relu(x))))


@BACKBONES.register("impala_cnn", ImpalaCNNConfig)
class ImpalaCNN(_ConvBackbone):
    """Stacks of conv + max-pool + 2 residual blocks, then ReLU, linear, ReLU."""

    def __init__(self, cfg: ImpalaCNNConfig, spec: EnvSpec) -> None:
        super().__init__(spec, cfg.channels_last)
        layers: list[nn.Module] = []
        in_ch = self.obs_shape[0]
        for out_ch in cfg.channels:
            layers += [
                nn.Conv2d(in_ch, out_ch, 3, padding=1),
                nn.MaxPool2d(3, stride=2, padding=1),
                _ResidualBlock(out_ch),
                _ResidualBlock(out_ch),
            ]
            in_ch = out_ch
        layers.append(nn.ReLU())
        self.convs = nn.Sequential(*layers)
        self.head = nn.Sequential(Linear(self._conv_out_dim(), cfg.features_dim), nn.ReLU())
        self.out_dim = cfg.features_dim
        self._finish()

    def orthogonal_init_overrides_(self) -> None:
        """Keep PyTorch's default init for the convs, as CleanRL's ``ppo_procgen.py``.

        Orthogonal gain sqrt(2) preserves the variance through each conv + ReLU, so every
        un-normalised residual block roughly doubles it (x + f(x)). Measured on random 4x84x84
        frames (std 0.29): feature std 10.9 with orthogonal convs, 0.14 with PyTorch's default
        (Kaiming-uniform, a=sqrt(5)), which shrinks each residual branch.
        """
        for module in self.convs.modules():
            if isinstance(module, nn.Conv2d):
                module.reset_parameters()

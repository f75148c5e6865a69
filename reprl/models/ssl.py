"""Self-supervised auxiliaries on a backbone's features: BYOL, Barlow Twins and their views.

The parts an SSL auxiliary adds to an agent (issue 4, section 3), each usable on its own:

- **Views**: two random augmentations of the same image observations, each DrQ's random shift
  (:func:`reprl.models.augment.random_shift`) followed by a random per-sample intensity
  scaling (:func:`intensity`); :func:`two_views`.
- **BYOL** (Grill et al. 2020, "Bootstrap Your Own Latent", section 3): an online network
  (encoder f, projector g, predictor q) predicts the projection that a slowly moving target
  network (an exponential moving average of f and g) gives the other view; the loss is the
  squared distance of the L2-normalised vectors, ``2 - 2 cos(q(g(f(v1))), sg(g'(f'(v2))))``,
  symmetrised over the views. :class:`BYOLHead` holds g and q, :class:`ProjectedEncoder`
  is f then g (what :func:`byol_target` wraps in a :class:`~reprl.optim.target.TargetNetwork`
  for the EMA copy), :func:`byol_loss` is the loss.
- **Barlow Twins** (Zbontar et al. 2021, "Barlow Twins: Self-Supervised Learning via
  Redundancy Reduction", section 2): both views go through the same encoder and projector;
  the loss pushes the cross-correlation matrix ``C`` of the two batch-normalised embeddings
  to the identity, ``sum_i (1 - C_ii)^2 + lambda sum_{i != j} C_ij^2``.
  :class:`BarlowTwinsHead` is the projector, :func:`barlow_twins_loss` the loss.

Shapes: features and embeddings are ``(..., D)`` (e.g. ``(N, T, D)`` from a backbone); every
leading index is one sample of the batch. Images are ``(..., C, H, W)``, uint8 or float.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from reprl.errors import ConfigError
from reprl.models.augment import random_shift
from reprl.optim.target import TargetConfig, TargetNetwork

Info = dict[str, torch.Tensor]


# ---------------------------------------------------------------------------------------------
# Views
# ---------------------------------------------------------------------------------------------
def intensity(
    obs: torch.Tensor, scale: float = 0.05, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Scale each image ``(..., C, H, W)`` by its own random factor ``1 + scale * clip(n, -2, 2)``
    with ``n ~ N(0, 1)``: the intensity augmentation that SPR (Schwarzer et al. 2021,
    "Data-Efficient Reinforcement Learning with Self-Predictive Representations") applies
    after random shifts on Atari.

    Every leading index (each ``(n, t)`` of ``(N, T, C, H, W)``) draws its own factor, shared by
    its channels and pixels. The noise is drawn on the generator's device (``obs``'s without
    one). uint8 images stay uint8: the scaled values are rounded and clamped to ``[0, 255]``
    (so brightening saturates, as it would in the float image clipped to the valid range).
    Float images keep their dtype. ``scale = 0`` returns ``obs`` itself.
    """
    if scale < 0:
        raise ValueError(f"scale must be >= 0, got {scale}")
    if scale == 0:
        return obs
    if obs.dim() < 3:
        raise ValueError(f"expected images (..., C, H, W), got shape {tuple(obs.shape)}")
    device = obs.device if generator is None else generator.device
    noise = torch.randn(obs.shape[:-3], generator=generator, device=device)
    factor = (1.0 + scale * noise.clamp_(-2.0, 2.0)).to(obs.device)[..., None, None, None]
    if obs.dtype == torch.uint8:
        return (obs * factor).round_().clamp_(0, 255).to(torch.uint8)
    return obs * factor.to(obs.dtype)


def two_views(
    obs: torch.Tensor,
    pad: int = 4,
    intensity_scale: float = 0.05,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Two independently augmented views of images ``(..., C, H, W)``: each is
    ``intensity(random_shift(obs, pad), intensity_scale)`` with its own draws.

    ``pad = 4`` is DrQ's shift for 84x84 frames; ``pad = 0`` and ``intensity_scale = 0`` make
    both views ``obs`` itself. Shapes and dtypes are kept (uint8 frames stay uint8 until the
    backbone). To run the backbone once, concatenate the views along the batch axis.
    """
    views = []
    for _ in range(2):
        view = random_shift(obs, pad, generator=generator)
        views.append(intensity(view, intensity_scale, generator=generator))
    return views[0], views[1]


@dataclass
class ViewsConfig:
    """The augmentations that make the two views of an SSL auxiliary."""

    pad: int = 4
    """Random shift: pad each side by this many pixels and crop back (DrQ: 4 for 84x84
    frames; 0: no shift)."""
    intensity_scale: float = 0.05
    """Random intensity: each image times ``1 + scale * clip(N(0, 1), -2, 2)`` (SPR: 0.05;
    0: no intensity change). Below 0.5, so the factor stays positive."""

    def validate(self, path: str) -> None:
        """A non-negative pad and a scale in [0, 0.5)."""
        if self.pad < 0:
            raise ConfigError(f"{path}.pad: must be >= 0, got {self.pad}")
        if not 0.0 <= self.intensity_scale < 0.5:
            raise ConfigError(
                f"{path}.intensity_scale: must be in [0, 0.5), got {self.intensity_scale}"
            )


# ---------------------------------------------------------------------------------------------
# Projector / predictor
# ---------------------------------------------------------------------------------------------
class Projector(nn.Module):
    """``Linear -> BatchNorm1d -> ReLU`` per hidden size, then a final ``Linear``.

    BYOL's projector g (Grill et al. 2020, section 3.3: one hidden layer of 4096, output 256)
    and Barlow Twins' projector (Zbontar et al. 2021, implementation details: two hidden
    layers and an output of 8192). ``(..., in_dim) -> (..., out_dim)``; the leading dims form
    the batch the normalisation averages over.

    The batch norm keeps no running statistics (``track_running_stats=False``): it always
    normalises with the statistics of the batch it sees, in train and eval mode alike. A
    projector only serves training losses, never acting, so running statistics would have no
    use; and :class:`~reprl.optim.target.TargetNetwork` keeps its copy in eval mode, which
    would otherwise switch BYOL's target projector to lagging running statistics while the
    online one uses batch statistics.
    """

    def __init__(self, in_dim: int, hidden_sizes: Sequence[int], out_dim: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for size in hidden_sizes:
            layers += [
                nn.Linear(in_dim, size),
                nn.BatchNorm1d(size, track_running_stats=False),
                nn.ReLU(),
            ]
            in_dim = size
        layers.append(nn.Linear(in_dim, out_dim))
        self.net = nn.Sequential(*layers)
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., in_dim) -> (..., out_dim)``."""
        lead = x.shape[:-1]
        return self.net(x.reshape(-1, x.shape[-1])).view(*lead, self.out_dim)


class Predictor(Projector):
    """BYOL's predictor q: the projector's architecture on the projection (Grill et al. 2020,
    section 3.3), on the online branch only: the paper credits this asymmetry, with the slowly
    moving target, for BYOL not collapsing without negative pairs (section 3.2)."""


# ---------------------------------------------------------------------------------------------
# BYOL
# ---------------------------------------------------------------------------------------------
@dataclass
class BYOLConfig:
    """BYOL as an auxiliary loss on the agent's backbone (Grill et al. 2020)."""

    coef: float = 1.0
    """Weight a_SSL of the BYOL loss in the agent's total loss."""
    hidden_sizes: list[int] = field(default_factory=lambda: [4096])
    """Hidden sizes of the projector g (paper: [4096])."""
    projection_dim: int = 256
    """Output size of the projector and of the predictor (paper: 256)."""
    predictor_hidden_sizes: list[int] = field(default_factory=lambda: [4096])
    """Hidden sizes of the predictor q (paper: [4096], the projector's architecture)."""
    momentum: float = 0.99
    """EMA momentum m of the target encoder and projector, updated after every optimiser step
    as ``target <- m * target + (1 - m) * online`` (a Polyak TargetNetwork with
    ``tau = 1 - m``). The paper starts at 0.996 and raises it to 1 with a cosine schedule over
    training; 0 makes the target the online network itself under a stop-gradient (copied
    every step)."""
    views: ViewsConfig = field(default_factory=ViewsConfig)
    """The two augmented views."""

    def validate(self, path: str) -> None:
        """A non-negative coefficient, positive sizes, a momentum in [0, 1)."""
        _check_head(path, self.coef, self.hidden_sizes, self.projection_dim)
        if any(h <= 0 for h in self.predictor_hidden_sizes):
            raise ConfigError(
                f"{path}.predictor_hidden_sizes: must be positive, got "
                f"{self.predictor_hidden_sizes}"
            )
        if not 0.0 <= self.momentum < 1.0:
            raise ConfigError(f"{path}.momentum: must be in [0, 1), got {self.momentum}")
        self.views.validate(f"{path}.views")


class BYOLHead(nn.Module):
    """BYOL's online projector g and predictor q on features of size ``in_dim``."""

    def __init__(self, cfg: BYOLConfig, in_dim: int) -> None:
        super().__init__()
        self.projector = Projector(in_dim, cfg.hidden_sizes, cfg.projection_dim)
        self.predictor = Predictor(
            cfg.projection_dim, cfg.predictor_hidden_sizes, cfg.projection_dim
        )

    def forward(self, features: torch.Tensor) -> tuple[tuple[torch.Tensor, torch.Tensor], Info]:
        """``features (..., in_dim) -> ((projection z, prediction p), info)``, both
        ``(..., projection_dim)``."""
        z = self.projector(features)
        return (z, self.predictor(z)), {}


class ProjectedEncoder(nn.Module):
    """Encoder then projector, ``obs -> (projection, info)``: BYOL's f then g, the part of the
    online network that the target network copies. It holds the online modules themselves
    (no copy), so it adds no parameters of its own."""

    def __init__(self, encoder: nn.Module, projector: Projector) -> None:
        super().__init__()
        self.encoder = encoder
        self.projector = projector

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, Info]:
        """``encoder(obs) -> ((..., D), info)``, then the projector on the features."""
        features, info = self.encoder(obs)
        return self.projector(features), info


def byol_target(encoder: nn.Module, head: BYOLHead, momentum: float) -> TargetNetwork:
    """The EMA target of BYOL: a :class:`TargetNetwork` copy of ``encoder`` then
    ``head.projector``, updated by ``target.update(step)`` as
    ``target <- momentum * target + (1 - momentum) * online`` (Polyak, ``tau = 1 - momentum``).

    ``encoder(obs)`` must return ``(features, info)`` (every reprl backbone does). Calling the
    target, ``target(obs)``, gives ``(projection, info)`` without gradients.
    """
    cfg = TargetConfig(mode="polyak", period=1, tau=1.0 - momentum)
    return TargetNetwork.from_config(ProjectedEncoder(encoder, head.projector), cfg)


def _weights(shape: torch.Size, mask: torch.Tensor | None, device: torch.device) -> torch.Tensor:
    """Per-sample weights summing to 1 over the flattened leading dims ``shape``: uniform, or
    ``mask / mask.sum()`` (invalid samples, e.g. reset steps, get weight 0)."""
    n = shape.numel()
    if mask is None:
        return torch.full((n,), 1.0 / n, device=device)
    if mask.shape != shape:
        raise ValueError(f"mask must be shaped {tuple(shape)}, got {tuple(mask.shape)}")
    m = mask.reshape(-1).to(device=device, dtype=torch.float32)
    return m / m.sum().clamp(min=1.0)


def byol_pair_loss(
    prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """``mean_b (2 - 2 cos(p_b, sg(z_b)))`` for predictions and target projections
    ``(..., D)``: the squared distance of the L2-normalised vectors (Grill et al. 2020,
    equation 2), in [0, 4]. ``target`` is detached here, whether or not it needs grad (the
    stop-gradient of the target branch). ``mask`` (the leading dims, bool or float) restricts
    the mean to valid samples. Computed in float32."""
    p = F.normalize(prediction.float(), dim=-1)
    z = F.normalize(target.detach().float(), dim=-1)
    per_sample = 2.0 - 2.0 * (p * z).sum(-1)
    return (per_sample.reshape(-1) * _weights(per_sample.shape, mask, p.device)).sum()


def byol_loss(
    p1: torch.Tensor,
    p2: torch.Tensor,
    z1: torch.Tensor,
    z2: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """BYOL's symmetrised loss: online predictions ``p1, p2`` of views 1 and 2 against the
    target projections ``z1, z2`` of the same views, each prediction against the *other*
    view's target: ``(pair(p1, z2) + pair(p2, z1)) / 2`` (see :func:`byol_pair_loss`).

    The paper sums the two terms (section 3.1, ``L + L~``); the mean here keeps the loss in
    [0, 4] whichever way it is computed, so a loss coefficient means the same with one or two
    directions (multiply the coefficient by 2 to match the paper's scale).
    """
    return 0.5 * (byol_pair_loss(p1, z2, mask) + byol_pair_loss(p2, z1, mask))


# ---------------------------------------------------------------------------------------------
# Barlow Twins
# ---------------------------------------------------------------------------------------------
@dataclass
class BarlowTwinsConfig:
    """Barlow Twins as an auxiliary loss on the agent's backbone (Zbontar et al. 2021)."""

    coef: float = 1.0
    """Weight a_SSL of the Barlow Twins loss in the agent's total loss."""
    hidden_sizes: list[int] = field(default_factory=lambda: [1024, 1024])
    """Hidden sizes of the projector (paper, for a ResNet-50 on ImageNet: [8192, 8192]);
    smaller here for RL-sized encoders."""
    projection_dim: int = 1024
    """Size of the embedding whose cross-correlation is decorrelated (paper: 8192)."""
    lambda_offdiag: float = 5e-3
    """lambda: weight of the off-diagonal (redundancy reduction) term (paper: 5e-3)."""
    views: ViewsConfig = field(default_factory=ViewsConfig)
    """The two augmented views."""

    def validate(self, path: str) -> None:
        """A non-negative coefficient and lambda, positive sizes."""
        _check_head(path, self.coef, self.hidden_sizes, self.projection_dim)
        if self.lambda_offdiag < 0:
            raise ConfigError(f"{path}.lambda_offdiag: must be >= 0, got {self.lambda_offdiag}")
        self.views.validate(f"{path}.views")


class BarlowTwinsHead(nn.Module):
    """Barlow Twins' projector on features of size ``in_dim`` (shared by both views)."""

    def __init__(self, cfg: BarlowTwinsConfig, in_dim: int) -> None:
        super().__init__()
        self.projector = Projector(in_dim, cfg.hidden_sizes, cfg.projection_dim)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, Info]:
        """``features (..., in_dim) -> (embedding (..., projection_dim), info)``."""
        return self.projector(features), {}


def _batch_normalise(z: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    """``(z - mean) / sqrt(var + eps)`` per dimension over the weighted batch (biased
    variance, as batch norm computes it)."""
    mean = w @ z
    centred = z - mean
    var = w @ centred.square()
    return centred * torch.rsqrt(var + eps)


def cross_correlation(
    z1: torch.Tensor, z2: torch.Tensor, mask: torch.Tensor | None = None, eps: float = 1e-5
) -> torch.Tensor:
    """Barlow Twins' cross-correlation matrix ``C`` ``(D, D)`` of embeddings ``(..., D)`` of the
    two views (Zbontar et al. 2021, equation 2): each dimension normalised over the batch to
    mean 0 and variance 1, then ``C_ij = mean_b z1_bi z2_bj``. ``eps`` (torch's batch-norm
    default) is added to the variances; ``mask`` restricts the batch to valid samples.
    Computed in float32 (also under autocast)."""
    if z1.shape != z2.shape:
        raise ValueError(f"embeddings differ in shape: {tuple(z1.shape)} != {tuple(z2.shape)}")
    lead = z1.shape[:-1]
    a = z1.reshape(-1, z1.shape[-1]).float()
    b = z2.reshape(-1, z2.shape[-1]).float()
    w = _weights(lead, mask, a.device)
    a, b = _batch_normalise(a, w, eps), _batch_normalise(b, w, eps)
    return (a * w[:, None]).T @ b


def barlow_twins_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    lambda_offdiag: float = 5e-3,
    mask: torch.Tensor | None = None,
    eps: float = 1e-5,
) -> torch.Tensor:
    """``sum_i (1 - C_ii)^2 + lambda_offdiag * sum_{i != j} C_ij^2`` with ``C`` from
    :func:`cross_correlation` (Zbontar et al. 2021, equation 1): the invariance term pulls each
    dimension of the two views' embeddings to correlation 1, the redundancy-reduction term
    decorrelates different dimensions. Both views get gradients (no stop-gradient)."""
    c = cross_correlation(z1, z2, mask, eps)
    eye = torch.eye(c.shape[0], dtype=torch.bool, device=c.device)
    on = (1.0 - torch.diagonal(c)).square().sum()
    off = c.square().masked_fill(eye, 0.0).sum()
    return on + lambda_offdiag * off


def _check_head(path: str, coef: float, hidden_sizes: list[int], projection_dim: int) -> None:
    """Checks shared by the SSL configs."""
    if coef < 0:
        raise ConfigError(f"{path}.coef: must be >= 0, got {coef}")
    if any(h <= 0 for h in hidden_sizes):
        raise ConfigError(f"{path}.hidden_sizes: must be positive, got {hidden_sizes}")
    if projection_dim <= 0:
        raise ConfigError(f"{path}.projection_dim: must be positive, got {projection_dim}")

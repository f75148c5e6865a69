"""Mask-based Latent Reconstruction pretraining (config group ``trainer``: ``mlr``).

MLR (Yu et al. 2022, "Mask-based Latent Reconstruction for Reinforcement Learning", section
3): a window of ``T`` consecutive observations (the paper's ``K``) is augmented, random
spatio-temporal cubes of its pixels are masked, and the online encoder embeds the masked
frames; a small transformer (the "predictive latent decoder", two attention layers) over the
state tokens, action tokens and learned positional embeddings reconstructs the latents, and
a BYOL-style objective (projection g and prediction q online, an EMA copy of encoder and
projection as target) pulls them to the target's latents of the *unmasked* frames: the cosine
loss ``2 - 2 cos(q(g(s_hat_t)), sg(g'(f'(o_t))))`` averaged over the window's valid steps (the
paper computes it on every step, masked or not).

Masking (:func:`cube_mask`), exactly: the window ``(T, H, W)`` is tiled by cubes of
``cube_size = (depth in steps, height, width in pixels)`` (edge cubes are cut off where the
sizes do not divide); each window masks ``round(mask_ratio * number of cubes)`` cubes drawn
uniformly without replacement; a masked pixel is set to 0 in every channel of the frame
stack (all ``k*C`` channels of step ``t`` share the mask). Augmentations (random shift, then
intensity; SPR's, which MLR keeps on Atari) are drawn per step before masking, and the target
sees the same augmented frames unmasked, so the mask is the only difference between the
branches.

The transformer attends only within an episode: tokens after an ``is_first`` inside the
window do not see earlier ones (the sampler's windows lie in one episode; other sources may
not). Parts reused: :class:`~reprl.models.ssl.Projector`/``Predictor``,
:func:`~reprl.models.ssl.byol_pair_loss`, the :class:`~reprl.optim.target.TargetNetwork`
(Polyak) and the trainer plumbing of :mod:`reprl.trainers.ssl`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from reprl.errors import ConfigError
from reprl.models.augment import random_shift
from reprl.models.build import embedding_dim
from reprl.models.ssl import (
    Predictor,
    ProjectedEncoder,
    Projector,
    ViewsConfig,
    byol_pair_loss,
    intensity,
)
from reprl.optim.target import EMATargets, TargetConfig, TargetNetwork
from reprl.registry import TRAINERS
from reprl.trainers.base import TrainerConfig, TrainerModel
from reprl.trainers.ssl import _SSLTrainer
from reprl.types import Batch, EnvSpec

Info = dict[str, torch.Tensor]


@dataclass
class MLRTrainerConfig(TrainerConfig):
    """MLR pretraining (Yu et al. 2022): masking, latent decoder, projection heads, target."""

    batch_size: int = 64
    """Windows per update (``N``; the paper trains MLR as an auxiliary with batch 32)."""
    seq_len: int = 16
    """Steps per window (the paper's sequence length ``K = 16``)."""
    mask_ratio: float = 0.5
    """Fraction of the window's cubes masked (paper: 50%)."""
    cube_size: list[int] = field(default_factory=lambda: [8, 12, 12])
    """Cube ``[depth in steps, height, width in pixels]``; 12x12 tiles an 84x84 frame into
    7x7 and a depth of half the window follows the paper's Atari cubes (its table of
    hyperparameters: check there before relying on the exact sizes)."""
    num_layers: int = 2
    """Attention layers of the predictive latent decoder (paper: 2)."""
    num_heads: int = 1
    """Attention heads (must divide the backbone's feature size)."""
    ff_dim: int = 1024
    """Hidden size of each transformer layer's feed-forward block."""
    hidden_sizes: list[int] = field(default_factory=lambda: [512])
    """Hidden sizes of the projection head g (MLR follows SPR/BYOL's MLP projection)."""
    projection_dim: int = 256
    """Output size of the projection and prediction heads."""
    predictor_hidden_sizes: list[int] = field(default_factory=lambda: [512])
    """Hidden sizes of the prediction head q (online branch only)."""
    momentum: float = 0.99
    """EMA momentum m of the target encoder and projection, ``target <- m * target + (1 - m)
    * online`` after every step (the BYOL trainer's default; SPR-style agents on Atari use
    0, a stop-gradient copy)."""
    views: ViewsConfig = field(default_factory=ViewsConfig)
    """Augmentation applied before masking (random shift 4 px, intensity 0.05)."""

    def validate(self, path: str) -> None:
        """A ratio in (0, 1), three positive cube sizes, positive sizes, a momentum in [0, 1)."""
        TrainerConfig.validate(self, path)
        if not 0.0 < self.mask_ratio < 1.0:
            raise ConfigError(f"{path}.mask_ratio: must be in (0, 1), got {self.mask_ratio}")
        if len(self.cube_size) != 3 or any(s < 1 for s in self.cube_size):
            raise ConfigError(
                f"{path}.cube_size: [depth, height, width], each >= 1; got {self.cube_size}"
            )
        if min(self.num_layers, self.num_heads, self.ff_dim, self.projection_dim) < 1:
            raise ConfigError(f"{path}: num_layers, num_heads, ff_dim, projection_dim >= 1")
        if any(h < 1 for h in [*self.hidden_sizes, *self.predictor_hidden_sizes]):
            raise ConfigError(f"{path}.hidden_sizes/predictor_hidden_sizes: must be positive")
        if not 0.0 <= self.momentum < 1.0:
            raise ConfigError(f"{path}.momentum: must be in [0, 1), got {self.momentum}")
        self.views.validate(f"{path}.views")


# ---------------------------------------------------------------------------------------------
# Masking
# ---------------------------------------------------------------------------------------------
def cube_mask(
    shape: tuple[int, int, int, int],
    cube_size: tuple[int, int, int] | list[int],
    ratio: float,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Bool mask ``(N, T, H, W)`` (true: masked) of whole spatio-temporal cubes.

    The ``(T, H, W)`` grid is tiled by cubes ``(depth, height, width)`` (edge cubes cut off
    where sizes do not divide); each of the ``N`` windows masks exactly
    ``round(ratio * num_cubes)`` cubes, drawn uniformly without replacement.
    """
    n, t, h, w = shape
    ct, ch, cw = cube_size
    grid = (math.ceil(t / ct), math.ceil(h / ch), math.ceil(w / cw))
    num_cubes = grid[0] * grid[1] * grid[2]
    k = round(ratio * num_cubes)
    dev = device if generator is None else generator.device
    order = torch.rand(n, num_cubes, generator=generator, device=dev).argsort(1).to(device)
    cubes = torch.zeros(n, num_cubes, dtype=torch.bool, device=device)
    cubes.scatter_(1, order[:, :k], True)
    cubes = cubes.view(n, *grid)
    cubes = cubes.repeat_interleave(ct, 1).repeat_interleave(ch, 2).repeat_interleave(cw, 3)
    return cubes[:, :t, :h, :w]


def apply_mask(obs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Frames ``(N, T, C, H, W)`` with the pixels where ``mask (N, T, H, W)`` is true set to
    0 in every channel (the whole frame stack of a step shares its mask); dtype kept."""
    if mask.shape != (*obs.shape[:2], *obs.shape[-2:]):
        raise ValueError(f"mask {tuple(mask.shape)} does not fit frames {tuple(obs.shape)}")
    return obs.masked_fill(mask[:, :, None], 0)


# ---------------------------------------------------------------------------------------------
# Predictive latent decoder
# ---------------------------------------------------------------------------------------------
class LatentDecoder(nn.Module):
    """MLR's predictive latent decoder (Yu et al. 2022, section 3.3): a transformer over the
    interleaved tokens ``[s_1, a_1, s_2, a_2, ...]``, each plus the learned positional
    embedding of its step; the outputs at the state tokens are the reconstructed latents.

    ``(states (N, T, D), action (N, T[, A]), is_first (N, T)) -> ((N, T, D), info)``.
    """

    def __init__(self, cfg: MLRTrainerConfig, spec: EnvSpec, dim: int) -> None:
        super().__init__()
        if dim % cfg.num_heads:
            raise ConfigError(
                f"trainer.num_heads: {cfg.num_heads} does not divide the backbone's feature "
                f"size {dim}"
            )
        self.discrete = spec.discrete
        if spec.discrete:
            self.action_embed: nn.Module = nn.Embedding(spec.num_actions, dim)
        else:
            self.action_embed = nn.Linear(int(np.prod(spec.action_shape)), dim)
        self.position = nn.Parameter(torch.zeros(1, cfg.seq_len, dim))
        nn.init.trunc_normal_(self.position, std=0.02)
        layer = nn.TransformerEncoderLayer(
            dim, cfg.num_heads, cfg.ff_dim, dropout=0.0, batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(
            layer, cfg.num_layers, norm=nn.LayerNorm(dim), enable_nested_tensor=False
        )
        self.num_heads = cfg.num_heads

    def forward(
        self, states: torch.Tensor, action: torch.Tensor, is_first: torch.Tensor
    ) -> tuple[torch.Tensor, Info]:
        """Reconstructed latents ``(N, T, D)`` of the masked frames' latents ``states``."""
        n, t, d = states.shape
        if t > self.position.shape[1]:
            raise ValueError(
                f"window of {t} steps, positional embeddings for {self.position.shape[1]}"
            )
        action = action.long() if self.discrete else action.float().flatten(2)
        pos = self.position[:, :t]
        tokens = torch.stack([states + pos, self.action_embed(action) + pos], dim=2)
        tokens = tokens.view(n, 2 * t, d)
        # attention within an episode only: tokens of different episodes block each other
        episode = is_first.long().cumsum(1).repeat_interleave(2, dim=1)  # (N, 2T)
        blocked = episode[:, :, None] != episode[:, None, :]
        out = self.blocks(tokens, mask=blocked.repeat_interleave(self.num_heads, dim=0))
        return out[:, 0::2], {}


# ---------------------------------------------------------------------------------------------
# Head and trainer
# ---------------------------------------------------------------------------------------------
class MLRHead(EMATargets, nn.Module):
    """The trainer model's head: latent decoder, projection g, prediction q and the EMA
    target of backbone + g (registered as ``target_encoder``, so saved with the weights)."""

    def __init__(self, cfg: MLRTrainerConfig, spec: EnvSpec, model: TrainerModel) -> None:
        super().__init__()
        if len(spec.obs_shape) != 3:
            raise ConfigError(
                f"trainer.mlr: needs image observations (C, H, W) to mask; this env's are "
                f"shaped {tuple(spec.obs_shape)}"
            )
        self.cfg = cfg
        backbone = model.backbone
        dim = embedding_dim(backbone, spec)
        self.decoder = LatentDecoder(cfg, spec, dim)
        self.projector = Projector(dim, cfg.hidden_sizes, cfg.projection_dim)
        self.predictor = Predictor(
            cfg.projection_dim, cfg.predictor_hidden_sizes, cfg.projection_dim
        )
        target_cfg = TargetConfig(mode="polyak", period=1, tau=1.0 - cfg.momentum)
        self.target = TargetNetwork.from_config(
            ProjectedEncoder(backbone, self.projector), target_cfg
        )
        self.target_encoder = self.target.target  # registered: saved with the weights
        self._backbone = [backbone]  # a list: not registered twice under head.*
        self.updates = 0

    def compute_loss(self, mb: Batch, trainer: Any) -> tuple[Info, Info]:
        """``loss_ssl_mlr``: the cosine loss of the reconstructed latents' predictions against
        the target's projections of the unmasked frames, over valid steps."""
        obs = mb.obs
        if obs.dim() != 5:
            raise ValueError(f"expected frames (N, T, C, H, W), got {tuple(obs.shape)}")
        # augment (per step), then mask whole cubes in every channel of each frame stack
        obs = intensity(random_shift(obs, self.cfg.views.pad), self.cfg.views.intensity_scale)
        n, t, _, h, w = obs.shape
        mask = cube_mask((n, t, h, w), self.cfg.cube_size, self.cfg.mask_ratio, obs.device)
        states, _ = self._backbone[0](apply_mask(obs, mask))
        latents, _ = self.decoder(states, mb.action, mb.is_first)
        prediction = self.predictor(self.projector(latents))
        target, _ = self.target(obs)
        loss = byol_pair_loss(prediction, target, mb.valid)
        stats = {"stats/mlr_loss": loss.detach(), "stats/mlr_mask_frac": mask.float().mean()}
        return {"loss_ssl_mlr": loss}, stats


@TRAINERS.register("mlr", MLRTrainerConfig)
class MLRTrainer(_SSLTrainer):
    """MLR pretraining of a backbone (Yu et al. 2022)."""

    head_cls = MLRHead

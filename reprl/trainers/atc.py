"""Augmented Temporal Contrast pretraining (config group ``trainer``: ``atc``; Stooke et al.
2021, "Decoupling Representation Learning from Reinforcement Learning", section 3).

The anchor, an augmented observation ``o_t``, goes through the online encoder, a linear
compressor to a small latent ``c_t`` and a residual predictor ``p_t = c_t + MLP(c_t)``; the
positive, the augmented ``o_{t+k}`` (``k = delta``), goes through the EMA target encoder and
compressor to ``c'_{t+k}``. The loss is InfoNCE over the batch with a bilinear similarity,
``logits_ij = p_i^T W c'_j`` and label ``j = i``: each anchor must pick out its own future
among the other anchors' futures (the paper's section 3; the authors' code in
``astooke/rlpyt``, ``rlpyt/ul/algos/ul_for_rl/augmented_temporal_contrast.py``).

A window of ``T = seq_len`` steps gives ``T - delta`` anchors, ``o_t`` for ``t < T - delta``,
each with its positive ``o_{t + delta}``; the paper's Atari runs sample 32 windows of 16
anchors (``seq_len = delta + 16``). Pairs that cross an episode's end are left out of the
loss (they stay in the batch as negatives). Shapes: ``obs (N, T, C, H, W)``, anchors and
positives flattened to ``(B, L)``, ``B = N * (T - delta)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from reprl.errors import ConfigError
from reprl.models.build import embedding_dim
from reprl.models.ssl import ProjectedEncoder, ViewsConfig
from reprl.optim.target import EMATargets, TargetNetwork
from reprl.registry import TRAINERS
from reprl.trainers.base import TrainerConfig, TrainerModel
from reprl.trainers.spr import augment, mlp
from reprl.trainers.ssl import _SSLTrainer
from reprl.types import Batch, EnvSpec

Info = dict[str, torch.Tensor]


@dataclass
class ATCTrainerConfig(TrainerConfig):
    """ATC pretraining (Stooke et al. 2021): anchor ``o_t``, positive ``o_{t + delta}``,
    bilinear InfoNCE against an EMA target encoder."""

    seq_len: int = 4
    """Steps per window ``T``: ``T - delta`` anchors per window (``delta + 1``: one; the
    paper's Atari runs: ``delta + 16``)."""
    delta: int = 3
    """Temporal offset k of the positive (paper, Atari: 3)."""
    coef: float = 1.0
    """Weight of the ATC loss."""
    latent_dim: int = 256
    """Output size of the linear compressor (paper, Atari: 256)."""
    predictor_hidden_dim: int = 512
    """Hidden size of the residual predictor's MLP (paper, Atari: 512)."""
    momentum: float = 0.99
    """EMA momentum of the target encoder and compressor, ``target <- m * target +
    (1 - m) * online`` after every update (paper: tau = 0.01, i.e. m = 0.99)."""
    views: ViewsConfig = field(default_factory=lambda: ViewsConfig(pad=4, intensity_scale=0.0))
    """Augmentation of anchors and positives (paper: random shift, 4 px, no intensity; its
    Atari runs shift only a random 10% of the images, here all are shifted)."""

    def validate(self, path: str) -> None:
        """``seq_len > delta >= 1``, a non-negative weight, positive sizes, a momentum in
        [0, 1)."""
        super().validate(path)
        if self.delta < 1:
            raise ConfigError(f"{path}.delta: must be >= 1, got {self.delta}")
        if self.seq_len <= self.delta:
            raise ConfigError(f"{path}.seq_len: must be > delta ({self.delta}), got {self.seq_len}")
        if self.coef < 0:
            raise ConfigError(f"{path}.coef: must be >= 0, got {self.coef}")
        if self.latent_dim <= 0 or self.predictor_hidden_dim <= 0:
            raise ConfigError(f"{path}.latent_dim, predictor_hidden_dim: must be positive")
        if not 0.0 <= self.momentum < 1.0:
            raise ConfigError(f"{path}.momentum: must be in [0, 1), got {self.momentum}")
        self.views.validate(f"{path}.views")


def pair_mask(valid: torch.Tensor, is_first: torch.Tensor, delta: int) -> torch.Tensor:
    """``(N, T - delta)`` bool: steps ``t`` and ``t + delta`` are both valid and in the same
    episode (no episode start in ``(t, t + delta]``)."""
    episode = is_first.long().clone()
    episode[:, 0] = 0
    episode = episode.cumsum(1)
    v = valid.bool()
    return v[:, :-delta] & v[:, delta:] & (episode[:, :-delta] == episode[:, delta:])


def info_nce(
    anchor: torch.Tensor,
    positive: torch.Tensor,
    weight: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """InfoNCE with a bilinear similarity: ``logits = anchor W positive^T`` ``(B, B)``, label
    ``i`` for row ``i``; ``(mean cross-entropy over mask, accuracy)``. Each row's max is
    subtracted first (as the authors' code does; the softmax is unchanged). ``positive`` is
    detached (the target branch). Computed in float32."""
    logits = anchor.float() @ weight.float() @ positive.detach().float().T
    logits = logits - logits.max(1, keepdim=True).values
    labels = torch.arange(logits.shape[0], device=logits.device)
    ce = F.cross_entropy(logits, labels, reduction="none")
    m = torch.ones_like(ce) if mask is None else mask.reshape(-1).float()
    denom = m.sum().clamp(min=1.0)
    accuracy = ((logits.argmax(1) == labels).float() * m).sum() / denom
    return (ce * m).sum() / denom, accuracy.detach()


class ATCHead(EMATargets, nn.Module):
    """ATC's compressor, residual predictor, bilinear ``W`` and EMA target (encoder +
    compressor), on the trainer model's backbone."""

    def __init__(self, cfg: ATCTrainerConfig, spec: EnvSpec, model: TrainerModel) -> None:
        super().__init__()
        if len(spec.obs_shape) != 3:
            raise ConfigError(
                f"trainer atc: needs image observations (C, H, W); got {tuple(spec.obs_shape)}"
            )
        self.cfg = cfg
        backbone = model.backbone
        dim = embedding_dim(backbone, spec)
        self.compressor = nn.Linear(dim, cfg.latent_dim)
        self.predictor = mlp(cfg.latent_dim, cfg.predictor_hidden_dim, cfg.latent_dim)
        self.weight = nn.Parameter(torch.eye(cfg.latent_dim))  # W, identity at start
        # the online encoder + compressor (backbone kept out of this module's tree)
        self.__dict__["online"] = ProjectedEncoder(backbone, self.compressor)
        self.target = TargetNetwork(self.online, "polyak", 1, 1.0 - cfg.momentum)
        self.target_encoder = self.target.target  # registered: saved with the weights
        self.updates = 0

    online: ProjectedEncoder
    """Backbone then compressor (not a submodule)."""

    def compute_loss(self, mb: Batch, trainer: Any = None) -> tuple[Info, Info]:
        """The ATC loss of a minibatch of windows: anchors ``t < T - delta``, positives
        ``t + delta``."""
        obs, d = mb.obs, self.cfg.delta
        n, t = obs.shape[:2]
        mask = pair_mask(mb.valid, mb.is_first, d)  # (N, T - d)
        anchor_obs = augment(obs[:, : t - d], self.cfg.views)
        positive_obs = augment(obs[:, d:], self.cfg.views)
        c, _ = self.online(anchor_obs)  # (N, T - d, L)
        c = c.float().flatten(0, 1)
        pred = c + self.predictor(c)  # residual predictor
        positive, _ = self.target(positive_obs)
        loss, accuracy = info_nce(pred, positive.flatten(0, 1), self.weight, mask)
        info = {"stats/atc_loss": loss.detach(), "stats/atc_accuracy": accuracy}
        return {"loss_ssl_atc": self.cfg.coef * loss}, info


@TRAINERS.register("atc", ATCTrainerConfig)
class ATCTrainer(_SSLTrainer):
    """ATC pretraining of a backbone: ``loss_ssl_atc``."""

    head_cls = ATCHead

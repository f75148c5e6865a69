"""Augmented views of a minibatch through the agent's shared backbone: the part every SSL
auxiliary (:mod:`reprl.auxiliaries.byol`, :mod:`reprl.auxiliaries.barlow`) shares.

Two views of the minibatch's observations (:func:`reprl.models.ssl.two_views`: DrQ's random
shift, then SPR's random intensity) go through the agent's own backbone, so the SSL gradient
shapes the representation the policy reads. ``backbone_grad: false`` keeps the SSL gradient out
of the backbone (only the heads learn: "freeze the backbone for this loss"); ``sample_frac``
trains on a random part of each minibatch to bound the cost of the extra backbone passes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from reprl.auxiliaries.base import Auxiliary
from reprl.errors import ConfigError
from reprl.models.build import embedding_dim
from reprl.models.ssl import two_views
from reprl.types import Batch, EnvSpec


@dataclass
class SSLOptions:
    """Options shared by the SSL auxiliaries."""

    backbone_grad: bool = True
    """Whether the SSL loss trains the agent's backbone (false: only the SSL heads learn)."""
    sample_frac: float = 1.0
    """Fraction of each minibatch's samples (``N`` rows) the SSL loss uses."""

    def validate_options(self, path: str) -> None:
        """A fraction in (0, 1]."""
        if not 0.0 < self.sample_frac <= 1.0:
            raise ConfigError(f"{path}.sample_frac: must be in (0, 1], got {self.sample_frac}")


class SSLAuxiliary(Auxiliary):
    """Views of a minibatch through the agent's backbone; subclasses add head and loss."""

    name = ""

    def __init__(self, cfg: Any, spec: EnvSpec, model: nn.Module | None) -> None:
        super().__init__(model)
        if model is None:
            raise ConfigError(f"aux.{self.name}: needs the agent's model")
        if len(spec.obs_shape) != 3:
            raise ConfigError(
                f"aux.{self.name}: needs image observations (C, H, W) for its augmented "
                f"views; this env's are shaped {tuple(spec.obs_shape)}"
            )
        self.cfg = cfg
        backbone = model.backbone
        self.in_dim = embedding_dim(backbone, spec)

    def coefficients(self) -> dict[str, float]:
        """a_SSL, the weight of this loss."""
        return {f"a_SSL_{self.name}": self.cfg.coef}

    def views(self, mb: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Two augmented views ``(n, T, ...)`` of a random ``sample_frac`` of the minibatch's
        rows, and their validity mask ``(n, T)``."""
        obs, valid = mb.obs, mb.valid
        if self.cfg.sample_frac < 1.0:
            n = max(1, round(obs.shape[0] * self.cfg.sample_frac))
            rows = torch.randperm(obs.shape[0], device=obs.device)[:n]
            obs, valid = obs[rows], valid[rows]
        v1, v2 = two_views(obs, self.cfg.views.pad, self.cfg.views.intensity_scale)
        return v1, v2, valid

    def encode(self, v1: torch.Tensor, v2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The backbone's embeddings of both views, in one pass (views stacked along N)."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.cfg.backbone_grad):
            features, _ = self.agent_model.backbone(torch.cat([v1, v2]))
        if not self.cfg.backbone_grad:
            features = features.detach()
        return features.float().chunk(2)

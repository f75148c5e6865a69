"""Self-supervised auxiliary losses on the agent's shared backbone: BYOL and Barlow Twins.

Switched on in YAML (``aux.byol.coef=1``, ``aux.barlow.coef=0.1``), they add
``a_SSL * L_SSL`` to the agent's loss (group ``ssl``), computed on the minibatch the agent
learns from: two augmented views of its observations (:func:`reprl.models.ssl.two_views`:
random shift then random intensity) go through the agent's own backbone, so the SSL
gradient shapes the representation the policy reads. The losses, heads and views are the
parts in :mod:`reprl.models.ssl` (Grill et al. 2020; Zbontar et al. 2021).

- **BYOL**: the online backbone and projector, a predictor, and an EMA target copy of
  backbone + projector (:func:`reprl.models.ssl.byol_target`, the shared
  :class:`~reprl.optim.target.TargetNetwork`) updated after every optimiser step.
- **Barlow Twins**: both views through the same backbone and projector; the
  cross-correlation loss with its off-diagonal weight.

``backbone_grad: false`` keeps the SSL gradient out of the backbone (only the heads learn),
the "freeze the backbone for this loss" switch; ``sample_frac`` trains on a random part of
each minibatch to bound the cost of the two extra backbone passes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from reprl.auxiliaries.base import Auxiliary
from reprl.errors import ConfigError
from reprl.models.build import zero_obs
from reprl.models.ssl import (
    BarlowTwinsConfig,
    BarlowTwinsHead,
    BYOLConfig,
    BYOLHead,
    barlow_twins_loss,
    byol_loss,
    byol_target,
    two_views,
)
from reprl.registry import AUXILIARIES
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


@dataclass
class BYOLAuxConfig(BYOLConfig, SSLOptions):
    """BYOL on the agent's backbone (``aux.byol``): :class:`~reprl.models.ssl.BYOLConfig`
    plus the shared SSL options."""

    def validate(self, path: str) -> None:
        """The BYOL checks and the shared ones."""
        super().validate(path)
        self.validate_options(path)


@dataclass
class BarlowAuxConfig(BarlowTwinsConfig, SSLOptions):
    """Barlow Twins on the agent's backbone (``aux.barlow``)."""

    def validate(self, path: str) -> None:
        """The Barlow Twins checks and the shared ones."""
        super().validate(path)
        self.validate_options(path)


class _SSLAuxiliary(Auxiliary):
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
        device = next(iter(backbone.parameters()), torch.empty(0)).device
        with torch.no_grad():
            self.in_dim = int(backbone(zero_obs(spec).to(device))[0].shape[-1])

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


@AUXILIARIES.register("byol", BYOLAuxConfig)
class BYOLAuxiliary(_SSLAuxiliary):
    """BYOL (Grill et al. 2020) on the agent's backbone: ``loss_ssl_byol``."""

    name = "byol"

    def __init__(self, cfg: BYOLAuxConfig, spec: EnvSpec, model: nn.Module | None = None) -> None:
        super().__init__(cfg, spec, model)
        self.head = BYOLHead(cfg, self.in_dim)
        self.target = byol_target(model.backbone, self.head, cfg.momentum)
        self.target_encoder = self.target.target  # registered: saved with the weights
        self.updates = 0

    def compute_loss(
        self, mb: Batch, agent: Any, embedding: torch.Tensor | None = None
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Symmetrised BYOL loss of the two views' predictions against the EMA target's
        projections of the other view."""
        v1, v2, valid = self.views(mb)
        f1, f2 = self.encode(v1, v2)
        (_, p), _ = self.head(torch.cat([f1, f2]))
        p1, p2 = p.chunk(2)
        z_target, _ = self.target(torch.cat([v1, v2]))
        z1, z2 = z_target.float().chunk(2)
        loss = byol_loss(p1, p2, z1, z2, valid)
        return {"loss_ssl_byol": self.cfg.coef * loss}, {"stats/byol_loss": loss.detach()}

    def after_update(self) -> None:
        """EMA step of the target encoder and projector."""
        self.updates += 1
        self.target.update(self.updates)

    def extra_state(self) -> dict[str, Any]:
        """The update count (the target's weights are in ``state_dict``)."""
        return {"updates": self.updates}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`extra_state`."""
        self.updates = int(state["updates"])
        self.target.last_update = self.updates


@AUXILIARIES.register("barlow", BarlowAuxConfig)
class BarlowAuxiliary(_SSLAuxiliary):
    """Barlow Twins (Zbontar et al. 2021) on the agent's backbone: ``loss_ssl_barlow``."""

    name = "barlow"

    def __init__(self, cfg: BarlowAuxConfig, spec: EnvSpec, model: nn.Module | None = None) -> None:
        super().__init__(cfg, spec, model)
        self.head = BarlowTwinsHead(cfg, self.in_dim)

    def compute_loss(
        self, mb: Batch, agent: Any, embedding: torch.Tensor | None = None
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Cross-correlation loss of the two views' projections."""
        v1, v2, valid = self.views(mb)
        f1, f2 = self.encode(v1, v2)
        z, _ = self.head(torch.cat([f1, f2]))
        z1, z2 = z.chunk(2)
        loss = barlow_twins_loss(z1, z2, self.cfg.lambda_offdiag, valid)
        return {"loss_ssl_barlow": self.cfg.coef * loss}, {"stats/barlow_loss": loss.detach()}

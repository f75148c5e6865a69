"""BYOL (Grill et al. 2020, "Bootstrap Your Own Latent") as an auxiliary loss on the agent's
backbone: ``aux.byol.coef=1`` adds ``a_SSL * L_BYOL`` (``loss_ssl_byol``).

The online backbone and projector, a predictor, and an EMA target copy of backbone +
projector (:func:`reprl.models.ssl.byol_target`, the shared
:class:`~reprl.optim.target.TargetNetwork`) updated after every optimiser step; the loss of
each view's prediction against the target's projection of the other view
(:func:`reprl.models.ssl.byol_loss`). Views: :mod:`reprl.auxiliaries.augment`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from reprl.auxiliaries.augment import SSLAuxiliary, SSLOptions
from reprl.models.ssl import BYOLConfig, BYOLHead, byol_loss, byol_target
from reprl.optim.target import EMATargets
from reprl.registry import AUXILIARIES
from reprl.types import Batch, EnvSpec


@dataclass
class BYOLAuxConfig(BYOLConfig, SSLOptions):
    """BYOL on the agent's backbone (``aux.byol``): :class:`~reprl.models.ssl.BYOLConfig`
    plus the shared SSL options."""

    def validate(self, path: str) -> None:
        """The BYOL checks and the shared ones."""
        super().validate(path)
        self.validate_options(path)


@AUXILIARIES.register("byol", BYOLAuxConfig)
class BYOLAuxiliary(EMATargets, SSLAuxiliary):
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

"""Barlow Twins (Zbontar et al. 2021) as an auxiliary loss on the agent's backbone:
``aux.barlow.coef=0.1`` adds ``a_SSL * L_BT`` (``loss_ssl_barlow``).

Both views go through the same backbone and projector; the loss pushes the cross-correlation
matrix of the two batch-normalised embeddings to the identity, with the off-diagonal weight
``lambda_offdiag`` (:func:`reprl.models.ssl.barlow_twins_loss`). Views:
:mod:`reprl.auxiliaries.augment`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from reprl.auxiliaries.augment import SSLAuxiliary, SSLOptions
from reprl.models.ssl import BarlowTwinsConfig, BarlowTwinsHead, barlow_twins_loss
from reprl.registry import AUXILIARIES
from reprl.types import Batch, EnvSpec


@dataclass
class BarlowAuxConfig(BarlowTwinsConfig, SSLOptions):
    """Barlow Twins on the agent's backbone (``aux.barlow``)."""

    def validate(self, path: str) -> None:
        """The Barlow Twins checks and the shared ones."""
        super().validate(path)
        self.validate_options(path)


@AUXILIARIES.register("barlow", BarlowAuxConfig)
class BarlowAuxiliary(SSLAuxiliary):
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

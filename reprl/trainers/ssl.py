"""BYOL and Barlow Twins pretraining (config group ``trainer``: ``byol``, ``barlow``): the
same losses, views and EMA target as the RL auxiliaries (:mod:`reprl.auxiliaries.byol`,
:mod:`reprl.auxiliaries.barlow`), here on offline data with no RL loss. The auxiliary module
is the trainer model's head, so its projector, predictor and target are saved with the
backbone."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from reprl.auxiliaries.barlow import BarlowAuxConfig, BarlowAuxiliary
from reprl.auxiliaries.byol import BYOLAuxConfig, BYOLAuxiliary
from reprl.registry import TRAINERS
from reprl.trainers.base import Trainer, TrainerConfig, TrainerModel
from reprl.types import Batch, EnvSpec


@dataclass
class BYOLTrainerConfig(TrainerConfig, BYOLAuxConfig):
    """BYOL pretraining: the trainer options and BYOL's (Grill et al. 2020)."""

    def validate(self, path: str) -> None:
        """Both sets of checks."""
        TrainerConfig.validate(self, path)
        BYOLAuxConfig.validate(self, path)


@dataclass
class BarlowTrainerConfig(TrainerConfig, BarlowAuxConfig):
    """Barlow Twins pretraining: the trainer options and Barlow Twins' (Zbontar et al.)."""

    def validate(self, path: str) -> None:
        """Both sets of checks."""
        TrainerConfig.validate(self, path)
        BarlowAuxConfig.validate(self, path)


class _SSLTrainer(Trainer):
    """A trainer whose head is an SSL auxiliary of the backbone."""

    head_cls: Any = None

    @classmethod
    def build(cls, cfg: Any, spec: EnvSpec, model: TrainerModel, device: torch.device) -> Any:
        """Attach the head to ``model``, then build the trainer (its Adam holds both)."""
        model.head = cls.head_cls(cfg, spec, model).to(device)
        return cls(cfg, spec, model, device)

    def compute_loss(self, mb: Batch) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """The SSL loss of the minibatch's two views."""
        with self.autocast():
            return self.model.head.compute_loss(mb, self)

    def after_update(self, mb: Batch, info: dict[str, torch.Tensor]) -> None:
        """The head's post-step work (BYOL: the EMA target)."""
        self.model.head.after_update()

    def state_dict(self) -> dict[str, Any]:
        """Weights, optimizer and the head's counters."""
        return super().state_dict() | {"head_extra": self.model.head.extra_state()}

    def load_state_dict(self, state: dict[str, Any], optimizer: bool = True) -> None:
        """Restore :meth:`state_dict`."""
        super().load_state_dict(state, optimizer)
        if "head_extra" in state:
            self.model.head.load_extra_state(state["head_extra"])


@TRAINERS.register("byol", BYOLTrainerConfig)
class BYOLTrainer(_SSLTrainer):
    """BYOL pretraining of a backbone."""

    head_cls = BYOLAuxiliary


@TRAINERS.register("barlow", BarlowTrainerConfig)
class BarlowTrainer(_SSLTrainer):
    """Barlow Twins pretraining of a backbone."""

    head_cls = BarlowAuxiliary

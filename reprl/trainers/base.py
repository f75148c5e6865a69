"""Pretraining trainers: self-supervised methods that run in the one loop over an offline
Source, with the agents' hooks (``prepare``, ``compute_loss``, ``update``, ``after_update``).

A trainer's model is ``backbone -> head``: the backbone is any registered backbone
(``model.backbone``, the same config an agent uses), the head is the method's (projector,
predictor, target network, ...). Checkpoints hold the model as ``agent.model`` with the
backbone's weights under ``backbone.*``, so ``model.backbone.init_from=<pretraining run>``
starts any agent from it. ``total_steps`` counts sampled steps (``batch_size * seq_len``
per update) for trainers.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from reprl.agents.base import Agent
from reprl.data.datasets.windows import WindowSampler
from reprl.errors import ConfigError
from reprl.optim.optimizers import check_max_grad_norm
from reprl.optim.schedules import Schedule
from reprl.types import Batch


@dataclass
class TrainerConfig:
    """Options every trainer has."""

    batch_size: int = 256
    """Windows per update (``N``)."""
    seq_len: int = 1
    """Steps per window (``T``; latent-prediction methods use several)."""
    lr: Schedule = field(default_factory=lambda: Schedule("constant", 3e-4))
    """Adam learning rate (a number or a schedule over training)."""
    adam_eps: float = 1e-8
    """Adam epsilon."""
    max_grad_norm: float | None = 10.0
    """Global gradient-norm clipping (None: off)."""
    debug: bool = False
    """Run one batch through forward, backward, update and one evaluation, then stop."""

    def validate(self, path: str) -> None:
        """Positive sizes and gradient-norm bound."""
        check_max_grad_norm(self.max_grad_norm, path)
        if self.batch_size < 2 or self.seq_len < 1:
            raise ConfigError(f"{path}: batch_size >= 2 and seq_len >= 1")


class TrainerModel(nn.Module):
    """``backbone -> head``; ``head`` is set by the trainer (it may read the backbone)."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head: nn.Module = nn.Identity()

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The backbone's features ``(N, T, D)`` of observations ``(N, T, ...)``."""
        return self.backbone(obs)


class Trainer(Agent):
    """Base of the trainers: the agents' update (sum -> backward -> all-reduce -> clip ->
    step), checkpointing and learning-rate schedule; no acting."""

    def act(self, *args: Any, **kwargs: Any) -> Any:
        """Trainers do not act."""
        raise TypeError(f"{type(self).__name__} is a pretraining trainer: it does not act")

    def make_source(self, envs: Any, seed: int, device: torch.device) -> Any:
        """Trainers learn from an :class:`OfflineSource` built from the dataset."""
        raise TypeError("trainers learn from an offline dataset, not from envs")


class OfflineSource:
    """Batches of ``(N, T)`` windows of the dataset's train split, one per iteration."""

    def __init__(self, sampler: WindowSampler, batch_size: int, device: torch.device) -> None:
        self.sampler, self.batch_size, self.device = sampler, batch_size, device

    def next(self, algo: Any) -> Batch:
        """The next batch (on ``device``)."""
        batch = self.sampler.sample(self.batch_size, "train")
        return batch if self.device.type == "cpu" else batch.to(self.device, non_blocking=True)

    def minibatches(self, batch: Batch, *args: Any) -> Iterator[Batch]:
        """The whole batch once."""
        yield batch

    def pop_metrics(self) -> dict[str, float]:
        """No env metrics."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """The sampler's generator, for exact resume."""
        return {"rng": self.sampler.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.sampler.rng = np.random.default_rng()
        self.sampler.rng.bit_generator.state = state["rng"]

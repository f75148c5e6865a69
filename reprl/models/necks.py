"""Necks: temporal integration of features ``(N, T, D) -> (N, T, D')``.

A neck is built as ``cls(cfg, in_dim)``. Recurrent necks (LSTM, GRU) carry a state across
calls and reset it to :meth:`Neck.initial_state` wherever ``is_first`` is true, *before*
processing that step, so stepping ``T = 1`` at a time equals running the whole sequence.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from reprl.registry import NECKS

Info = dict[str, torch.Tensor]


class Neck(nn.Module, ABC):
    """Interface of every neck.

    ``forward(x (N, T, D), state, is_first (N, T) bool or None) -> ((y (N, T, out_dim),
    new_state), info)``. ``is_first = None`` means no episode starts inside ``x`` (the
    given state continues). ``state`` is whatever :meth:`initial_state` returns (``None`` for
    stateless necks), batched along N.
    """

    out_dim: int
    """Feature size D' of the output."""

    @abstractmethod
    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> Any:
        """State at the start of an episode for ``batch_size`` streams (None if stateless)."""

    @abstractmethod
    def forward(
        self, x: torch.Tensor, state: Any, is_first: torch.Tensor | None = None
    ) -> tuple[tuple[torch.Tensor, Any], Info]:
        """``(N, T, D)`` features -> ``((N, T, out_dim), new_state), info``."""


@dataclass
class IdentityNeckConfig:
    """No temporal integration: features pass through unchanged (feed-forward agents)."""


@NECKS.register("identity", IdentityNeckConfig)
class IdentityNeck(Neck):
    """Pass features through; stateless (state is always ``None``)."""

    def __init__(self, cfg: IdentityNeckConfig, in_dim: int) -> None:
        super().__init__()
        self.out_dim = in_dim

    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> None:
        """Stateless: ``None``."""

    def forward(
        self, x: torch.Tensor, state: Any = None, is_first: torch.Tensor | None = None
    ) -> tuple[tuple[torch.Tensor, None], Info]:
        """Return ``((x, None), {})`` after checking ``x`` is ``(N, T, out_dim)``."""
        if x.dim() != 3 or x.shape[2] != self.out_dim:
            raise ValueError(f"neck input must be shaped (N, T, {self.out_dim}), got {x.shape}")
        return (x, None), {}

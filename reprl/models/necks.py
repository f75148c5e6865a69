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

from reprl.errors import ConfigError
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

    def state_to_batch(self, state: Any) -> torch.Tensor:
        """A (non-None) state as one tensor ``(N, 1, ...)``, so a Batch can carry it in its
        ``extras`` and minibatches can index it along N with the other fields."""
        raise TypeError(f"{type(self).__name__} is stateless: it has no state to store")

    def state_from_batch(self, packed: torch.Tensor) -> Any:
        """Inverse of :meth:`state_to_batch`."""
        raise TypeError(f"{type(self).__name__} is stateless: it has no state to restore")


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


# ---------------------------------------------------------------------------------------------
# recurrent necks
# ---------------------------------------------------------------------------------------------
@dataclass
class RecurrentNeckConfig:
    """An LSTM or GRU core (CleanRL ppo_atari_lstm.py: one layer of 128 units)."""

    hidden_size: int = 128
    """Units H per layer; also the output feature size D'."""
    num_layers: int = 1
    """Stacked recurrent layers L."""

    def validate(self, path: str) -> None:
        """Reject sizes below 1."""
        for name in ("hidden_size", "num_layers"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{path}.{name}: must be >= 1, got {getattr(self, name)}")


class RecurrentNeck(Neck):
    """Shared body of the LSTM and GRU necks over PyTorch's fused ``nn.LSTM`` / ``nn.GRU``.

    The state is a tuple of ``num_parts`` tensors shaped ``(L, N, H)`` internally (LSTM:
    ``(h, c)``, GRU: ``(h,)``); the subclasses expose it as PyTorch does (a tuple for the LSTM,
    a tensor for the GRU). A stream resets to the zero initial state before every step where
    ``is_first`` is true. The sequence is cut at every time step where some stream resets and
    each run between cuts is one fused call (cuDNN on GPUs), with the resetting streams zeroed
    at the run's first step: the same recurrence as stepping one step at a time with masking
    (CleanRL ppo_atari_lstm.py's per-step loop), but one call instead of T while no episode
    starts. Stepping and running the sequence agree to float rounding (the fused call batches
    the input projection over time), which ``tests/models/test_necks.py`` checks.

    Initialisation as CleanRL ppo_atari_lstm.py: weights orthogonal (gain 1), biases 0. It is
    done here, always: ``model.orthogonal_init`` covers Linear/Conv layers only.
    """

    rnn_cls: type[nn.RNNBase]
    num_parts: int

    def __init__(self, cfg: RecurrentNeckConfig, in_dim: int) -> None:
        super().__init__()
        self.in_dim, self.hidden_size, self.num_layers = in_dim, cfg.hidden_size, cfg.num_layers
        self.rnn = self.rnn_cls(in_dim, cfg.hidden_size, cfg.num_layers, batch_first=True)
        self.out_dim = cfg.hidden_size
        for name, param in self.rnn.named_parameters():
            if "bias" in name:
                nn.init.zeros_(param)
            else:
                nn.init.orthogonal_(param, 1.0)

    # The public state <-> the tuple of (L, N, H) parts.
    def _parts(self, state: Any) -> tuple[torch.Tensor, ...]:
        raise NotImplementedError

    def _state(self, parts: tuple[torch.Tensor, ...]) -> Any:
        raise NotImplementedError

    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> Any:
        """Zeros, ``(L, N, H)`` per part."""
        shape = (self.num_layers, batch_size, self.hidden_size)
        return self._state(tuple(torch.zeros(shape, device=device) for _ in range(self.num_parts)))

    def forward(
        self, x: torch.Tensor, state: Any, is_first: torch.Tensor | None = None
    ) -> tuple[tuple[torch.Tensor, Any], Info]:
        """``x (N, T, in_dim)`` from ``state`` -> ``((y (N, T, H), state after step T-1), {})``."""
        if x.dim() != 3 or x.shape[2] != self.in_dim:
            raise ValueError(f"neck input must be shaped (N, T, {self.in_dim}), got {x.shape}")
        n, t = x.shape[:2]
        parts = self._parts(state)
        expected = (self.num_layers, n, self.hidden_size)
        if len(parts) != self.num_parts or any(p.shape != expected for p in parts):
            shapes = [tuple(p.shape) for p in parts]
            raise ValueError(
                f"neck state must be {self.num_parts} x (L, N, H) = {expected}, got {shapes}"
            )
        if is_first is None:
            bounds = [0, t]
        else:
            if is_first.shape != (n, t):
                raise ValueError(
                    f"is_first must be shaped (N, T) = {(n, t)}, got {tuple(is_first.shape)}"
                )
            cuts = is_first[:, 1:].any(0).nonzero()[:, 0] + 1 if t > 1 else []
            bounds = [0, *(int(c) for c in cuts), t]
        ys = []
        for start, stop in zip(bounds[:-1], bounds[1:]):
            if is_first is not None:  # reset before the step: zero (initial) state
                reset = is_first[:, start].view(1, n, 1)
                parts = tuple(p.masked_fill(reset, 0.0) for p in parts)
            y, out = self.rnn(x[:, start:stop], self._state(parts))
            parts = self._parts(out)
            ys.append(y)
        y = ys[0] if len(ys) == 1 else torch.cat(ys, dim=1)
        return (y, self._state(parts)), {}

    def state_to_batch(self, state: Any) -> torch.Tensor:
        """The state as one tensor ``(N, 1, num_parts, L, H)``, per stream (Batch layout)."""
        return torch.stack(self._parts(state), 0).permute(2, 0, 1, 3).unsqueeze(1)

    def state_from_batch(self, packed: torch.Tensor) -> Any:
        """Inverse of :meth:`state_to_batch`."""
        if packed.dim() != 5 or packed.shape[1:] != (
            1,
            self.num_parts,
            self.num_layers,
            self.hidden_size,
        ):
            raise ValueError(
                f"packed state must be (N, 1, {self.num_parts}, {self.num_layers}, "
                f"{self.hidden_size}), got {tuple(packed.shape)}"
            )
        return self._state(tuple(packed[:, 0].permute(1, 2, 0, 3).contiguous().unbind(0)))


@NECKS.register("lstm", RecurrentNeckConfig)
class LSTMNeck(RecurrentNeck):
    """LSTM core (Hochreiter & Schmidhuber 1997); state ``(h, c)``, each ``(L, N, H)``."""

    rnn_cls = nn.LSTM
    num_parts = 2

    def _parts(self, state: Any) -> tuple[torch.Tensor, ...]:
        return tuple(state)

    def _state(self, parts: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        return parts[0], parts[1]


@NECKS.register("gru", RecurrentNeckConfig)
class GRUNeck(RecurrentNeck):
    """GRU core (Cho et al. 2014); state ``h`` shaped ``(L, N, H)``."""

    rnn_cls = nn.GRU
    num_parts = 1

    def _parts(self, state: Any) -> tuple[torch.Tensor, ...]:
        return (state,)

    def _state(self, parts: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return parts[0]

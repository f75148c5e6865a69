"""Target networks for off-policy agents: one component for hard and Polyak updates.

Two update rules share this class:

- ``mode="hard"``: copy the online weights into the target every ``period`` steps (DQN:
  Mnih et al. 2015, "Human-level control through deep reinforcement learning", the target
  network ``Q_hat`` reset to ``Q`` every C steps).
- ``mode="polyak"``: ``target = tau * online + (1 - tau) * target`` every ``period`` steps
  (DDPG: Lillicrap et al. 2016, "Continuous control with deep reinforcement learning",
  section 3; also TD3 and SAC). ``tau = 1`` is a hard copy.

Buffers (e.g. batch-norm running statistics) are always copied as they are, never averaged.

The target is a deep copy of the online module with ``requires_grad_(False)``, kept in eval
mode. :class:`TargetNetwork` is deliberately *not* an ``nn.Module``: assigning it to an
agent's module does not register the target's weights as trainable parameters, nor let a
parent's ``.train()`` / ``.eval()`` switch the target's mode, so target values do not depend
on whether the online network is currently in train or eval mode.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from reprl.errors import ConfigError, choices_hint

MODES = ("hard", "polyak")


@dataclass
class TargetConfig:
    """How a target network follows its online network."""

    mode: str = "hard"
    """hard (copy every ``period`` steps, DQN) or polyak (average every ``period`` steps,
    DDPG/TD3/SAC)."""
    period: int = 1
    """Update the target every this many steps (DQN: e.g. 8000 env steps; SAC/TD3: 1)."""
    tau: float = 1.0
    """Polyak coefficient in (0, 1]: ``target = tau * online + (1 - tau) * target``
    (ignored by hard mode; SAC/TD3: 0.005)."""

    def validate(self, path: str) -> None:
        """Reject a bad mode, a tau outside (0, 1] or a period below 1."""
        if self.mode not in MODES:
            raise ConfigError(
                f"{path}.mode: unknown '{self.mode}'; {choices_hint(self.mode, MODES)}"
            )
        if not 0.0 < self.tau <= 1.0:
            raise ConfigError(f"{path}.tau: must be in (0, 1], got {self.tau}")
        if self.period < 1:
            raise ConfigError(f"{path}.period: must be >= 1, got {self.period}")


class TargetNetwork:
    """A frozen copy of ``online`` updated by :meth:`update` (hard copy or Polyak average).

    Args:
        online: the module being trained; it is only read, never modified.
        mode, period, tau: see :class:`TargetConfig` (validated the same way).
    """

    def __init__(
        self, online: nn.Module, mode: str = "hard", period: int = 1, tau: float = 1.0
    ) -> None:
        self.cfg = TargetConfig(mode=mode, period=period, tau=tau)
        self.cfg.validate("target")
        self.online = online
        self.target = copy.deepcopy(online)
        self.target.requires_grad_(False)
        self.target.eval()
        # The copy made above is the synchronisation of step 0.
        self.last_update = 0
        self._online_params = list(online.parameters())
        self._target_params = list(self.target.parameters())
        self._online_buffers = list(online.buffers())
        self._target_buffers = list(self.target.buffers())
        if len(self._online_params) != len(self._target_params) or len(self._online_buffers) != len(
            self._target_buffers
        ):
            raise ValueError("online and target modules have different parameters or buffers")

    @classmethod
    def from_config(cls, online: nn.Module, cfg: TargetConfig) -> TargetNetwork:
        """Build from a :class:`TargetConfig`."""
        return cls(online, mode=cfg.mode, period=cfg.period, tau=cfg.tau)

    def due(self, step: int) -> bool:
        """Whether ``step`` starts a new period since the last update.

        Periods are the buckets ``[k * period, (k + 1) * period)``, so updates stay on the grid
        of multiples of ``period`` even if ``step`` advances by more than one between calls
        (e.g. by the number of environments), and a repeated call with the same step is a
        no-op.
        """
        return step // self.cfg.period > self.last_update // self.cfg.period

    @torch.no_grad()
    def sync(self) -> None:
        """Hard copy of all parameters and buffers, whatever the mode."""
        torch._foreach_copy_(self._target_params, self._online_params)
        if self._target_buffers:
            torch._foreach_copy_(self._target_buffers, self._online_buffers)

    @torch.no_grad()
    def update(self, step: int) -> bool:
        """Update the target if ``step`` is due (see :meth:`due`); return whether it was."""
        if not self.due(step):
            return False
        if self.cfg.mode == "hard" or self.cfg.tau == 1.0:
            self.sync()
        else:
            # target <- target + tau * (online - target) = tau * online + (1 - tau) * target
            torch._foreach_lerp_(self._target_params, self._online_params, self.cfg.tau)
            if self._target_buffers:
                torch._foreach_copy_(self._target_buffers, self._online_buffers)
        self.last_update = step
        return True

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Call the target module under ``torch.no_grad()``."""
        with torch.no_grad():
            return self.target(*args, **kwargs)

    __call__ = forward

    def state_dict(self) -> dict[str, Any]:
        """The target's weights and the step of its last update."""
        return {"target": self.target.state_dict(), "last_update": self.last_update}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.target.load_state_dict(state["target"])
        self.last_update = int(state["last_update"])


class EMATargets:
    """Mixin of modules whose target networks (:class:`TargetNetwork`, e.g. BYOL's and SPR's
    EMA encoders) step once after every optimiser update: ``after_update`` counts updates and
    updates :meth:`ema_targets`; ``extra_state``/``load_extra_state`` checkpoint the count.
    The targets' weights are registered submodules, saved with ``state_dict``."""

    updates: int = 0
    target: TargetNetwork

    def ema_targets(self) -> list[TargetNetwork]:
        """The targets to step (default: ``self.target``)."""
        return [self.target]

    def after_update(self) -> None:
        """One EMA step of every target."""
        self.updates += 1
        for target in self.ema_targets():
            target.update(self.updates)

    def extra_state(self) -> dict[str, Any]:
        """The update count."""
        return {"updates": self.updates}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`extra_state`."""
        self.updates = int(state["updates"])
        for target in self.ema_targets():
            target.last_update = self.updates

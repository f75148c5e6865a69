"""The vector-env interface every backend (sync, async, ale, envpool) implements.

Semantics (one for all backends, so the rollout code has one path):
- ``reset()`` returns the first observations, shape ``(num_envs, *obs_shape)``.
- ``step(actions)`` returns a :class:`StepResult` for the transition just taken.
- Next-step autoreset (gymnasium 1.x default, envpool, ale-py's vector env): when
  ``terminated | truncated`` is true for env i, ``obs[i]`` is the *final* observation of the
  ended episode; the next ``step`` ignores env i's action and returns the first observation of
  a new episode with reward 0 and both flags false. The rollout stores that step as
  ``valid = False``.
- ``episode_return`` / ``episode_length`` are NaN / 0 except for envs whose episode ended on
  this step, where they hold the *raw* game return (before reward clipping or normalisation,
  and over the whole game when episodic-life is on) and the episode length in agent steps.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from reprl.types import EnvSpec

if TYPE_CHECKING:
    from reprl.envs.config import EnvConfig


@dataclass
class StepResult:
    """One vector step. Arrays are shaped ``(num_envs, ...)``."""

    obs: np.ndarray
    reward: np.ndarray  # float32
    terminated: np.ndarray  # bool
    truncated: np.ndarray  # bool
    episode_return: np.ndarray  # float64, NaN where no episode ended
    episode_length: np.ndarray  # int64, 0 where no episode ended


class VectorEnv(ABC):
    """A batch of ``num_envs`` environments of one id, stepped together."""

    num_envs: int
    spec: EnvSpec
    config: EnvConfig | None = None
    """The config :func:`reprl.envs.make_vector_env` made this env from (None otherwise)."""

    @abstractmethod
    def reset(self, seed: int | None = None) -> np.ndarray:
        """Reset all envs (env i seeded ``seed + i``) and return the first observations."""

    @abstractmethod
    def step(self, actions: np.ndarray) -> StepResult:
        """Step every env with ``actions`` (shape ``(num_envs, ...)``)."""

    @abstractmethod
    def close(self) -> None:
        """Release workers and emulators."""

    def state_dict(self) -> dict[str, Any]:
        """Checkpointable state (normaliser statistics, and the envs' own state where the
        backend can capture it without pickling). Default: nothing."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        return None

    def set_training(self, training: bool) -> None:
        """Freeze (False) or update (True) running statistics of normalisers."""
        return None

    def normalizer_state(self) -> dict[str, Any] | None:
        """Running normalisation statistics (plain data) to share with evaluation envs, or
        None when observations and rewards are not normalised."""
        return None

    def load_normalizer_state(self, state: dict[str, Any] | None) -> None:
        """Load :meth:`normalizer_state` of another env (evaluation: frozen); a no-op for envs
        without a normaliser."""
        return None

    def render_first(self) -> np.ndarray:
        """An RGB frame ``(H, W, 3)`` uint8 of env 0 (envs made with ``render=True``)."""
        raise NotImplementedError(f"{type(self).__name__} cannot render")

    @property
    def last_obs(self) -> np.ndarray | None:
        """Observations returned by the latest ``reset``/``step``, restored by
        :meth:`load_state_dict` on exact resume (None before the first reset)."""
        return None

    def supports_exact_resume(self) -> bool:
        """True when :meth:`state_dict` captures the envs' own state (emulator, RNG, time-limit
        counters, pending autoresets), so that a restored env steps on exactly as the saved one
        would have. When False, a resumed run must ``reset()`` its envs (warn the user)."""
        return False

    def __enter__(self) -> VectorEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

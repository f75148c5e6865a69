"""Typed data carriers shared by every part of reprl.

Layout is ``(N, T, ...)`` everywhere: N independent streams (envs, sequences, samples),
T time steps. Acting is ``T = 1``; a shuffled PPO minibatch of B transitions is ``(B, 1)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np
import torch


@dataclass(frozen=True)
class EnvSpec:
    """What an agent needs to know about an environment (after all wrappers)."""

    env_id: str
    """The id the env was made from (e.g. ``CartPole-v1``)."""
    obs_shape: tuple[int, ...]
    """Shape of one observation, without the (N, T) dims."""
    obs_dtype: np.dtype
    """``uint8`` for images (kept uint8 until the network), ``float32`` otherwise."""
    action_type: str
    """``"discrete"`` or ``"continuous"``."""
    num_actions: int = 0
    """Number of discrete actions (discrete only)."""
    action_shape: tuple[int, ...] = ()
    """Shape of one continuous action (continuous only)."""
    action_low: np.ndarray | None = None
    """Lower bounds of continuous actions."""
    action_high: np.ndarray | None = None
    """Upper bounds of continuous actions."""
    reward_threshold: float | None = None
    """Evaluation mean return at which the task counts as solved."""
    max_episode_steps: int | None = None
    """Time limit (agent steps) applied to every episode."""
    action_meanings: tuple[str, ...] = ()
    """Human-readable labels of discrete actions (Atari's NOOP, FIRE, ...)."""
    frame_stack: int = 1
    """Frames stacked along the observation's first axis (Atari: 4; ``obs_shape[0]`` is
    ``frame_stack * channels``). Replay stores each frame once and rebuilds stacks by index."""

    @property
    def discrete(self) -> bool:
        """True for a discrete action space."""
        return self.action_type == "discrete"


ENV_FIELDS = ("obs", "action", "reward", "terminated", "truncated", "is_first", "valid")


@dataclass
class Batch:
    """Environment data plus algorithm-made ``extras``, every tensor shaped ``(N, T, ...)``.

    - ``obs[n, t]`` is the observation the action ``action[n, t]`` was taken in;
      ``reward/terminated/truncated[n, t]`` describe that transition.
    - ``terminated`` (no bootstrap) and ``truncated`` (bootstrap from the final observation)
      are never merged.
    - Vector envs reset the step *after* an episode ends (gymnasium's next-step autoreset, as
      envpool and ale-py's vector env do): that step's action is ignored, so it is stored with
      ``valid = False`` and its ``obs`` is the final observation of the ended episode.
      ``is_first[n, t]`` marks the first observation of an episode.
    - ``extras`` holds what algorithms add (``value``, ``log_prob``, ``advantage``, ...),
      each declared by the algorithm that needs it.
    """

    obs: torch.Tensor
    action: torch.Tensor
    reward: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    is_first: torch.Tensor
    valid: torch.Tensor
    extras: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        """``(N, T)``."""
        n, t = self.reward.shape[:2]
        return n, t

    def tensors(self) -> Iterator[tuple[str, torch.Tensor]]:
        """All (name, tensor) pairs, environment fields first then extras."""
        for name in ENV_FIELDS:
            yield name, getattr(self, name)
        yield from self.extras.items()

    def apply(self, fn: Any) -> Batch:
        """Return a new Batch with ``fn`` applied to every tensor."""
        env = {f.name: fn(getattr(self, f.name)) for f in fields(self) if f.name != "extras"}
        return Batch(**env, extras={k: fn(v) for k, v in self.extras.items()})

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """Move every tensor to ``device``."""
        return self.apply(lambda x: x.to(device, non_blocking=non_blocking))

    def flatten(self) -> Batch:
        """Fold T into N: ``(N, T, ...) -> (N*T, 1, ...)`` (for shuffled minibatches)."""
        return self.apply(lambda x: x.reshape(-1, 1, *x.shape[2:]))

    def index(self, idx: torch.Tensor | slice) -> Batch:
        """Select rows along N (``idx`` indexes the first dim)."""
        return self.apply(lambda x: x[idx])

    def require(self, *names: str) -> None:
        """Fail loudly if an algorithm's required extras are missing."""
        missing = [n for n in names if n not in self.extras]
        if missing:
            raise KeyError(f"Batch is missing extras {missing}; has {sorted(self.extras)}")

    def replace(self, **changes: Any) -> Batch:
        """A copy with some fields replaced."""
        return replace(self, **changes)


def check_nt(x: torch.Tensor, name: str, ndim_min: int = 2) -> None:
    """Assert ``x`` has at least the ``(N, T)`` dims (module boundary contract)."""
    if x.dim() < ndim_min:
        raise ValueError(f"{name} must be shaped (N, T, ...), got {tuple(x.shape)}")

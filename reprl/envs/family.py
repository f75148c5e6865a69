"""Environment families: how to make one gymnasium env of an id, and how to describe it.

Each family module (``classic``, ``atari``, ...) registers one :class:`EnvFamily` object in the
``ENVS`` registry under every id it serves. Families with too many ids to list (Atari's ~100
games) register a pattern name such as ``ALE/<Game>-v5`` and answer :meth:`EnvFamily.matches`.
Vector backends only ever call :meth:`EnvFamily.make`, so one family works with every backend.
"""

from __future__ import annotations

import difflib
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

from reprl.envs.snapshot import capture_env, restore_env
from reprl.errors import ConfigError
from reprl.registry import ENVS
from reprl.types import EnvSpec

if TYPE_CHECKING:
    from reprl.envs.config import EnvConfig

EVAL_TIME_LIMIT = 1000
"""Agent steps after which evaluation episodes of envs without a time limit are truncated."""


class EnvFamily(ABC):
    """A family of environments made the same way (classic control, Box2D, Atari, ...)."""

    name: str = ""
    """Family name shown in error messages."""
    lives_key: str | None = None
    """Key of the remaining-lives counter in step infos (Atari), read for episodic life."""
    exact_resume: bool = False
    """True when every piece of the env's state is plain data that
    :mod:`reprl.envs.snapshot` can capture (no Box2D worlds, no emulators)."""

    @abstractmethod
    def ids(self) -> list[str]:
        """Every env id this family serves (for ``reprl list envs``)."""

    @abstractmethod
    def make(
        self, env_id: str, cfg: EnvConfig, evaluation: bool = False, render: bool = False
    ) -> gym.Env:
        """One gymnasium env with this family's wrappers (time limit included), rendering RGB
        frames when ``render`` (``render_mode="rgb_array"``); observations
        are float32 vectors or uint8 images. Score-changing transforms (Atari reward clipping,
        episodic life) are *not* applied here: the vector env applies them (see
        :meth:`score_transforms`) so that episode statistics stay raw on every backend."""

    def capture(self, env: gym.Env) -> dict[str, Any]:
        """The env's full state as plain data (when :attr:`exact_resume`)."""
        return capture_env(env)

    def restore(self, env: gym.Env, state: dict[str, Any]) -> None:
        """Restore what :meth:`capture` returned into an env made by :meth:`make`."""
        restore_env(env, state)

    def matches(self, env_id: str) -> bool:
        """True if this family serves ``env_id`` without it being registered by name."""
        return False

    def check_config(self, env_id: str, cfg: EnvConfig) -> None:
        """Raise ConfigError for options that cannot work with this family (default: none)."""
        return None

    def score_transforms(self, cfg: EnvConfig, evaluation: bool) -> tuple[bool, bool]:
        """``(episodic_life, clip_rewards)`` the vector env applies for training."""
        return False, False

    def action_meanings(self, env: gym.Env, env_id: str) -> tuple[str, ...]:
        """Human-readable labels of discrete actions."""
        return ()

    def frame_stack(self, env_id: str, cfg: EnvConfig) -> int:
        """Frames stacked along the observation's first axis (default 1: no stacking)."""
        return 1

    def time_limit(self, env_id: str, cfg: EnvConfig, evaluation: bool) -> int | None:
        """Time limit in agent steps: the config's, else the registered one, else (evaluation
        only) :data:`EVAL_TIME_LIMIT`."""
        if cfg.max_episode_steps is not None:
            return cfg.max_episode_steps
        registered = gym.spec(env_id).max_episode_steps if env_id in gym.registry else None
        if registered is None and evaluation:
            return EVAL_TIME_LIMIT
        return registered

    def reward_threshold(self, env: gym.Env, cfg: EnvConfig) -> float | None:
        """The config's threshold, else gymnasium's."""
        if cfg.reward_threshold is not None:
            return cfg.reward_threshold
        spec = env.spec
        return (
            None if spec is None or spec.reward_threshold is None else float(spec.reward_threshold)
        )

    def spec(self, env_id: str, cfg: EnvConfig, evaluation: bool = False) -> EnvSpec:
        """Describe the env after all wrappers by making one and closing it."""
        env = self.make(env_id, cfg, evaluation)
        try:
            return spec_from_env(
                env,
                env_id=env_id,
                reward_threshold=self.reward_threshold(env, cfg),
                max_episode_steps=self.time_limit(env_id, cfg, evaluation),
                action_meanings=self.action_meanings(env, env_id),
                frame_stack=self.frame_stack(env_id, cfg),
            )
        finally:
            env.close()


def spec_from_env(env: gym.Env, **fields: Any) -> EnvSpec:
    """An :class:`EnvSpec` from an env's observation and action spaces."""
    obs_space, act_space = env.observation_space, env.action_space
    if not isinstance(obs_space, gym.spaces.Box):
        raise TypeError(f"{fields['env_id']}: observations must be a Box, got {obs_space}")
    common = dict(obs_shape=tuple(obs_space.shape), obs_dtype=np.dtype(obs_space.dtype), **fields)
    if isinstance(act_space, gym.spaces.Discrete):
        return EnvSpec(action_type="discrete", num_actions=int(act_space.n), **common)
    if isinstance(act_space, gym.spaces.Box):
        return EnvSpec(
            action_type="continuous",
            action_shape=tuple(act_space.shape),
            action_low=act_space.low.astype(np.float32),
            action_high=act_space.high.astype(np.float32),
            **common,
        )
    raise TypeError(f"{fields['env_id']}: unsupported action space {act_space}")


def _families() -> list[EnvFamily]:
    """Every registered family object, once each, in registration order."""
    seen: dict[int, EnvFamily] = {}
    for name in ENVS.names():
        family = ENVS.get(name).obj
        seen.setdefault(id(family), family)
    return list(seen.values())


def list_env_ids() -> list[str]:
    """Every env id reprl can make (sorted), Atari games included."""
    return sorted({env_id for family in _families() for env_id in family.ids()})


def resolve_env(env_id: str) -> EnvFamily:
    """The family serving ``env_id``; unknown ids raise a ConfigError with the valid choices."""
    if env_id in ENVS:
        return ENVS.get(env_id).obj
    for family in _families():
        if family.matches(env_id):
            return family
    # Close matches come from every id (Atari games included); the valid list names the
    # registered ids and patterns rather than ~200 Atari ids.
    close = difflib.get_close_matches(env_id, list_env_ids(), n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise ConfigError(f"unknown env id '{env_id}'; {hint}valid: {', '.join(ENVS.names())}")

"""Gymnasium's classic-control, Box2D (LunarLander) and toy-text (Taxi) environments.

All observations are float32 vectors: Taxi's discrete state becomes a 500-dim one-hot vector.
Classic control and Taxi keep their whole state in plain attributes, so the sync and async
backends can snapshot them for exact resume; Box2D worlds cannot be captured.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import warnings
from functools import cache
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
from gymnasium.envs.registration import EnvSpec
from gymnasium.error import DependencyNotInstalled
from gymnasium.wrappers import DtypeObservation

from reprl.envs.family import EnvFamily
from reprl.envs.wrappers import MaskObservation, OneHotObservation
from reprl.errors import EnvError
from reprl.registry import ENVS

if TYPE_CHECKING:
    from reprl.envs.config import EnvConfig

_ACTION_MEANINGS: dict[str, tuple[str, ...]] = {
    "CartPole-v1": ("PUSH_LEFT", "PUSH_RIGHT"),
    "Acrobot-v1": ("TORQUE_NEG", "TORQUE_ZERO", "TORQUE_POS"),
    "MountainCar-v0": ("ACCEL_LEFT", "NOOP", "ACCEL_RIGHT"),
    "LunarLander-v3": ("NOOP", "FIRE_LEFT", "FIRE_MAIN", "FIRE_RIGHT"),
    "Taxi": ("SOUTH", "NORTH", "EAST", "WEST", "PICKUP", "DROPOFF"),
}


def _mode(render: bool) -> str | None:
    if not render:
        return None
    # Offscreen rgb_array rendering through pygame needs no sound card or display: keep SDL
    # from probing them (ALSA/XDG noise on headless machines) unless the user chose drivers.
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    return "rgb_array"


def _make_float32(
    spec: str | EnvSpec, cfg: EnvConfig, limit: int | None, render: bool, **extra: Any
) -> gym.Env:
    """``gym.make`` with the time limit, the config's kwargs and float32 observations.

    The passive env checker is off: it only checks the first step and costs a wrapper call on
    every step after that; reprl's own tests check each family instead.
    """
    kwargs = {**extra, **cfg.kwargs}
    env = gym.make(
        spec, max_episode_steps=limit, disable_env_checker=True, render_mode=_mode(render), **kwargs
    )
    space = env.observation_space
    if isinstance(space, gym.spaces.Box) and space.dtype != np.float32:
        env = DtypeObservation(env, np.float32)
    if cfg.obs_mask:  # a partially observable variant (memory tasks)
        env = MaskObservation(env, cfg.obs_mask)
    return env


class ClassicControlFamily(EnvFamily):
    """CartPole, Acrobot, MountainCar (discrete) and Pendulum, MountainCarContinuous."""

    name = "classic_control"
    exact_resume = True
    IDS = (
        "CartPole-v1",
        "Acrobot-v1",
        "MountainCar-v0",
        "Pendulum-v1",
        "MountainCarContinuous-v0",
    )

    def ids(self) -> list[str]:
        return list(self.IDS)

    def make(
        self, env_id: str, cfg: EnvConfig, evaluation: bool = False, render: bool = False
    ) -> gym.Env:
        return _make_float32(env_id, cfg, self.time_limit(env_id, cfg, evaluation), render)

    def action_meanings(self, env: gym.Env, env_id: str) -> tuple[str, ...]:
        return _ACTION_MEANINGS.get(env_id, ())


@cache
def _lunar_lander_spec(gym_id: str) -> EnvSpec:
    """Gymnasium's registered spec of ``gym_id`` once Box2D (an optional extra) imports."""
    with warnings.catch_warnings():
        # Box2D's SWIG bindings warn on import under Python 3.11+ (swig/swig#2881).
        warnings.filterwarnings("ignore", "builtin type .* has no __module__", DeprecationWarning)
        try:
            importlib.import_module("gymnasium.envs.box2d.lunar_lander")
        except DependencyNotInstalled as exc:
            raise EnvError(f"{gym_id} needs Box2D: pip install 'reprl[box2d]' ({exc})") from None
    return gym.spec(gym_id)


class LunarLanderFamily(EnvFamily):
    """LunarLander-v3 (discrete) and its continuous variant (Box2D: no exact resume)."""

    name = "box2d"

    def ids(self) -> list[str]:
        return ["LunarLander-v3", "LunarLanderContinuous-v3"]

    def _gym_id(self, env_id: str) -> tuple[str, dict[str, Any]]:
        """The registered id and extra kwargs (older gymnasium lacks the continuous id)."""
        if env_id == "LunarLanderContinuous-v3" and env_id not in gym.registry:
            return "LunarLander-v3", {"continuous": True}
        return env_id, {}

    def time_limit(self, env_id: str, cfg: EnvConfig, evaluation: bool) -> int | None:
        return super().time_limit(self._gym_id(env_id)[0], cfg, evaluation)

    def make(
        self, env_id: str, cfg: EnvConfig, evaluation: bool = False, render: bool = False
    ) -> gym.Env:
        gym_id, extra = self._gym_id(env_id)
        spec = _lunar_lander_spec(gym_id)
        limit = self.time_limit(env_id, cfg, evaluation)
        return _make_float32(spec, cfg, limit, render, **extra)

    def action_meanings(self, env: gym.Env, env_id: str) -> tuple[str, ...]:
        if isinstance(env.action_space, gym.spaces.Discrete):
            return _ACTION_MEANINGS["LunarLander-v3"]
        return ()


class TaxiFamily(EnvFamily):
    """Taxi with one-hot float32 observations. ``Taxi-v3`` and ``Taxi-v4`` both map to the
    version the installed gymnasium has (gymnasium 1.3 raises DeprecatedEnv for v3)."""

    name = "toy_text"
    exact_resume = True

    def ids(self) -> list[str]:
        return ["Taxi-v3", "Taxi-v4"]

    @staticmethod
    def _gym_id() -> str:
        return "Taxi-v4" if "Taxi-v4" in gym.registry else "Taxi-v3"

    def time_limit(self, env_id: str, cfg: EnvConfig, evaluation: bool) -> int | None:
        return super().time_limit(self._gym_id(), cfg, evaluation)

    def make(
        self, env_id: str, cfg: EnvConfig, evaluation: bool = False, render: bool = False
    ) -> gym.Env:
        limit = self.time_limit(env_id, cfg, evaluation)
        return OneHotObservation(_make_float32(self._gym_id(), cfg, limit, render))

    def action_meanings(self, env: gym.Env, env_id: str) -> tuple[str, ...]:
        return _ACTION_MEANINGS["Taxi"]


CLASSIC_CONTROL = ClassicControlFamily()
LUNAR_LANDER = LunarLanderFamily()
TAXI = TaxiFamily()

for _family in (CLASSIC_CONTROL, LUNAR_LANDER, TAXI):
    for _env_id in _family.ids():
        ENVS.add(_env_id, _family)

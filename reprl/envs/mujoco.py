"""Gymnasium's MuJoCo v5 locomotion and manipulation tasks (Todorov et al. 2012), from states.

Observations are the tasks' float32 vectors; ``env.kwargs`` go to ``gymnasium.make`` (e.g.
``exclude_current_positions_from_observation``, ``ctrl_cost_weight``); time limits and reward
thresholds are gymnasium's registered ones (1000 steps, Reacher 50, Pusher 100).

mujoco is an optional extra (``pip install 'reprl[mujoco]'``) imported only when an env is
made, so ``import reprl`` never pays for it. Two process-wide settings are made then, once:

- ``MUJOCO_GL`` defaults to ``egl`` (else ``osmesa``) when the user has not chosen a backend:
  headless machines have no display for GLFW, the default of mujoco and dm_control. It must be
  set before mujoco's or dm_control's rendering modules are imported (DrQ-v2's ``train.py``
  sets it the same way); each async worker sets it again in its own process.
- MuJoCo's warnings (e.g. the cheetah models' deprecated ``settotalmass``, printed at every
  compile) are logged once per distinct message through :mod:`logging` instead of MuJoCo's
  default handler, which prints them *and appends them to* ``MUJOCO_LOG.TXT`` *in the working
  directory*.

Exact resume: a MuJoCo env's state is ``mjData``. MuJoCo's integration state
(``mj_getState(mjSTATE_INTEGRATION)``: time, qpos, qvel, act, warm-start accelerations, controls,
applied forces, mocap poses, user data, plugin state) is what the simulation needs to continue,
but some tasks also read quantities *derived* from it before stepping, which after ``mj_step``
still describe the start of the last substep (Ant reads ``xpos``, Humanoid ``xipos``), so
``mj_forward`` would not reproduce them. :meth:`MuJoCoFamily.capture` therefore also saves every
fixed-size ``mjData`` array (those whose size does not depend on the current contacts); the
contact and constraint arrays are recomputed at the start of every step. The generic snapshot
adds the wrappers' counters (TimeLimit) and the env's ``np_random`` (reset noise). A test checks
that a restored env continues bit-identically.
"""

from __future__ import annotations

import ctypes.util
import importlib.util
import logging
import os
from functools import cache
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

from reprl.envs.family import EnvFamily
from reprl.errors import EnvError
from reprl.registry import ENVS

if TYPE_CHECKING:
    from reprl.envs.config import EnvConfig

INSTALL_HINT = "pip install 'reprl[mujoco]'"

_LOG = logging.getLogger(__name__)

_SEEN_WARNINGS: set[str] = set()

_NOT_STATE = frozenset({"plugin_data"})
"""``mjData`` arrays never captured: ``plugin_data`` holds native pointers."""


def require_mujoco(env_id: str, module: str = "mujoco") -> None:
    """Raise an EnvError with the install hint when ``module`` is not installed."""
    if importlib.util.find_spec(module) is None:
        raise EnvError(f"{env_id} needs {module}: {INSTALL_HINT}")


@cache
def configure_mujoco() -> None:
    """Choose a headless OpenGL backend and route MuJoCo's warnings to :mod:`logging`, once per
    process, before mujoco/dm_control rendering is imported (see the module docstring)."""
    if "MUJOCO_GL" not in os.environ:
        if ctypes.util.find_library("EGL"):
            os.environ["MUJOCO_GL"] = "egl"
        elif ctypes.util.find_library("OSMesa"):
            os.environ["MUJOCO_GL"] = "osmesa"
    route_mujoco_warnings()


def _log_mujoco_warning(message: str) -> None:
    """MuJoCo's warning callback: log each distinct message once per process."""
    if message not in _SEEN_WARNINGS:
        _SEEN_WARNINGS.add(message)
        _LOG.warning("MuJoCo: %s", message)


def route_mujoco_warnings() -> None:
    """Send MuJoCo's warnings to :func:`_log_mujoco_warning` (no ``MUJOCO_LOG.TXT``).
    dm_control installs its own handler when imported (absl logging, repeated for every model
    it compiles), so the dm_control family calls this again after importing it."""
    import mujoco

    mujoco.set_mju_user_warning(_log_mujoco_warning)


class Float32Observation(gym.ObservationWrapper):
    """Box observations cast to float32 (MuJoCo computes in float64), bounds included, so
    gymnasium does not warn about lowered precision as its ``DtypeObservation`` does."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        space = env.observation_space
        assert isinstance(space, gym.spaces.Box), space
        low, high = space.low.astype(np.float32), space.high.astype(np.float32)
        self.observation_space = gym.spaces.Box(low, high, space.shape, np.float32)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        """A float32 copy."""
        return observation.astype(np.float32)


def _fixed_size_fields(model: Any, data: Any) -> list[str]:
    """Names of the ``mjData`` arrays whose shape depends only on the model: a fresh
    ``MjData`` has them at the same shape (contact and constraint arrays are sized by the
    current contacts, and are rebuilt at the start of every step)."""
    import mujoco

    fresh = mujoco.MjData(model)
    names = []
    for name in dir(data):
        if name.startswith("_") or name in _NOT_STATE:
            continue
        value = getattr(data, name)
        if (
            isinstance(value, np.ndarray)
            and value.size
            and value.shape == getattr(fresh, name).shape
        ):
            names.append(name)
    return names


def capture_physics(model: Any, data: Any) -> dict[str, Any]:
    """MuJoCo's integration state plus every fixed-size ``mjData`` array, as numpy arrays."""
    import mujoco

    kind = mujoco.mjtState.mjSTATE_INTEGRATION
    integration = np.empty(mujoco.mj_stateSize(model, kind), np.float64)
    mujoco.mj_getState(model, data, integration, kind)
    arrays = {name: getattr(data, name).copy() for name in _fixed_size_fields(model, data)}
    return {"integration": integration, "arrays": arrays}


def restore_physics(model: Any, data: Any, state: dict[str, Any]) -> None:
    """Restore what :func:`capture_physics` returned into the same model's ``mjData``."""
    import mujoco

    kind = mujoco.mjtState.mjSTATE_INTEGRATION
    integration = np.asarray(state["integration"], np.float64)
    if integration.shape != (mujoco.mj_stateSize(model, kind),):
        raise EnvError(f"cannot restore MuJoCo state of size {integration.size} into this model")
    mujoco.mj_setState(model, data, integration, kind)
    for name, saved in state["arrays"].items():
        target = getattr(data, name)
        saved = np.asarray(saved)
        if target.shape != saved.shape:
            raise EnvError(f"cannot restore mjData.{name}: shape {saved.shape} != {target.shape}")
        target[...] = saved


class MuJoCoFamily(EnvFamily):
    """Gymnasium's MuJoCo v5 tasks with float32 observations and exact resume."""

    name = "mujoco"
    exact_resume = True
    IDS = (
        "HalfCheetah-v5",
        "Hopper-v5",
        "Walker2d-v5",
        "Ant-v5",
        "Humanoid-v5",
        "HumanoidStandup-v5",
        "Swimmer-v5",
        "InvertedPendulum-v5",
        "InvertedDoublePendulum-v5",
        "Reacher-v5",
        "Pusher-v5",
    )

    def ids(self) -> list[str]:
        return list(self.IDS)

    def make(
        self, env_id: str, cfg: EnvConfig, evaluation: bool = False, render: bool = False
    ) -> gym.Env:
        require_mujoco(env_id)
        configure_mujoco()
        # The passive env checker only checks the first step and costs a call on every step.
        env = gym.make(
            env_id,
            max_episode_steps=self.time_limit(env_id, cfg, evaluation),
            disable_env_checker=True,
            render_mode="rgb_array" if render else None,
            **cfg.kwargs,
        )
        return Float32Observation(env)

    def capture(self, env: gym.Env) -> dict[str, Any]:
        """Wrapper counters and the env's RNG (generic snapshot) plus the physics state."""
        state = super().capture(env)
        unwrapped = env.unwrapped
        state["physics"] = capture_physics(unwrapped.model, unwrapped.data)  # type: ignore[attr-defined]
        return state

    def restore(self, env: gym.Env, state: dict[str, Any]) -> None:
        super().restore(env, state)
        unwrapped = env.unwrapped
        restore_physics(unwrapped.model, unwrapped.data, state["physics"])  # type: ignore[attr-defined]


MUJOCO = MuJoCoFamily()

for _env_id in MUJOCO.ids():
    ENVS.add(_env_id, MUJOCO)

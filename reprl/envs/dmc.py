"""The DeepMind Control Suite (Tassa et al. 2018) through a gymnasium adapter.

Ids are ``dmc/<domain>-<task>`` (``dmc/walker-walk``, ``dmc/ball_in_cup-catch``): every task
in ``dm_control.suite.ALL_TASKS`` is served (domain and task names contain underscores, never
hyphens); ``reprl list envs`` shows the benchmarking set. Options live in ``env.dmc``
(:class:`reprl.envs.config.DMCConfig`); ``env.kwargs`` go to the suite's task function (e.g.
``fully_observable`` for manipulator).

Observations:

- from states: the task's observation dict flattened to one float32 vector, entries in
  dm_control's own order (the task's ``OrderedDict``), each raveled, as dmc2gym and DrQ-v2 do.
- from pixels: the chosen camera's RGB frame as uint8 ``(3, height, width)``, the last
  ``frame_stack`` frames stacked along the channel axis, ``(3 * frame_stack, height, width)``.
  After a reset the older frames are zeros, not copies of the first frame: reprl's replay
  buffer stores each frame once and recognises episode starts by that zero padding (see
  :mod:`reprl.data.replay`). The spec's ``frame_stack`` says how many frames are stacked.

Action repeat (PlaNet, Hafner et al. 2019; DrQ, Kostrikov et al. 2020): an agent step repeats
its action ``action_repeat`` control steps, sums their rewards and stops early if the episode
ends; a pixel observation is rendered once per agent step.

Episode ends: dm_control ends every suite episode after its time limit (1000 control steps for
all but LQR) with discount 1: reprl reports that as ``truncated`` (bootstrap), and as
``terminated`` only an end with discount 0 (a task's own termination). The agent-step limit is
``ceil(control_steps / action_repeat)``: the step that crosses the limit is cut short, as the
action-repeat loop stops at the episode end. With ``env.max_episode_steps`` (or for evaluation
of the limitless LQR tasks) dm_control's limit is lifted and a gymnasium ``TimeLimit`` counts
agent steps instead.

Seeding: the task draws initial states from its ``numpy.random.RandomState``;
``reset(seed=s)`` reseeds it, which is what ``suite.load(..., task_kwargs={"random": s})``
does, so equal seeds give equal episodes. No exact resume: part of a task's state lives
outside ``mjData`` (targets written into the model, e.g. reacher's) and is not captured.

dm_control is imported when an env is first made (``pip install 'reprl[mujoco]'``), after
:func:`reprl.envs.mujoco.configure_mujoco` has chosen a headless OpenGL backend (``MUJOCO_GL``,
egl by default): dm_control reads it when it is imported, in each async worker too.
"""

from __future__ import annotations

import math
import os
from functools import cache
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
from gymnasium.wrappers import TimeLimit

from reprl.envs.family import EVAL_TIME_LIMIT, EnvFamily
from reprl.envs.mujoco import configure_mujoco, require_mujoco, route_mujoco_warnings
from reprl.errors import ConfigError, EnvError, choices_hint
from reprl.registry import ENVS, VECTOR_BACKENDS

if TYPE_CHECKING:
    from reprl.envs.config import DMCConfig, EnvConfig

PREFIX = "dmc/"
RENDER_SIZE = 256
"""Height and width of ``render()`` frames (videos), as DrQ-v2's video recorder."""
_NO_GL = frozenset({"off", "disable", "disabled", "false", "0"})
"""``MUJOCO_GL`` values that turn dm_control's rendering off."""


@cache
def _suite() -> Any:
    """``dm_control.suite``, imported once the OpenGL backend is chosen."""
    require_mujoco(f"{PREFIX}<domain>-<task>", "dm_control")
    configure_mujoco()
    try:
        from dm_control import suite
    except (ImportError, RuntimeError) as exc:
        # dm_control starts the OpenGL backend named by MUJOCO_GL when imported, even for
        # state observations; EGL fails there without a usable device or Mesa's EGL.
        gl = os.environ.get("MUJOCO_GL")
        raise EnvError(
            f"dm_control failed to import with MUJOCO_GL={gl}: {exc}; try MUJOCO_GL=osmesa "
            "(software rendering, Debian libosmesa6) or, from states only, MUJOCO_GL=disable"
        ) from None

    route_mujoco_warnings()  # dm_control's import replaced the handler with absl logging
    return suite


def env_id_of(domain: str, task: str) -> str:
    """The reprl id of a suite task: ``dmc/<domain>-<task>``."""
    return f"{PREFIX}{domain}-{task}"


def parse_env_id(env_id: str) -> tuple[str, str]:
    """``dmc/walker-walk`` -> ``("walker", "walk")``; ConfigError if not of that form."""
    domain, sep, task = env_id.removeprefix(PREFIX).partition("-")
    if not env_id.startswith(PREFIX) or not sep or not domain or not task:
        raise ConfigError(f"'{env_id}' is not a DeepMind Control id (dmc/<domain>-<task>)")
    return domain, task


def default_camera(domain: str) -> int:
    """DrQ-v2's camera: 2 for quadruped (its camera 0 is a distant global view), else 0."""
    return 2 if domain == "quadruped" else 0


_STEP_LIMITS: dict[tuple[str, str, str], float] = {}


def _step_limit(domain: str, task: str, kwargs: dict[str, Any]) -> float:
    """Control steps after which dm_control ends an episode (``inf`` without a time limit).
    dm_control keeps it as ``Environment._step_limit`` (no public accessor) and ends the
    episode on the first step count >= it. Read once per process and task kwargs (loading a
    task takes ~50 ms)."""
    key = (domain, task, repr(sorted(kwargs.items())))
    if key not in _STEP_LIMITS:
        env = _suite().load(domain, task, task_kwargs=dict(kwargs))
        _STEP_LIMITS[key] = float(env._step_limit)
        env.physics.free()
    return _STEP_LIMITS[key]


class DMCEnv(gym.Env[np.ndarray, np.ndarray]):
    """One suite task as a gymnasium env (see the module docstring for the semantics).

    Args:
        domain, task: the suite task (``"walker"``, ``"walk"``).
        options: observation and action-repeat options (frame stacking is a wrapper).
        task_kwargs: keyword arguments of the suite's task function (``time_limit`` ...).
        render_mode: ``"rgb_array"`` to render :data:`RENDER_SIZE` frames, else None.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(
        self,
        domain: str,
        task: str,
        options: DMCConfig,
        task_kwargs: dict[str, Any] | None = None,
        render_mode: str | None = None,
    ) -> None:
        self._env = _suite().load(domain, task, task_kwargs=dict(task_kwargs or {}))
        self._pixels = options.from_pixels
        self._height, self._width = options.height, options.width
        self._camera = default_camera(domain) if options.camera_id is None else options.camera_id
        self._repeat = options.action_repeat
        self.render_mode = render_mode
        physics = self._env.physics
        if self._pixels or render_mode is not None:
            self._check_camera(physics, env_id_of(domain, task))
        control_dt = self._env.control_timestep() * self._repeat
        self.metadata = {**self.metadata, "render_fps": round(1.0 / control_dt)}

        if self._pixels:
            shape = (3, self._height, self._width)
            self.observation_space = gym.spaces.Box(0, 255, shape, np.uint8)
        else:
            size = sum(int(np.prod(s.shape)) for s in self._env.observation_spec().values())
            self.observation_space = gym.spaces.Box(-np.inf, np.inf, (size,), np.float32)
        spec = self._env.action_spec()
        low = np.broadcast_to(spec.minimum, spec.shape).astype(np.float32)
        high = np.broadcast_to(spec.maximum, spec.shape).astype(np.float32)
        self.action_space = gym.spaces.Box(low, high, dtype=np.float32)

    def _check_camera(self, physics: Any, env_id: str) -> None:
        """Bad camera ids and sizes beyond the offscreen buffer fail here, naming the key."""
        ncam = int(physics.model.ncam)
        if not -1 <= self._camera < ncam:
            raise ConfigError(
                f"env.dmc.camera_id {self._camera} does not exist in {env_id}: valid -1 (free "
                f"camera) .. {ncam - 1}"
            )
        buffer = physics.model.vis.global_
        for key, size, limit in (
            ("height", self._height, buffer.offheight),
            ("width", self._width, buffer.offwidth),
        ):
            if size > limit:
                raise ConfigError(f"env.dmc.{key} {size} exceeds {env_id}'s frame buffer {limit}")

    def _observe(self, time_step: Any) -> np.ndarray:
        if self._pixels:
            frame = self._env.physics.render(self._height, self._width, camera_id=self._camera)
            return np.ascontiguousarray(frame.transpose(2, 0, 1))  # HWC -> CHW
        parts = [np.asarray(v, np.float32).ravel() for v in time_step.observation.values()]
        return np.concatenate(parts)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode; ``seed`` reseeds the task's RandomState (initial states)."""
        super().reset(seed=seed)
        if seed is not None:
            self._env.task.random.seed(seed)
        return self._observe(self._env.reset()), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Repeat ``action``; the reward is the sum over the control steps taken."""
        action = np.asarray(action, np.float64)
        reward = 0.0
        for _ in range(self._repeat):
            time_step = self._env.step(action)
            reward += time_step.reward or 0.0
            if time_step.last():
                break
        # dm_control: discount 0 ends the episode for good; the time limit ends it with
        # discount 1 (the value of the next state still counts).
        terminated = time_step.last() and time_step.discount == 0.0
        truncated = time_step.last() and not terminated
        return self._observe(time_step), reward, terminated, truncated, {}

    def render(self) -> np.ndarray | None:  # type: ignore[override]
        """RGB ``(RENDER_SIZE, RENDER_SIZE, 3)`` frame of the observation camera."""
        if self.render_mode != "rgb_array":
            return None
        return self._env.physics.render(RENDER_SIZE, RENDER_SIZE, camera_id=self._camera)

    def close(self) -> None:
        """Free the physics and its rendering context now, not at interpreter exit."""
        self._env.physics.free()


class ChannelFrameStack(gym.Wrapper):
    """The last ``k`` frames ``(C, H, W)`` concatenated along channels, ``(k * C, H, W)``,
    oldest first; after a reset the ``k - 1`` older frames are zeros."""

    def __init__(self, env: gym.Env, k: int) -> None:
        super().__init__(env)
        space = env.observation_space
        assert isinstance(space, gym.spaces.Box) and len(space.shape) == 3, space
        self._channels = space.shape[0]
        self._frames = np.zeros((k * space.shape[0], *space.shape[1:]), space.dtype)
        self.observation_space = gym.spaces.Box(0, 255, self._frames.shape, space.dtype)

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict[str, Any]]:
        """Zeros, then the first frame last."""
        obs, info = self.env.reset(**kwargs)
        self._frames[:] = 0
        self._frames[-self._channels :] = obs
        return self._frames.copy(), info

    def step(self, action: Any) -> tuple[np.ndarray, Any, bool, bool, dict[str, Any]]:
        """Drop the oldest frame, append the new one."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        c = self._channels
        self._frames[:-c] = self._frames[c:].copy()
        self._frames[-c:] = obs
        return self._frames.copy(), reward, terminated, truncated, info


class DMCFamily(EnvFamily):
    """Every DeepMind Control Suite task as ``dmc/<domain>-<task>``."""

    name = "dm_control"

    def ids(self) -> list[str]:
        """The suite's benchmarking tasks (``matches`` serves the others too)."""
        try:
            suite = _suite()
        except EnvError:  # not installed (or no OpenGL backend): the family lists nothing
            return []
        return [env_id_of(domain, task) for domain, task in suite.BENCHMARKING]

    def matches(self, env_id: str) -> bool:
        """True for suite tasks; other ``dmc/`` ids raise a ConfigError with close matches."""
        if not env_id.startswith(PREFIX):
            return False  # decided without importing dm_control
        suite = _suite()
        valid = [env_id_of(d, t) for d, t in suite.ALL_TASKS]
        if env_id not in valid:
            raise ConfigError(f"unknown env id '{env_id}'; {choices_hint(env_id, valid)}")
        return True

    def check_config(self, env_id: str, cfg: EnvConfig) -> None:
        d = cfg.dmc
        for key in ("height", "width", "action_repeat", "frame_stack"):
            if getattr(d, key) < 1:
                raise ConfigError(f"env.dmc.{key} must be >= 1, got {getattr(d, key)}")
        if d.camera_id is not None and d.camera_id < -1:
            raise ConfigError(
                f"env.dmc.camera_id must be >= -1 (free camera) or null, got {d.camera_id}"
            )
        for key, use in (("random", "seed"), ("time_limit", "env.max_episode_steps")):
            if key in cfg.kwargs:
                raise ConfigError(f"env.kwargs.{key} is set by reprl for {env_id}; use {use}")
        if d.from_pixels:
            backend = VECTOR_BACKENDS.get(cfg.backend).obj
            if not getattr(backend, "can_render", False):
                raise ConfigError(
                    f"env.dmc.from_pixels: backend '{cfg.backend}' cannot render {env_id}; "
                    "use backend sync or async"
                )
            gl = os.environ.get("MUJOCO_GL", "")
            if gl.strip().lower() in _NO_GL:
                raise ConfigError(
                    f"env.dmc.from_pixels needs OpenGL rendering but MUJOCO_GL={gl} turns it "
                    "off; set MUJOCO_GL=egl (or osmesa)"
                )

    def frame_stack(self, env_id: str, cfg: EnvConfig) -> int:
        return cfg.dmc.frame_stack if cfg.dmc.from_pixels else 1

    def _natural_limit(self, env_id: str, cfg: EnvConfig) -> int | None:
        """Agent steps after which dm_control's own time limit ends an episode."""
        control_steps = _step_limit(*parse_env_id(env_id), cfg.kwargs)
        if math.isinf(control_steps):
            return None
        return math.ceil(math.ceil(control_steps) / cfg.dmc.action_repeat)

    def time_limit(self, env_id: str, cfg: EnvConfig, evaluation: bool) -> int | None:
        """The config's limit, else dm_control's in agent steps, else (evaluation only)
        :data:`EVAL_TIME_LIMIT`."""
        if cfg.max_episode_steps is not None:
            return cfg.max_episode_steps
        natural = self._natural_limit(env_id, cfg)
        return EVAL_TIME_LIMIT if natural is None and evaluation else natural

    def reward_threshold(self, env: gym.Env, cfg: EnvConfig) -> float | None:
        """The config's threshold; the suite documents none (returns are at most 1000)."""
        return cfg.reward_threshold

    def make(
        self, env_id: str, cfg: EnvConfig, evaluation: bool = False, render: bool = False
    ) -> gym.Env:
        domain, task = parse_env_id(env_id)
        limit = self.time_limit(env_id, cfg, evaluation)
        native = limit == self._natural_limit(env_id, cfg)
        task_kwargs = dict(cfg.kwargs)
        if not native:  # reprl's TimeLimit counts agent steps instead of dm_control
            task_kwargs["time_limit"] = float("inf")
        env: gym.Env = DMCEnv(
            domain, task, cfg.dmc, task_kwargs, render_mode="rgb_array" if render else None
        )
        if cfg.dmc.from_pixels and cfg.dmc.frame_stack > 1:
            env = ChannelFrameStack(env, cfg.dmc.frame_stack)
        if not native and limit is not None:
            env = TimeLimit(env, limit)
        return env


DMC = DMCFamily()
ENVS.add(f"{PREFIX}<domain>-<task>", DMC)

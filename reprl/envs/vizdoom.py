"""ViZDoom (Kempka et al. 2016) scenarios through vizdoom 1.3.2's gymnasium envs.

Ids: every ``Vizdoom<Scenario>-v1`` that ``vizdoom.gymnasium_wrapper`` registers with discrete
actions (``VizdoomBasic-v1``, ``VizdoomDeadlyCorridor-v1``, ``VizdoomDefendCenter-v1``,
``VizdoomDefendLine-v1``, ``VizdoomHealthGathering-v1``, ``VizdoomHealthGatheringSupreme-v1``,
``VizdoomMyWayHome-v1``, ``VizdoomPredictPosition-v1``, ``VizdoomTakeCover-v1``,
``VizdoomDeathmatch-v1``, ``VizdoomBasicAudio-v1``, ``VizdoomBasicNotifications-v1``). The
``-MultiBinary-v1`` variants (several buttons at once as a MultiBinary space) and the
deprecated ``-v0`` ids are not served.

Observations are Atari-like so the NatureCNN and PPO Atari presets apply unchanged: the
screen buffer (320x240 RGB) of the last tic of each agent step, converted to grayscale and
resized to 84x84 (``cv2.INTER_AREA``, as gymnasium's AtariPreprocessing), the last 4 stacked
along the first axis and zero-padded after a reset: uint8 ``(4, 84, 84)``. Other buffers of a
scenario (game variables, audio, notifications) are dropped. Frame skip is vizdoom's own
(``DoomGame.make_action(action, tics)`` repeats the action and sums the rewards), 4 tics by
default as in the scenarios' usual setting (the vizdoom gymnasium and Sample Factory examples).

Actions are vizdoom's ``Discrete`` ones: every combination of at most ``max_buttons_pressed``
binary buttons (1 as registered: NOOP plus one action per button); their names are the
``action_meanings``, ``"NOOP"``, ``"ATTACK"`` or ``"MOVE_LEFT+ATTACK"`` for combinations
(``+`` because button names contain underscores). Deathmatch also has delta buttons
(continuous turning/looking): they are held at 0, leaving its 17 binary buttons.

Episode ends: vizdoom reports a scenario's timeout (``episode_timeout`` tics, e.g. 300 for
Basic: 75 agent steps at frame skip 4) as both terminated and truncated; reprl reports it as
truncated only, so the learner bootstraps there, and terminated only for a real end (death,
goal). At an episode's end vizdoom has no screen and returns zeros; the last frame is kept
instead so that truncated episodes bootstrap from a real observation. ``max_episode_steps`` of
the spec is the scenario's timeout in agent steps; scenarios without one (DefendLine,
TakeCover) end on death, with :data:`EVAL_TIME_LIMIT` for evaluation.

Options (``env.kwargs``, validated by :meth:`VizdoomFamily.check_config`): ``frame_skip``
(tics per agent step, 4), ``frame_stack`` (4), ``screen_size`` (84), ``rgb`` (false: RGB
frames ``(3 * frame_stack, size, size)`` instead of grayscale), ``max_buttons_pressed``
(1: more allows button combinations), ``clip_rewards`` (false: training rewards clipped to
their sign in the vector env, episode statistics stay raw).

Install with ``pip install --no-deps vizdoom==1.3.2``: vizdoom 1.3.2 requires ``pygame-ce``,
which installs the same ``pygame`` module as reprl's ``pygame`` and overwrites it; vizdoom
needs pygame only for its ``human`` render window (reprl renders ``rgb_array``), which plain
pygame serves too. The game runs headless (vizdoom hides its window in gymnasium envs). No
exact resume: the game's state lives in the C++ engine.
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
from functools import cache
from typing import TYPE_CHECKING, Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium.wrappers import TimeLimit

from reprl.envs.dmc import ChannelFrameStack
from reprl.envs.family import EVAL_TIME_LIMIT, EnvFamily
from reprl.errors import ConfigError, EnvError, choices_hint
from reprl.registry import ENVS

if TYPE_CHECKING:
    from reprl.envs.config import EnvConfig

INSTALL_HINT = (
    "pip install --no-deps vizdoom==1.3.2 (the 'vizdoom' extra's pin; without --no-deps it "
    "pulls pygame-ce, which overwrites reprl's pygame)"
)
DEFAULTS: dict[str, Any] = {
    "frame_skip": 4,
    "frame_stack": 4,
    "screen_size": 84,
    "rgb": False,
    "max_buttons_pressed": 1,
    "clip_rewards": False,
}
"""Keys of ``env.kwargs`` the family accepts, with their defaults."""
_ID = re.compile(r"^Vizdoom\w+-v1$")


def installed() -> bool:
    """True when vizdoom can be imported (without importing it)."""
    return importlib.util.find_spec("vizdoom") is not None


def _registered_ids() -> tuple[str, ...]:
    """The ``Vizdoom<Scenario>-v1`` ids vizdoom registers in gymnasium (imported once).

    Raises EnvError naming the install command when vizdoom is missing or broken."""
    if not installed():
        raise EnvError(f"ViZDoom needs vizdoom: {INSTALL_HINT}")
    return _import_vizdoom()


@cache
def _import_vizdoom() -> tuple[str, ...]:
    """Import vizdoom's gymnasium envs once; the ids they register."""
    # vizdoom's gymnasium env imports pygame (for its human window): keep pygame's banner off.
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    try:
        import vizdoom.gymnasium_wrapper  # noqa: F401  (registers the ids)
    except (ImportError, OSError) as exc:
        raise EnvError(f"ViZDoom needs vizdoom: {INSTALL_HINT} ({exc})") from None
    return tuple(sorted(env_id for env_id in gym.registry if _ID.match(env_id)))


@cache
def _scenario_timeout(env_id: str) -> int:
    """The scenario's ``episode_timeout`` in tics (0: none), read from its config file."""
    _registered_ids()  # registers the ids (gym.spec below)
    import vizdoom

    game = vizdoom.DoomGame()
    scenario = gym.spec(env_id).kwargs["scenario_config_file"]
    game.load_config(os.path.join(vizdoom.scenarios_path, scenario))
    return int(game.get_episode_timeout())


def _scenario_steps(env_id: str, cfg: EnvConfig) -> int | None:
    """The scenario's timeout in agent steps (vizdoom ends the episode there; None: none)."""
    tics = _scenario_timeout(env_id)
    return math.ceil(tics / _options(cfg)["frame_skip"]) if tics else None


@cache
def _single_threaded_opencv() -> Any:
    """cv2 with one thread: its pool slows tiny resizes down and oversubscribes cores when
    several async workers start one each (see reprl.envs.atari)."""
    import cv2

    cv2.setNumThreads(1)
    return cv2


def _options(cfg: EnvConfig) -> dict[str, Any]:
    return {**DEFAULTS, **cfg.kwargs}


class DoomScreen(gym.Wrapper):
    """A vizdoom gymnasium env as a screen-only, discrete-action env: uint8 frames
    ``(C, size, size)`` (C = 1 grayscale or 3 RGB), the binary buttons' ``Discrete`` actions
    (delta buttons held at 0), scenario timeouts as truncation only (see the module docstring).
    """

    def __init__(self, env: gym.Env, screen_size: int, rgb: bool) -> None:
        super().__init__(env)
        self._cv2 = _single_threaded_opencv()
        self._size, self._rgb = screen_size, rgb
        space = env.action_space
        self._delta: np.ndarray | None = None
        if isinstance(space, gym.spaces.Dict):  # binary and delta (continuous) buttons
            self._delta = np.zeros(space["continuous"].shape, np.float32)
            space = space["binary"]
        if not isinstance(space, gym.spaces.Discrete):
            raise EnvError(f"{env.spec}: expected Discrete binary-button actions, got {space}")
        self.action_space = space
        self.observation_space = gym.spaces.Box(
            0, 255, (3 if rgb else 1, screen_size, screen_size), np.uint8
        )
        base = env.unwrapped
        buttons = [b.name for b in base.game.get_available_buttons()]  # type: ignore[attr-defined]
        binary = buttons[base.num_delta_buttons :]  # type: ignore[attr-defined]
        self.action_meanings = tuple(
            "+".join(name for name, on in zip(binary, pressed) if on) or "NOOP"
            for pressed in base.button_map  # type: ignore[attr-defined]
        )
        self._last = np.zeros(self.observation_space.shape, np.uint8)

    def _frame(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """The processed screen; at an episode's end (no screen) the previous frame."""
        if self.env.unwrapped.state is None:  # type: ignore[attr-defined]
            return self._last.copy()
        screen = obs["screen"]
        cv2, size = self._cv2, (self._size, self._size)
        if screen.shape[-1] == 1:  # a GRAY8 scenario
            screen = screen[..., 0] if not self._rgb else np.repeat(screen, 3, axis=-1)
        elif not self._rgb:
            screen = cv2.cvtColor(screen, cv2.COLOR_RGB2GRAY)
        frame = cv2.resize(screen, size, interpolation=cv2.INTER_AREA)
        frame = frame[None] if frame.ndim == 2 else frame.transpose(2, 0, 1)
        self._last = np.ascontiguousarray(frame)
        return self._last.copy()

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        return self._frame(obs), info

    def step(self, action: Any) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        act: Any = int(action)
        if self._delta is not None:
            act = {"binary": act, "continuous": self._delta}
        obs, reward, terminated, truncated, info = self.env.step(act)
        # vizdoom flags a timeout as terminated too; it is a time limit (bootstrap).
        return self._frame(obs), float(reward), terminated and not truncated, truncated, info


class VizdoomFamily(EnvFamily):
    """vizdoom's ``Vizdoom<Scenario>-v1`` gymnasium ids (see the module docstring)."""

    name = "vizdoom"

    def ids(self) -> list[str]:
        try:
            return list(_registered_ids()) if installed() else []
        except EnvError:  # installed but broken: making one says why
            return []

    def matches(self, env_id: str) -> bool:
        return _ID.match(env_id) is not None  # decided without importing vizdoom

    def check_config(self, env_id: str, cfg: EnvConfig) -> None:
        for key in cfg.kwargs:
            if key not in DEFAULTS:
                hint = choices_hint(key, DEFAULTS)
                raise ConfigError(f"env.kwargs.{key}: unknown for {env_id}; {hint}")
        opts = _options(cfg)
        for key in ("frame_skip", "frame_stack", "screen_size", "max_buttons_pressed"):
            value = opts[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"env.kwargs.{key} must be an integer >= 1, got {value!r}")
        for key in ("rgb", "clip_rewards"):
            if not isinstance(opts[key], bool):
                raise ConfigError(f"env.kwargs.{key} must be true or false, got {opts[key]!r}")
        if not installed():  # configs still compose; making the env says what to install
            return
        ids = _registered_ids()
        if env_id not in ids:
            raise ConfigError(f"unknown ViZDoom id '{env_id}'; {choices_hint(env_id, ids)}")

    def score_transforms(self, cfg: EnvConfig, evaluation: bool) -> tuple[bool, bool]:
        """Reward clipping (training only) when ``env.kwargs.clip_rewards``; no episodic life."""
        return False, bool(_options(cfg)["clip_rewards"]) and not evaluation

    def time_limit(self, env_id: str, cfg: EnvConfig, evaluation: bool) -> int | None:
        """Agent steps: the scenario's timeout or the config's limit, whichever is shorter;
        without either, none for training and :data:`EVAL_TIME_LIMIT` for evaluation."""
        limits = [x for x in (cfg.max_episode_steps, _scenario_steps(env_id, cfg)) if x]
        if not limits and evaluation:
            return EVAL_TIME_LIMIT
        return min(limits) if limits else None

    def frame_stack(self, env_id: str, cfg: EnvConfig) -> int:
        return int(_options(cfg)["frame_stack"])

    def make(
        self, env_id: str, cfg: EnvConfig, evaluation: bool = False, render: bool = False
    ) -> gym.Env:
        opts = _options(cfg)
        _registered_ids()
        env: gym.Env = gym.make(
            env_id,
            frame_skip=opts["frame_skip"],
            max_buttons_pressed=opts["max_buttons_pressed"],
            render_mode="rgb_array" if render else None,
            disable_env_checker=True,
        )
        env = DoomScreen(env, opts["screen_size"], opts["rgb"])
        # vizdoom ends episodes at the scenario's timeout itself; a TimeLimit only for a shorter
        # configured limit or for evaluation of scenarios without one.
        limit = self.time_limit(env_id, cfg, evaluation)
        if limit is not None and limit != _scenario_steps(env_id, cfg):
            env = TimeLimit(env, limit)
        # Zero padding after reset, as the Atari and Mario families (and reprl's replay) expect.
        return ChannelFrameStack(env, opts["frame_stack"])

    def action_meanings(self, env: gym.Env, env_id: str) -> tuple[str, ...]:
        return tuple(env.get_wrapper_attr("action_meanings"))


VIZDOOM = VizdoomFamily()
ENVS.add("Vizdoom<Scenario>-v1", VIZDOOM)

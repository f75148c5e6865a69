"""Super Mario Bros (nes-py 8.2.1 + gym-super-mario-bros 7.4.0) as a gymnasium env.

Ids: ``SuperMarioBros-v<k>`` (the whole game, three lives) and
``SuperMarioBros-<world>-<stage>-v<k>`` (one stage; world 1-8, stage 1-4; a lost life ends the
episode), ``k`` the ROM variant of gym-super-mario-bros: 0 vanilla, 1 downsample, 2 pixel,
3 rectangle. Used with RND as in Burda et al. 2018 ("Large-Scale Study of Curiosity-Driven
Learning", Mario with frame skip 4, 84x84 grayscale, 4 stacked frames; "Exploration by Random
Network Distillation").

Observations are Atari-like so the NatureCNN and RND configs apply unchanged: each agent step
repeats the action for 4 emulator steps, summing their rewards, max-pools the last two frames
(against sprite flicker), converts to grayscale and resizes to 84x84 (``cv2.INTER_AREA``, as
gymnasium's AtariPreprocessing); the last 4 frames are stacked, zero-padded after a reset:
uint8 ``(4, 84, 84)``. The reward is gym-super-mario-bros's: x progress, minus the in-game clock,
-25 on death, each emulator step's clipped to [-15, 15], summed over the skipped frames.
Mario's episodes end on their own (the in-game timer kills a stuck Mario): there is no
training time limit unless ``env.max_episode_steps`` sets one; evaluation stops after
:data:`EVAL_TIME_LIMIT` steps.

Options (``env.kwargs``, validated by :meth:`MarioFamily.check_config`):

- ``actions``: ``right_only`` (5), ``simple`` (7, default) or ``complex`` (12): the button
  combinations of gym-super-mario-bros's ``RIGHT_ONLY``/``SIMPLE_MOVEMENT``/``COMPLEX_MOVEMENT``.
- ``sticky_actions``: probability that an emulator step repeats the previous step's buttons
  instead of the agent's (Machado et al. 2018; default 0: the emulator is deterministic).
- ``clip_rewards``: clip training rewards to their sign in the vector env, as for Atari
  (episode statistics stay raw; default false).

Why an adapter of reprl's own instead of nes-py's ``JoypadSpace`` and shimmy's
``GymV26CompatibilityV0``: nes-py 8.2.1 follows the old gym API (``reset`` returns only the
observation and takes no ``seed``; ``step`` returns 4 values), ``JoypadSpace.reset`` accepts no
keyword arguments, and shimmy's compatibility wrapper expects the gym 0.26 API, which would need
gym's own ``EnvCompatibility`` in between. One small gymnasium env that owns the emulator env,
maps discrete actions to controller bytes, does the frame skip and pooling and reports
``terminated`` (death, flag, game over: all real ends) avoids several layers of wrappers per
step and needs neither shimmy nor gym's registry.

NumPy 2 (NEP 50: no value-based casting) breaks both packages where they compute with uint8
scalars and Python ints (``OverflowError: Python integer 1024 out of bounds for uint8``):
nes-py's ROM header sizes (``16 * header[4]`` then ``* 2**10``) and the Mario env's RAM reads
(``ram[0x6d] * 0x100``, ``255 + (255 - y)``, ``np.uint8(a - b)``). reprl fixes them here, in
this process, never in site-packages (:func:`_load_nes`):

- ``nes_py.nes_env.ROM`` (the name ``NESEnv.__init__`` looks up) becomes a subclass whose PRG
  and CHR ROM and PRG RAM sizes are Python ints; the original class is untouched.
- The Mario env is a subclass whose ``ram`` reads single bytes as Python ints (slices and
  writes go to the emulator's memory as before) and whose ``_left_x_position`` wraps with
  ``% 256`` on ints.

Both give exactly NumPy 1's values (there, uint8 scalars promoted to int64 by value), so
rewards, episode ends and infos are what the packages compute under NumPy 1. No exact resume:
the emulator's state lives in C++ (nes-py can back it up in memory but not serialise it).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import re
from functools import cache
from typing import TYPE_CHECKING, Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium.wrappers import FrameStackObservation, TimeLimit

from reprl.envs.family import EnvFamily
from reprl.errors import ConfigError, EnvError, choices_hint
from reprl.registry import ENVS

if TYPE_CHECKING:
    from reprl.envs.config import EnvConfig

INSTALL_HINT = "pip install 'reprl[mario]'"
FRAME_SKIP = 4
"""Emulator steps per agent step (the last two max-pooled)."""
FRAME_STACK = 4
"""Frames stacked in an observation."""
SCREEN_SIZE = 84
"""Observations are SCREEN_SIZE x SCREEN_SIZE grayscale."""
EVAL_TIME_LIMIT = 27_000
"""Agent steps (108k emulator frames at frame skip 4, 30 minutes of play) for evaluation."""
ROM_MODES = ("vanilla", "downsample", "pixel", "rectangle")
"""gym-super-mario-bros's ROM variant of each version number ``v<k>``."""
ACTION_SETS = {
    "right_only": "RIGHT_ONLY",
    "simple": "SIMPLE_MOVEMENT",
    "complex": "COMPLEX_MOVEMENT",
}
"""``env.kwargs.actions`` -> the action list of ``gym_super_mario_bros.actions``."""
KWARGS = ("actions", "clip_rewards", "sticky_actions")
"""Keys of ``env.kwargs`` the family accepts."""

# One bit per button in the byte the NES reads from the controller's shift register
# (A first, Right last: https://www.nesdev.org/wiki/Standard_controller).
_BUTTON_BITS = {
    "A": 0x01,
    "B": 0x02,
    "select": 0x04,
    "start": 0x08,
    "up": 0x10,
    "down": 0x20,
    "left": 0x40,
    "right": 0x80,
    "NOOP": 0x00,
}
_ID = re.compile(r"^SuperMarioBros-(?:([1-8])-([1-4])-)?v([0-3])$")


def parse_env_id(env_id: str) -> tuple[tuple[int, int] | None, str]:
    """``SuperMarioBros-1-2-v1`` -> ``((1, 2), "downsample")``; whole game: ``(None, ...)``."""
    match = _ID.match(env_id)
    if match is None:
        raise ConfigError(
            f"'{env_id}' is not a Super Mario Bros id (SuperMarioBros-v<0-3> or "
            "SuperMarioBros-<world 1-8>-<stage 1-4>-v<0-3>)"
        )
    world, stage, version = match.groups()
    target = None if world is None else (int(world), int(stage))
    return target, ROM_MODES[int(version)]


def installed() -> bool:
    """True when nes-py and gym-super-mario-bros can be imported (without importing them)."""
    return all(
        importlib.util.find_spec(name) is not None for name in ("nes_py", "gym_super_mario_bros")
    )


@contextlib.contextmanager
def _quiet_gym_import() -> Any:
    """Import old ``gym`` (nes-py's base classes) without its side effects: gym 0.26 prints an
    "unmaintained" notice on stderr and overwrites ``SDL_AUDIODRIVER`` and
    ``PYGAME_HIDE_SUPPORT_PROMPT`` in ``os.environ`` when imported (gym/__init__.py)."""
    saved = {key: os.environ.get(key) for key in ("SDL_AUDIODRIVER", "PYGAME_HIDE_SUPPORT_PROMPT")}
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class _IntRAM:
    """The emulator's RAM (a uint8 view of C++ memory) with single bytes read as Python ints.

    gym-super-mario-bros computes positions from RAM bytes with Python ints
    (``ram[0x6d] * 0x100 + ram[0x86]``); under NumPy 2 a uint8 scalar times 0x100 raises
    OverflowError instead of promoting. Slices stay uint8 arrays; writes go to the emulator.
    """

    __slots__ = ("_bytes",)

    def __init__(self, ram: np.ndarray) -> None:
        self._bytes = ram

    def __getitem__(self, key: Any) -> Any:
        value = self._bytes[key]
        return int(value) if isinstance(key, (int, np.integer)) else value

    def __setitem__(self, key: Any, value: Any) -> None:
        self._bytes[key] = value

    def __len__(self) -> int:
        return len(self._bytes)


@cache
def _load_nes() -> tuple[type, dict[str, list[list[str]]]]:
    """The NumPy-2-safe Mario env class and the action sets, imported once per process.

    Raises EnvError naming the install command when the packages are missing or broken.
    """
    try:
        with _quiet_gym_import():
            from gym_super_mario_bros import actions, smb_env
            from nes_py import nes_env
    except (ImportError, OSError) as exc:  # OSError: nes-py's compiled emulator is missing
        raise EnvError(
            f"Super Mario Bros needs nes-py and gym-super-mario-bros: {INSTALL_HINT} ({exc})"
        ) from None

    rom_cls = nes_env.ROM
    if not getattr(rom_cls, "_reprl_int_sizes", False):

        class IntSizeROM(rom_cls):  # type: ignore[misc, valid-type]
            """nes-py's ROM with header sizes as Python ints: ``16 * header[4] * 2**10`` on a
            uint8 raises OverflowError under NumPy 2 (NEP 50)."""

            _reprl_int_sizes = True

            @property
            def prg_rom_size(self) -> int:
                return 16 * int(self.header[4])

            @property
            def chr_rom_size(self) -> int:
                return 8 * int(self.header[5])

            @property
            def prg_ram_size(self) -> int:
                return 8 * max(int(self.header[8]), 1)  # 0 means 1 bank (iNES compatibility)

        nes_env.ROM = IntSizeROM

    class Numpy2SuperMarioBrosEnv(smb_env.SuperMarioBrosEnv):  # type: ignore[misc, valid-type]
        """gym-super-mario-bros's env with RAM bytes read as Python ints (NumPy 2)."""

        def _ram_buffer(self) -> _IntRAM:  # called by NESEnv.__init__ before any RAM read
            return _IntRAM(super()._ram_buffer())

        @property
        def _left_x_position(self) -> int:
            # the original wraps with np.uint8(a - b), which raises for a < b under NumPy 2
            return (self.ram[0x86] - self.ram[0x071C]) % 256

    sets = {name: list(getattr(actions, attr)) for name, attr in ACTION_SETS.items()}
    return Numpy2SuperMarioBrosEnv, sets


@cache
def _single_threaded_opencv() -> Any:
    """cv2 with one thread: its pool slows tiny resizes down and oversubscribes cores when
    several async workers start one each (see reprl.envs.atari)."""
    import cv2

    cv2.setNumThreads(1)
    return cv2


class MarioEnv(gym.Env[np.ndarray, int]):
    """One Super Mario Bros game: discrete actions, frame skip, max-pooled 84x84 grayscale
    frames (uint8 ``(84, 84)``; the family stacks them). See the module docstring.

    Args:
        target: ``(world, stage)`` of a single-stage env, or None for the whole game.
        rom_mode: gym-super-mario-bros's ROM variant (:data:`ROM_MODES`).
        actions: action set name (:data:`ACTION_SETS`).
        sticky_actions: probability that an emulator step repeats the previous buttons.
        render_mode: None or ``"rgb_array"`` (the 240x256 RGB screen).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 60 // FRAME_SKIP}

    def __init__(
        self,
        target: tuple[int, int] | None = None,
        rom_mode: str = "vanilla",
        actions: str = "simple",
        sticky_actions: float = 0.0,
        render_mode: str | None = None,
    ) -> None:
        env_cls, action_sets = _load_nes()
        self._cv2 = _single_threaded_opencv()
        combos = action_sets[actions]
        self._buttons = [_button_byte(combo) for combo in combos]
        self.action_meanings = tuple("_".join(b.upper() for b in combo) for combo in combos)
        self.action_space = gym.spaces.Discrete(len(combos))
        self.observation_space = gym.spaces.Box(0, 255, (SCREEN_SIZE, SCREEN_SIZE), np.uint8)
        self.render_mode = render_mode
        self.sticky_actions = float(sticky_actions)
        self._previous = 0  # controller byte of the last emulator step (sticky actions)
        # Makes the emulator, skips the title screen and backs that state up for resets.
        self.nes = env_cls(rom_mode=rom_mode, lost_levels=False, target=target)
        self._closed = False

    def _frame(self) -> np.ndarray:
        """The current screen in grayscale (a copy: the screen is a view of C++ memory)."""
        return self._cv2.cvtColor(self.nes.screen, self._cv2.COLOR_RGB2GRAY)

    def _observation(self, frame: np.ndarray) -> np.ndarray:
        size = (SCREEN_SIZE, SCREEN_SIZE)
        return self._cv2.resize(frame, size, interpolation=self._cv2.INTER_AREA)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)  # seeds np_random (sticky actions); the emulator has no RNG
        self.nes.reset()
        self._previous = 0
        return self._observation(self._frame()), {}

    def step(self, action: int) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        buttons = self._buttons[int(action)]
        reward, done, info = 0.0, False, {}
        frames = []
        for k in range(FRAME_SKIP):
            pressed = buttons
            if self.sticky_actions > 0.0 and self.np_random.random() < self.sticky_actions:
                pressed = self._previous
            self._previous = pressed
            _, frame_reward, done, info = self.nes.step(pressed)
            reward += frame_reward
            if k >= FRAME_SKIP - 2 or done:
                frames.append(self._frame())
            if done:
                break
        # Max over the last two frames: sprites drawn on alternate frames (Mnih et al. 2015).
        frame = frames[-1] if len(frames) == 1 else np.maximum(frames[-2], frames[-1])
        return self._observation(frame), reward, bool(done), False, info

    def render(self) -> np.ndarray | None:  # type: ignore[override]
        return self.nes.screen.copy() if self.render_mode == "rgb_array" else None

    def close(self) -> None:
        if not getattr(self, "_closed", True):  # nes-py raises when closed twice
            self._closed = True
            self.nes.close()


def _button_byte(combo: list[str]) -> int:
    """The controller byte of a button combination (``["right", "A"]`` -> 0x81)."""
    byte = 0
    for button in combo:
        byte |= _BUTTON_BITS[button]
    return byte


class MarioFamily(EnvFamily):
    """``SuperMarioBros-v<k>`` and ``SuperMarioBros-<world>-<stage>-v<k>`` (nes-py)."""

    name = "super_mario_bros"

    def ids(self) -> list[str]:
        if not installed():
            return []
        stages = [f"SuperMarioBros-{w}-{s}-v0" for w in range(1, 9) for s in range(1, 5)]
        return ["SuperMarioBros-v0", *stages]

    def matches(self, env_id: str) -> bool:
        return _ID.match(env_id) is not None

    def check_config(self, env_id: str, cfg: EnvConfig) -> None:
        parse_env_id(env_id)
        kwargs = cfg.kwargs
        for key in kwargs:
            if key not in KWARGS:
                raise ConfigError(
                    f"env.kwargs.{key}: unknown for {env_id}; {choices_hint(key, KWARGS)}"
                )
        actions = kwargs.get("actions", "simple")
        if actions not in ACTION_SETS:
            hint = choices_hint(str(actions), ACTION_SETS)
            raise ConfigError(f"env.kwargs.actions: unknown '{actions}'; {hint}")
        sticky = kwargs.get("sticky_actions", 0.0)
        if isinstance(sticky, bool) or not isinstance(sticky, (int, float)) or not 0 <= sticky <= 1:
            raise ConfigError(f"env.kwargs.sticky_actions must be in [0, 1], got {sticky!r}")
        if not isinstance(kwargs.get("clip_rewards", False), bool):
            raise ConfigError(
                f"env.kwargs.clip_rewards must be true or false, got {kwargs['clip_rewards']!r}"
            )
        if not installed():
            raise EnvError(f"{env_id} needs nes-py and gym-super-mario-bros: {INSTALL_HINT}")

    def score_transforms(self, cfg: EnvConfig, evaluation: bool) -> tuple[bool, bool]:
        """Reward clipping (training only) when ``env.kwargs.clip_rewards``; no episodic life."""
        return False, bool(cfg.kwargs.get("clip_rewards", False)) and not evaluation

    def time_limit(self, env_id: str, cfg: EnvConfig, evaluation: bool) -> int | None:
        """The config's limit, else none for training and :data:`EVAL_TIME_LIMIT` for evaluation."""
        if cfg.max_episode_steps is not None:
            return cfg.max_episode_steps
        return EVAL_TIME_LIMIT if evaluation else None

    def frame_stack(self, env_id: str, cfg: EnvConfig) -> int:
        return FRAME_STACK

    def make(
        self, env_id: str, cfg: EnvConfig, evaluation: bool = False, render: bool = False
    ) -> gym.Env:
        target, rom_mode = parse_env_id(env_id)
        env: gym.Env = MarioEnv(
            target=target,
            rom_mode=rom_mode,
            actions=cfg.kwargs.get("actions", "simple"),
            sticky_actions=cfg.kwargs.get("sticky_actions", 0.0),
            render_mode="rgb_array" if render else None,
        )
        limit = self.time_limit(env_id, cfg, evaluation)
        if limit is not None:
            env = TimeLimit(env, limit)
        # Zero padding after reset, as the Atari family (and reprl's replay) expects.
        return FrameStackObservation(env, FRAME_STACK, padding_type="zero")

    def action_meanings(self, env: gym.Env, env_id: str) -> tuple[str, ...]:
        return env.unwrapped.action_meanings  # type: ignore[attr-defined,no-any-return]


MARIO = MarioFamily()
ENVS.add("SuperMarioBros-v<k>", MARIO)
ENVS.add("SuperMarioBros-<world>-<stage>-v<k>", MARIO)

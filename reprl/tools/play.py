"""``reprl play``: play an env with the keyboard (or watch a random policy or a trained agent)
in a pygame window, recording every finished episode as an episode dataset.

The env is built as training builds it (the same config and wrappers: frame stacks, reward
clipping, episodic life, normalisation), with one env on the sync backend and rendering on;
the window shows that env's RGB render, and the dataset stores the observations its wrappers
return (:mod:`reprl.data.datasets.episodes`). One env step per frame at ``--fps`` (0: as fast
as possible). Keys (:func:`keymap_for`): ALE-style action meanings from arrows and space;
CartPole, Acrobot and MountainCar from the left/right arrows; other discrete envs from the
number keys. Esc or closing the window ends the session; the episodes finished so far are
saved, an unfinished one is dropped.

:func:`play` takes its event source as an argument (``pygame.event.get`` by default), so tests
script key presses and run headless (``SDL_VIDEODRIVER=dummy``).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from reprl.errors import ConfigError, ReprlError

ARROWS = {"UP": "up", "DOWN": "down", "LEFT": "left", "RIGHT": "right"}
CLASSIC_KEYS: dict[str, tuple[int, int, int | None]] = {
    "CartPole-v1": (0, 1, None),
    "Acrobot-v1": (0, 2, 1),
    "MountainCar-v0": (0, 2, 1),
}
"""(left, right, no key) action indices; None: no key repeats the last action."""
WINDOW_PX = 600
"""Default scale: the render's longer side is scaled to about this many pixels."""


# ----------------------------------------------------------------------------- key bindings
class Keymap:
    """Chooses an action from the keys held and the keys pressed this frame.

    ``action`` returns None when the env should wait (turn-based keymaps without a no-op)."""

    def action(self, held: set[str], pressed: list[str]) -> int | None:
        raise NotImplementedError

    def lines(self) -> list[str]:
        """Human-readable bindings, printed at start."""
        raise NotImplementedError


def _joystick_parts(meaning: str) -> tuple[str, ...] | None:
    """``UPRIGHTFIRE`` -> (``UP``, ``RIGHT``, ``FIRE``); None if not an ALE-style meaning."""
    if meaning == "NOOP":
        return ()
    parts = re.fullmatch(r"(UP|DOWN)?(LEFT|RIGHT)?(FIRE)?", meaning)
    return None if parts is None or not meaning else tuple(p for p in parts.groups() if p)


class JoystickKeymap(Keymap):
    """ALE action meanings (NOOP, FIRE, UP, ..., UPRIGHTFIRE): arrows for the directions,
    space for FIRE, combinations for the combined actions; no key is NOOP. A combination the
    game lacks falls back to its largest part the game has (RIGHT+space in Breakout: RIGHT)."""

    def __init__(self, meanings: tuple[str, ...]) -> None:
        self.meanings = meanings
        self.index = {tuple(_joystick_parts(m) or ()): i for i, m in enumerate(meanings)}
        self.noop = self.index.get((), 0)

    def action(self, held: set[str], pressed: list[str]) -> int | None:
        vertical = [d for d in ("UP", "DOWN") if ARROWS[d] in held]
        horizontal = [d for d in ("LEFT", "RIGHT") if ARROWS[d] in held]
        parts = [
            *(vertical if len(vertical) == 1 else []),  # opposite arrows cancel
            *(horizontal if len(horizontal) == 1 else []),
            *(["FIRE"] if "space" in held else []),
        ]
        for size in range(len(parts), 0, -1):
            for combo in itertools.combinations(parts, size):
                if combo in self.index:
                    return self.index[combo]
        return self.noop

    def lines(self) -> list[str]:
        def keys(meaning: str) -> str:
            parts = _joystick_parts(meaning) or ()
            names = [ARROWS.get(p, "space") for p in parts]
            return "+".join(names) or "(no key)"

        return [f"{keys(m):>16}  {m}" for m in self.meanings]


class ArrowKeymap(Keymap):
    """Left/right arrows for two actions; no key is a no-op action, or repeats the last
    action when the env has none (CartPole must push every step)."""

    def __init__(self, left: int, right: int, none: int | None, meanings: tuple[str, ...]):
        self.left, self.right, self.none, self.meanings = left, right, none, meanings
        self.last = left

    def action(self, held: set[str], pressed: list[str]) -> int | None:
        if ("left" in held) != ("right" in held):
            self.last = self.left if "left" in held else self.right
            return self.last
        return self.last if self.none is None else self.none

    def lines(self) -> list[str]:
        def name(i: int) -> str:
            return self.meanings[i] if i < len(self.meanings) else f"action {i}"

        rows = [f"{'left':>16}  {name(self.left)}", f"{'right':>16}  {name(self.right)}"]
        none = "repeat the last action" if self.none is None else name(self.none)
        return [*rows, f"{'(no key)':>16}  {none}"]


class NumberKeymap(Keymap):
    """Number keys 0-9 for actions 0-9. With a NOOP action, held keys act every frame and no
    key is NOOP; without one the game is turn-based: one step per key press."""

    def __init__(self, num_actions: int, meanings: tuple[str, ...]) -> None:
        self.num_actions, self.meanings = min(num_actions, 10), meanings
        self.noop = meanings.index("NOOP") if "NOOP" in meanings else None

    def action(self, held: set[str], pressed: list[str]) -> int | None:
        if self.noop is None:
            keys = [int(k) for k in pressed if k.isdigit() and int(k) < self.num_actions]
            return keys[0] if keys else None
        keys = sorted(int(k) for k in held if k.isdigit() and int(k) < self.num_actions)
        return keys[0] if keys else self.noop

    def lines(self) -> list[str]:
        rows = [
            f"{i:>16}  {self.meanings[i] if i < len(self.meanings) else f'action {i}'}"
            for i in range(self.num_actions)
        ]
        if self.noop is None:
            rows.append(f"{'(no key)':>16}  wait: one step per key press")
        return rows


DOOM_KEYS = {
    "up": "MOVE_FORWARD",
    "down": "MOVE_BACKWARD",
    "ctrl": "ATTACK",
    "space": "USE",
    "shift": "SPEED",
    **{str(k): f"SELECT_WEAPON{k}" for k in range(1, 8)},
}
"""Doom's default keys: key -> ViZDoom button (left/right: see :class:`VizdoomKeymap`)."""
DOOM_SIDE_BUTTONS = ("TURN_LEFT", "TURN_RIGHT", "MOVE_LEFT", "MOVE_RIGHT")


def _doom_parts(meaning: str) -> tuple[str, ...] | None:
    """``MOVE_LEFT+ATTACK`` -> (``MOVE_LEFT``, ``ATTACK``); None if not button names."""
    if meaning == "NOOP":
        return ()
    parts = tuple(meaning.split("+"))
    return parts if all(re.fullmatch(r"[A-Z][A-Z0-9_]*", p) for p in parts) else None


class VizdoomKeymap(Keymap):
    """ViZDoom action meanings (NOOP, ATTACK, MOVE_LEFT+ATTACK, ...: the buttons each action
    presses) with Doom's default keys: up/down arrows MOVE_FORWARD/MOVE_BACKWARD, left/right
    arrows TURN_LEFT/TURN_RIGHT (MOVE_LEFT/MOVE_RIGHT in scenarios that cannot turn, or with
    alt held: strafe), ctrl ATTACK, space USE, shift SPEED, 1-7 SELECT_WEAPON1-7; no key is
    NOOP. Held keys choose the action whose buttons are exactly the largest subset of the held
    buttons the scenario has (as :class:`JoystickKeymap` falls back: ctrl+left in Basic, which
    has no MOVE_LEFT+ATTACK action, is MOVE_LEFT)."""

    def __init__(self, meanings: tuple[str, ...]) -> None:
        self.meanings = meanings
        self.index = {frozenset(_doom_parts(m) or ()): i for i, m in enumerate(meanings)}
        self.noop = self.index.get(frozenset(), 0)
        self.buttons = {b for m in meanings for b in _doom_parts(m) or ()}

    def _side(self, side: str, strafe: bool) -> str:
        """The button of the left/right arrow: turn, or move where turning is not possible."""
        first, second = (f"MOVE_{side}", f"TURN_{side}")[:: 1 if strafe else -1]
        return first if first in self.buttons or second not in self.buttons else second

    def held_buttons(self, held: set[str]) -> list[str]:
        vertical = [k for k in ("up", "down") if k in held]
        horizontal = [k for k in ("left", "right") if k in held]
        return [
            *(DOOM_KEYS[k] for k in vertical if len(vertical) == 1),  # opposite arrows cancel
            *(self._side(k.upper(), "alt" in held) for k in horizontal if len(horizontal) == 1),
            *(DOOM_KEYS[k] for k in sorted(held) if k in DOOM_KEYS and k not in ("up", "down")),
        ]

    def action(self, held: set[str], pressed: list[str]) -> int | None:
        parts = self.held_buttons(held)
        for size in range(len(parts), 0, -1):
            for combo in itertools.combinations(parts, size):
                if frozenset(combo) in self.index:
                    return self.index[frozenset(combo)]
        return self.noop

    def lines(self) -> list[str]:
        keys = {button: key for key, button in DOOM_KEYS.items()}
        for side in ("LEFT", "RIGHT"):
            for strafe in (False, True):
                keys.setdefault(self._side(side, strafe), f"{'alt+' * strafe}{side.lower()}")

        def names(meaning: str) -> str:
            return "+".join(keys.get(b, "(unbound)") for b in _doom_parts(meaning) or ())

        return [f"{names(m) or '(no key)':>16}  {m}" for m in self.meanings]


def keymap_for(spec: Any) -> Keymap:
    """The keyboard bindings of a discrete-action env (see the module docstring); ViZDoom's
    button-name meanings get Doom's keys (:class:`VizdoomKeymap`)."""
    meanings = tuple(spec.action_meanings)
    if spec.env_id in CLASSIC_KEYS:
        return ArrowKeymap(*CLASSIC_KEYS[spec.env_id], meanings)
    if meanings and "NOOP" in meanings and all(_joystick_parts(m) is not None for m in meanings):
        return JoystickKeymap(meanings)
    doom = [_doom_parts(m) for m in meanings]
    bound = {*DOOM_KEYS.values(), *DOOM_SIDE_BUTTONS}
    if (
        "NOOP" in meanings
        and all(p is not None for p in doom)
        and any(b in bound for p in doom for b in p or ())
    ):
        return VizdoomKeymap(meanings)
    return NumberKeymap(spec.num_actions, meanings)


_KEY_NAMES: dict[int, str] = {}


def _key_name(key: int) -> str | None:
    """pygame key code -> ``up``, ``space``, ``0``-``9`` ... (None: unbound)."""
    import pygame

    if not _KEY_NAMES:
        _KEY_NAMES.update(
            {
                pygame.K_UP: "up",
                pygame.K_DOWN: "down",
                pygame.K_LEFT: "left",
                pygame.K_RIGHT: "right",
                pygame.K_SPACE: "space",
                pygame.K_LCTRL: "ctrl",
                pygame.K_RCTRL: "ctrl",
                pygame.K_LALT: "alt",
                pygame.K_RALT: "alt",
                pygame.K_LSHIFT: "shift",
                pygame.K_RSHIFT: "shift",
            }
        )
        for i in range(10):
            _KEY_NAMES[getattr(pygame, f"K_{i}")] = str(i)
            _KEY_NAMES[getattr(pygame, f"K_KP{i}")] = str(i)
    return _KEY_NAMES.get(key)


class Keyboard:
    """Keys held and pressed, tracked from pygame events (so scripted events work headless).

    Args:
        events: returns the events of one frame (default ``pygame.event.get``).
    """

    def __init__(self, events: Callable[[], Iterable[Any]] | None = None) -> None:
        import pygame

        self._events = events or pygame.event.get
        self.held: set[str] = set()
        self.pressed: list[str] = []
        self.quit = False

    def poll(self) -> None:
        """Read one frame of events (Esc or closing the window sets ``quit``)."""
        import pygame

        self.pressed = []
        for event in self._events():
            if event.type == pygame.QUIT:
                self.quit = True
            elif event.type == pygame.KEYDOWN:
                if event.key == pygame.K_ESCAPE:
                    self.quit = True
                elif (name := _key_name(event.key)) is not None:
                    self.held.add(name)
                    self.pressed.append(name)
            elif event.type == pygame.KEYUP and (name := _key_name(event.key)) is not None:
                self.held.discard(name)


# ----------------------------------------------------------------------------- policies
def action_mask(envs: Any) -> np.ndarray | None:
    """Allowed actions of env 0, where the env provides a mask (Taxi's ``action_mask``).

    The vector-env interface passes no step infos, so the mask is asked of the one gymnasium
    env of the sync backend that :func:`play` builds; None for every other env."""
    core = getattr(envs, "env", envs)  # NormalizeVectorEnv wraps the backend
    serial = getattr(core, "_serial", None)
    if serial is None or len(serial.envs) != 1:
        return None
    base = serial.envs[0].unwrapped
    if not callable(getattr(base, "action_mask", None)) or not hasattr(base, "s"):
        return None
    return np.asarray(base.action_mask(base.s), bool)


class RawReward:
    """The game's reward of each step before clipping/normalisation, from the backend's raw
    episode return (None where the backend keeps none)."""

    def __init__(self, envs: Any) -> None:
        core = getattr(envs, "env", envs)
        self._core = core if hasattr(core, "_ep_return") and hasattr(core, "_done") else None
        self._before = 0.0

    def before_step(self) -> None:
        if self._core is not None:  # an env that ended last step restarts its return at 0
            self._before = 0.0 if self._core._done[0] else float(self._core._ep_return[0])

    def after_step(self) -> float | None:
        return None if self._core is None else float(self._core._ep_return[0]) - self._before


# ----------------------------------------------------------------------------- play
@dataclass
class PlayRequest:
    """What ``reprl play`` was asked (see :func:`add_parser` for each option)."""

    overrides: list[str] = dataclasses.field(default_factory=list)
    policy: str = "human"
    """human, random or agent."""
    checkpoint: str | None = None
    episodes: int | None = None
    """Stop after this many recorded episodes (None: when the window closes)."""
    fps: float | None = None
    """Env steps per second (None: the game's speed; 0: as fast as possible)."""
    out: str | None = None
    scale: float | None = None
    seed: int = 0
    deterministic: bool = False


@dataclass
class PlayResult:
    """What a session recorded."""

    dataset: Path
    episodes: int
    steps: int
    returns: list[float]


def _load(request: PlayRequest) -> tuple[Any, Any, dict[str, Any] | None]:
    """(train config, agent or None, normaliser state or None)."""
    if request.policy == "agent":
        from reprl.evaluation.cli import load_agent
        from reprl.runs import checkpoint as ckpt

        if request.overrides:
            raise ConfigError(
                "--agent plays the env its checkpoint was trained on: drop the overrides "
                f"({' '.join(request.overrides)})"
            )
        agent, cfg, state = load_agent(str(request.checkpoint))
        norm = ckpt.normalizer_of(state)
        return cfg, agent, norm
    from reprl.config import load_config

    return load_config(request.overrides), None, None


def _make_envs(env_cfg: Any, seed: int) -> Any:
    """One env with the training wrappers, rendering, on the sync backend."""
    from reprl.envs import make_vector_env

    # Rendering families set SDL_VIDEODRIVER=dummy for offscreen frames; the window needs the
    # user's real display, so undo that unless the user chose a driver.
    had_driver = "SDL_VIDEODRIVER" in os.environ
    try:
        return make_vector_env(env_cfg, seed=seed, num_envs=1, render=True)
    finally:
        if not had_driver:
            os.environ.pop("SDL_VIDEODRIVER", None)


class Window:
    """A pygame window showing RGB frames scaled by ``scale`` (auto: about 600 px)."""

    def __init__(self, title: str, scale: float | None) -> None:
        os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
        import pygame

        try:
            pygame.display.init()
        except pygame.error as exc:
            raise ReprlError(
                f"cannot open a pygame window ({exc}); SDL_VIDEODRIVER=dummy plays without one"
            ) from None
        pygame.display.set_caption(title)
        self.scale, self.screen, self.title = scale, None, title
        self.clock = pygame.time.Clock()

    def show(self, frame: np.ndarray, caption: str) -> None:
        import pygame

        h, w = frame.shape[:2]
        if self.scale is None:
            self.scale = max(1.0, float(round(WINDOW_PX / max(h, w))))
        size = (max(1, int(w * self.scale)), max(1, int(h * self.scale)))
        surface = pygame.surfarray.make_surface(np.ascontiguousarray(frame.swapaxes(0, 1)))
        if self.screen is None or self.screen.get_size() != size:
            self.screen = pygame.display.set_mode(size)
        self.screen.blit(pygame.transform.scale(surface, size), (0, 0))
        pygame.display.set_caption(f"{self.title}  {caption}")
        pygame.display.flip()

    def tick(self, fps: float) -> None:
        if fps > 0:
            self.clock.tick(fps)

    def close(self) -> None:
        import pygame

        pygame.display.quit()


def _default_fps(cfg: Any) -> float:
    """The game's own speed for Atari (60 Hz emulator / frame skip), else 30 steps/s."""
    from reprl.envs import resolve_env

    if resolve_env(cfg.env.id).name == "atari":
        return 60.0 / cfg.env.atari.frame_skip
    return 30.0


def play(
    request: PlayRequest,
    events: Callable[[], Iterable[Any]] | None = None,
    log: Callable[[str], None] = print,
) -> PlayResult:
    """Play and record (see the module docstring). ``events`` returns one frame's pygame
    events (default ``pygame.event.get``); ``log`` prints the bindings and episode results."""
    from reprl.config import to_dict
    from reprl.data.datasets.episodes import EpisodeWriter, action_space_dict

    if request.policy not in ("human", "random", "agent"):
        raise ConfigError(f"policy must be human, random or agent, got {request.policy!r}")
    if request.episodes is not None and request.episodes < 1:
        raise ConfigError(f"--episodes must be >= 1, got {request.episodes}")
    if request.scale is not None and request.scale <= 0:
        raise ConfigError(f"--scale must be > 0, got {request.scale}")
    if request.fps is not None and request.fps < 0:
        raise ConfigError(f"--fps must be >= 0 (0: as fast as possible), got {request.fps}")
    cfg, agent, norm = _load(request)
    env_cfg = dataclasses.replace(cfg.env, num_envs=1, backend="sync", num_workers=0)
    spec_env_id = env_cfg.id
    envs = _make_envs(env_cfg, request.seed)
    try:
        spec = envs.spec
        keymap = None
        if request.policy == "human":
            if not spec.discrete:
                raise ConfigError(
                    f"{spec_env_id} has continuous actions: keyboard play needs a discrete-action "
                    "env (watch it with --random or --agent CHECKPOINT)"
                )
            keymap = keymap_for(spec)
            log(f"keys for {spec_env_id} (Esc or closing the window ends the session):")
            for line in keymap.lines():
                log(line)
        if norm is not None:
            envs.load_normalizer_state(norm)
            envs.set_training(False)
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        slug = re.sub(r"[^A-Za-z0-9]+", "_", spec_env_id).strip("_")
        out = Path(request.out or f"datasets/{request.policy}-{slug}-{stamp}")
        writer = EpisodeWriter(
            out,
            env_id=spec_env_id,
            env_config=to_dict(cfg.env),  # the training config, as in the run's config.yaml
            obs_shape=spec.obs_shape,
            obs_dtype=spec.obs_dtype,
            action_space=action_space_dict(spec),
            source=request.policy,
            checkpoint=request.checkpoint,
            frame_stack=spec.frame_stack,
            extra={"seed": request.seed},
        )
        fps = _default_fps(cfg) if request.fps is None else request.fps
        window = Window(f"reprl play {spec_env_id}", request.scale)
        try:
            returns = _loop(request, envs, spec, writer, window, keymap, agent, events, fps, log)
        finally:
            dropped = writer.episode_steps
            writer.close()
            window.close()
    finally:
        envs.close()
    note = f" (an unfinished episode of {dropped} steps was dropped)" if dropped else ""
    log(f"saved {writer.num_episodes} episode(s) to {out}{note}")
    return PlayResult(out, writer.num_episodes, writer.metadata["num_steps"], returns)


def _loop(
    request: PlayRequest,
    envs: Any,
    spec: Any,
    writer: Any,
    window: Window,
    keymap: Keymap | None,
    agent: Any,
    events: Callable[[], Iterable[Any]] | None,
    fps: float,
    log: Callable[[str], None],
) -> list[float]:
    """Step, record and show until the episodes are done or the user quits."""
    import torch

    keyboard = Keyboard(events)
    rng = np.random.default_rng(request.seed)
    raw = RawReward(envs)
    obs = envs.reset(seed=request.seed)
    state = agent.initial_state(1) if agent is not None else None
    is_first, ended, returns = True, False, []
    deterministic = request.deterministic
    window.show(envs.render_first(), "episode 0")
    while request.episodes is None or writer.num_episodes < request.episodes:
        keyboard.poll()
        if keyboard.quit:
            break
        if ended:  # next-step autoreset: this step's action is ignored, obs starts an episode
            obs = envs.step(np.zeros((1, *spec.action_shape), np.float32)).obs
            is_first, ended = True, False
        # act
        if keymap is not None:
            action: Any = keymap.action(keyboard.held, keyboard.pressed)
            if action is None:  # turn-based keymap: wait for a key (without spinning)
                window.tick(fps if fps > 0 or events is not None else 60.0)
                continue
        elif agent is not None:
            flags = torch.full((1, 1), is_first, dtype=torch.bool)
            out, _, state = agent.act(torch.from_numpy(obs)[:, None], state, flags, deterministic)
            action = out[:, 0].cpu().numpy()[0]
        elif spec.discrete:
            mask = action_mask(envs)
            allowed = np.flatnonzero(mask) if mask is not None else np.arange(spec.num_actions)
            action = int(rng.choice(allowed))
        else:
            action = rng.uniform(spec.action_low, spec.action_high).astype(np.float32)
        # step and record
        raw.before_step()
        res = envs.step(np.asarray(action)[None])
        terminated, truncated = bool(res.terminated[0]), bool(res.truncated[0])
        writer.append(obs[0], action, float(res.reward[0]), terminated, truncated, raw.after_step())
        obs, is_first = res.obs, False
        if terminated or truncated:
            writer.end_episode(obs[0])
            info = writer.metadata["episodes"][-1]
            returns.append(info["return"])
            k, score, length = writer.num_episodes - 1, info["return"], info["length"]
            log(f"episode {k}: return {score:g}, {length} steps")
            ended = True
        window.show(envs.render_first(), f"episode {writer.num_episodes}")
        window.tick(fps)
    return returns


# ----------------------------------------------------------------------------- CLI
DESCRIPTION = (
    "Play a discrete-action env with the keyboard in a pygame window (or watch --random or "
    "--agent), built with the training wrappers of the given config; every finished episode "
    "is saved as an episode dataset (metadata.json + episode_<k>.npz) for pretraining or "
    "imitation. Esc or closing the window ends the session."
)
OVERRIDES_HELP = (
    "the overrides of train that choose the env, e.g. env=cartpole or experiment=ppo_atari "
    "env.id=ALE/Pong-v5 (options may come in any order)"
)


def _options(p: argparse.ArgumentParser) -> None:
    who = p.add_mutually_exclusive_group()
    who.add_argument("--random", action="store_true", help="watch a uniform random policy")
    who.add_argument(
        "--agent", metavar="CHECKPOINT", help="watch a trained agent (run folder or checkpoint)"
    )
    p.add_argument("--fps", type=float, help="steps per second (default: game speed; 0: max)")
    p.add_argument("--episodes", type=int, help="stop after N episodes (default: on Esc)")
    p.add_argument("--out", metavar="DATASET_DIR", help="dataset folder (default datasets/...)")
    p.add_argument("--scale", type=float, help="window scale of the render (default ~600 px)")
    p.add_argument("--seed", type=int, default=0, help="env seed (default 0)")
    p.add_argument("--deterministic", action="store_true", help="--agent acts with its mode")


def _handler(args: argparse.Namespace) -> int:
    # Options may follow the overrides: parse what follows ``reprl play`` again (as suite).
    p = argparse.ArgumentParser(prog="reprl play", description=DESCRIPTION)
    p.add_argument("overrides", nargs="*", help=OVERRIDES_HELP)
    _options(p)
    p.parse_intermixed_args(args.rest, namespace=args)
    if args.random and args.agent:
        raise ConfigError("--random and --agent exclude each other: choose one")
    request = PlayRequest(
        overrides=list(args.overrides),
        policy="agent" if args.agent else "random" if args.random else "human",
        checkpoint=args.agent,
        episodes=args.episodes,
        fps=args.fps,
        out=args.out,
        scale=args.scale,
        seed=args.seed,
        deterministic=args.deterministic,
    )
    play(request)
    return 0


def add_parser(sub: Any) -> None:
    """Add ``reprl play`` to the ``reprl`` command."""
    p = sub.add_parser(
        "play",
        help="play an env with the keyboard (or --random/--agent) and record a dataset: "
        "reprl play env=cartpole [k=v] [--fps N] [--episodes N] [--out DIR]",
        description=DESCRIPTION,
    )
    p.add_argument("rest", nargs=argparse.REMAINDER, metavar="overrides", help=OVERRIDES_HELP)
    _options(p)
    p.set_defaults(fn=_handler)

"""Atari 2600 games through ale-py, with the standard preprocessing.

Mnih et al. 2015 / Machado et al. 2018: up to ``noop_max`` no-ops at reset, FIRE at reset for
games that need it, the action repeated ``frame_skip`` frames with the last two max-pooled,
84x84 grayscale frames, the last 4 stacked: observations are uint8 ``(4, 84, 84)``. The same
options drive ale-py's C++ ``AtariVectorEnv`` (backend ``ale``) and envpool.

Reward clipping and episodic life change the score, so the env made here never applies them:
the vector env does (``CoreVectorEnv``), after recording the raw full-game episode return, on
every backend alike. Ids: ``ALE/<Game>-v5`` and ``<Game>NoFrameskip-v4`` (both made from the
v5 registration with ``frameskip=1`` and the config's sticky-action probability).
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation, TimeLimit

from reprl.envs.family import EnvFamily
from reprl.envs.wrappers import FireReset
from reprl.errors import ConfigError, EnvError
from reprl.registry import ENVS

if TYPE_CHECKING:
    from reprl.envs.config import EnvConfig

EVAL_TIME_LIMIT = 27_000
"""Agent steps (108k frames at frame skip 4: 30 minutes of play) for evaluation without limit."""

_PATTERNS = (re.compile(r"^ALE/(\w+)-v5$"), re.compile(r"^(\w+)NoFrameskip-v4$"))


@cache
def human_scores() -> dict[str, float]:
    """Average-human score per game from the packaged reference table (26 Atari-100k games)."""
    text = (resources.files("reprl.data") / "atari100k_reference_scores.csv").read_text()
    rows = [line.split(",") for line in text.splitlines() if line and not line.startswith("#")]
    header = rows[0]
    return {row[0]: float(row[header.index("human")]) for row in rows[1:]}


@cache
def _games() -> dict[str, str]:
    """CamelCase game name -> ale-py ROM id (``MontezumaRevenge`` -> ``montezuma_revenge``)."""
    try:
        import ale_py
    except ImportError:
        return {}
    gym.register_envs(ale_py)  # no-op; importing ale_py registers the ALE/ ids
    # Keep the emulator's banner ("A.L.E: Arcade Learning Environment ...") off every run's
    # stderr; real errors still print.
    ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)
    games = {}
    for env_id, spec in gym.registry.items():
        match = _PATTERNS[0].match(env_id)
        if match and "game" in spec.kwargs:
            games[match.group(1)] = spec.kwargs["game"]
    return games


@cache
def _single_threaded_opencv() -> None:
    """OpenCV's thread pool slows AtariPreprocessing's tiny 210x160 -> 84x84 resizes down (sync
    Breakout x8 on 2 cores: 1.6k steps/s with cv2's default threads, 2.1k with one), and
    oversubscribes cores when several async workers each start one."""
    import cv2

    cv2.setNumThreads(1)


def game_name(env_id: str) -> str | None:
    """The CamelCase game of an Atari id, or None if ``env_id`` is not one."""
    for pattern in _PATTERNS:
        match = pattern.match(env_id)
        if match and match.group(1) in _games():
            return match.group(1)
    return None


class AtariFamily(EnvFamily):
    """Every game ale-py ships, as ``ALE/<Game>-v5`` or ``<Game>NoFrameskip-v4``."""

    name = "atari"
    lives_key = "lives"
    exact_resume = True  # sync and async backends; ale-py's C++ vector env cannot snapshot

    def ids(self) -> list[str]:
        return [f"ALE/{game}-v5" for game in _games()]

    def matches(self, env_id: str) -> bool:
        if not any(p.match(env_id) for p in _PATTERNS):
            return False  # decided without importing ale-py (~0.2 s a process)
        if not _games():
            raise EnvError(f"{env_id} needs ale-py: pip install ale-py")
        return game_name(env_id) is not None

    def reward_threshold(self, env: gym.Env, cfg: EnvConfig) -> float | None:
        """The config's threshold, else the published average-human score of the game (Mnih
        et al. 2015; the 26 Atari-100k games): "solved" means human level, HNS >= 1."""
        if cfg.reward_threshold is not None:
            return cfg.reward_threshold
        game = game_name(env.spec.id if env.spec is not None else "")
        return human_scores().get(game or "")

    def rom_id(self, env_id: str) -> str:
        """ale-py's snake_case ROM id of ``env_id`` (for ``AtariVectorEnv``)."""
        return _games()[self._game(env_id)]

    def _game(self, env_id: str) -> str:
        game = game_name(env_id)
        if game is None:
            raise ConfigError(f"'{env_id}' is not an Atari id (ALE/<Game>-v5)")
        return game

    def check_config(self, env_id: str, cfg: EnvConfig) -> None:
        a = cfg.atari
        for key in ("frame_skip", "frame_stack", "screen_size"):
            if getattr(a, key) < 1:
                raise ConfigError(f"env.atari.{key} must be >= 1, got {getattr(a, key)}")
        if a.noop_max < 0:
            raise ConfigError(f"env.atari.noop_max must be >= 0, got {a.noop_max}")
        if not 0.0 <= a.sticky_actions <= 1.0:
            raise ConfigError(f"env.atari.sticky_actions must be in [0, 1], got {a.sticky_actions}")

    def frame_limit(self, cfg: EnvConfig) -> int | None:
        """Emulator frames before truncation (None: no frame limit)."""
        frames = cfg.atari.max_frames_per_episode
        return frames if frames and frames > 0 else None

    def time_limit(self, env_id: str, cfg: EnvConfig, evaluation: bool) -> int | None:
        """Agent-step limit: the config's, else the frame limit in agent steps, else (evaluation
        only) :data:`EVAL_TIME_LIMIT`."""
        frames = self.frame_limit(cfg)
        limits = [
            x for x in (cfg.max_episode_steps, frames and frames // cfg.atari.frame_skip) if x
        ]
        if not limits and evaluation:
            return EVAL_TIME_LIMIT
        return min(limits) if limits else None

    def score_transforms(self, cfg: EnvConfig, evaluation: bool) -> tuple[bool, bool]:
        """Episodic life and reward clipping, for training only."""
        if evaluation:
            return False, False
        return cfg.atari.episodic_life, cfg.atari.clip_rewards

    def make(
        self, env_id: str, cfg: EnvConfig, evaluation: bool = False, render: bool = False
    ) -> gym.Env:
        a = cfg.atari
        _single_threaded_opencv()
        # ALE/*-v5 defaults to frameskip 4 and sticky actions 0.25; frame skipping must happen in
        # AtariPreprocessing (max-pool of the last two frames), so the emulator steps 1 frame.
        env = gym.make(
            f"ALE/{self._game(env_id)}-v5",
            frameskip=1,
            repeat_action_probability=a.sticky_actions,
            full_action_space=a.full_action_space,
            max_num_frames_per_episode=self.frame_limit(cfg),
            disable_env_checker=True,
            render_mode="rgb_array" if render else None,
            **cfg.kwargs,
        )
        env = AtariPreprocessing(
            env,
            noop_max=a.noop_max,
            frame_skip=a.frame_skip,
            screen_size=a.screen_size,
            terminal_on_life_loss=False,  # episodic life lives in the vector env (raw stats)
            grayscale_obs=True,
        )
        meanings = env.unwrapped.get_action_meanings()  # type: ignore[attr-defined]
        if a.fire_reset and len(meanings) >= 3 and meanings[1] == "FIRE":
            env = FireReset(env)
        limit = self.time_limit(env_id, cfg, evaluation)
        frames = self.frame_limit(cfg)
        if limit is not None and (frames is None or limit < frames // a.frame_skip):
            env = TimeLimit(env, limit)
        # Zero padding after reset, as ale-py's AtariVectorEnv does.
        return FrameStackObservation(env, a.frame_stack, padding_type="zero")

    def action_meanings(self, env: gym.Env, env_id: str) -> tuple[str, ...]:
        return tuple(env.unwrapped.get_action_meanings())  # type: ignore[attr-defined]

    def frame_stack(self, env_id: str, cfg: EnvConfig) -> int:
        return cfg.atari.frame_stack

    def capture(self, env: gym.Env) -> dict[str, Any]:
        """Wrapper state (frame buffers, stack, counters, RNG) plus the emulator's state,
        serialized by ALE with its RNG (sticky actions) as uint8 bytes."""
        state = super().capture(env)
        ale_state = env.unwrapped.ale.cloneState(include_rng=True)  # type: ignore[attr-defined]
        state["ale"] = np.frombuffer(ale_state.serialize(), np.uint8).copy()
        return state

    def restore(self, env: gym.Env, state: dict[str, Any]) -> None:
        from ale_py import ALEState

        super().restore(env, state)
        ale_state = ALEState(np.asarray(state["ale"], np.uint8).tobytes())
        env.unwrapped.ale.restoreState(ale_state)  # type: ignore[attr-defined]


ATARI = AtariFamily()
ENVS.add("ALE/<Game>-v5", ATARI)
ENVS.add("<Game>NoFrameskip-v4", ATARI)

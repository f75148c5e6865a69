"""Search models: the true environment a search plans with, saved and restored by state.

MCTS (:mod:`reprl.search.mcts`) needs a model it can put back into any node's state:
``get_state`` / ``set_state``, ``step``, ``observation``, ``action_mask`` and ``num_players``.

- reprl's games (:mod:`reprl.envs.games`: TicTacToe-v0, ConnectFour-v0, Catch-v0,
  MemoryLength-v0) are such models themselves: their state is a small tuple.
- :class:`EnvSearchModel` turns any env whose family supports exact resume into one: Atari
  through ALE's state cloning (``cloneState(include_rng=True)``, serialised by ALE, plus the
  preprocessing wrappers' frame buffers and counters), classic control, MuJoCo, DeepSea and
  Chain through :mod:`reprl.envs.snapshot`. The env is made with the family's training
  wrappers (frame skip, 84x84 grayscale, frame stack for Atari); Atari's reward clipping is
  applied to the rewards the search sees when the config asks for it (``env.atari.
  clip_rewards``). Single player; every action is legal (Taxi's mask aside: the search does not
  read it).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from reprl.envs.config import EnvConfig
from reprl.envs.family import resolve_env
from reprl.envs.games import GAMES, Game, make_game
from reprl.errors import ConfigError


class EnvSearchModel:
    """One env of ``cfg`` (any family with exact resume) as a single-player search model.

    Its state is ``(family state, observation, done)``: the family's plain-data capture (for
    Atari the emulator's serialised state with its RNG and the wrappers' state), the
    observation of that state, and whether the episode ended there.
    """

    num_players = 1
    current_player = 0

    def __init__(self, cfg: EnvConfig) -> None:
        self.family = resolve_env(cfg.id)
        if not self.family.exact_resume:
            raise ConfigError(
                f"env {cfg.id!r} cannot be searched: its {self.family.name} family cannot save "
                "and restore its state (games, Atari, classic control, MuJoCo, DeepSea and "
                "Chain can)"
            )
        self.family.check_config(cfg.id, cfg)
        self.env: gym.Env = self.family.make(cfg.id, cfg)
        space = self.env.action_space
        if not isinstance(space, gym.spaces.Discrete):
            raise ConfigError(f"env {cfg.id!r}: search needs discrete actions, got {space}")
        self.num_actions = int(space.n)
        self.clip_rewards = self.family.score_transforms(cfg, evaluation=False)[1]
        self._obs: np.ndarray | None = None
        self._done = False

    @property
    def np_random(self) -> np.random.Generator:
        """The env's random generator (saved with self-play's state)."""
        return self.env.unwrapped.np_random

    def reset(self, seed: int | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode (``seed`` seeds the env's generator, as gymnasium's reset)."""
        self._obs, info = self.env.reset(seed=seed)
        self._done = False
        return self._obs, info

    def get_state(self) -> tuple[dict[str, Any], np.ndarray, bool]:
        if self._obs is None:
            raise RuntimeError("EnvSearchModel: reset() before get_state()")
        return self.family.capture(self.env), self._obs.copy(), self._done

    def set_state(self, state: tuple[dict[str, Any], np.ndarray, bool]) -> None:
        captured, obs, done = state
        self.family.restore(self.env, captured)
        self._obs, self._done = np.array(obs), bool(done)

    def observation(self) -> np.ndarray:
        if self._obs is None:
            raise RuntimeError("EnvSearchModel: reset() before observation()")
        return self._obs

    def action_mask(self) -> np.ndarray:
        return np.full(self.num_actions, not self._done)

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """One env step; the reward is clipped to its sign when the config clips (Atari)."""
        if self._done:
            raise RuntimeError("EnvSearchModel: step() after the episode ended; reset()")
        obs, reward, terminated, truncated, info = self.env.step(int(action))
        self._obs, self._done = obs, bool(terminated or truncated)
        reward = float(np.sign(reward)) if self.clip_rewards else float(reward)
        return obs, reward, bool(terminated), bool(truncated), info

    def close(self) -> None:
        self.env.close()


def make_search_model(env: str | EnvConfig) -> Game | EnvSearchModel:
    """The search model of an env id or config: the game itself for reprl's games (with the
    config's ``kwargs`` but without a built-in ``opponent``: the search plays both sides),
    else an :class:`EnvSearchModel`."""
    cfg = env if isinstance(env, EnvConfig) else EnvConfig(id=env)
    if cfg.id in GAMES:
        resolve_env(cfg.id).check_config(cfg.id, cfg)
        return make_game(cfg.id, **{k: v for k, v in cfg.kwargs.items() if k != "opponent"})
    return EnvSearchModel(cfg)

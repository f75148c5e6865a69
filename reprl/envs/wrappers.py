"""Single-env gymnasium wrappers used by the family modules."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from reprl.errors import ConfigError


class OneHotObservation(gym.ObservationWrapper):
    """Discrete(n) observations -> float32 one-hot vectors of length n (Taxi's 500 states)."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        space = env.observation_space
        if not isinstance(space, gym.spaces.Discrete):
            raise TypeError(f"OneHotObservation needs a Discrete observation space, got {space}")
        self._eye = np.eye(int(space.n), dtype=np.float32)
        self._start = int(space.start)
        self.observation_space = gym.spaces.Box(0.0, 1.0, (int(space.n),), np.float32)

    def observation(self, observation: Any) -> np.ndarray:
        """Row ``observation`` of the identity matrix (a copy)."""
        return self._eye[int(observation) - self._start]


class MaskObservation(gym.ObservationWrapper):
    """Hide entries of a flat Box observation by setting them to 0 (their bounds become 0).

    Makes a task partially observable without changing its observation shape, e.g.
    ``env.obs_mask=[1,3]`` hides CartPole's cart and pole velocities, which a policy then has
    to infer from successive positions: a memory task for recurrent necks (the "CartPole with
    velocities removed" POMDP of recurrent-RL papers, e.g. Ni et al. 2022, "Recurrent
    model-free RL can be a strong baseline for many POMDPs").
    """

    def __init__(self, env: gym.Env, indices: list[int]) -> None:
        super().__init__(env)
        space = env.observation_space
        if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
            raise ConfigError(f"env.obs_mask: needs flat Box observations, got {space}")
        size = space.shape[0]
        bad = [i for i in indices if not 0 <= i < size]
        if bad:
            raise ConfigError(
                f"env.obs_mask: indices {bad} out of range for observations of size {size}"
            )
        self._keep = np.ones(size, dtype=space.dtype)
        self._keep[list(indices)] = 0
        hidden = self._keep == 0
        low, high = np.where(hidden, 0, space.low), np.where(hidden, 0, space.high)
        self.observation_space = gym.spaces.Box(low, high, space.shape, space.dtype)

    def observation(self, observation: Any) -> np.ndarray:
        """The observation with the masked entries set to 0 (a new array)."""
        return observation * self._keep


class FireReset(gym.Wrapper):
    """Press FIRE once after each game reset, for games that wait for it to start.

    As ale-py's ``use_fire_reset`` and envpool do, this fires on real game resets only (not after
    a life loss), so every backend plays the same game; the agent learns to press FIRE after a
    lost life (Machado et al. 2018 recommend not hard-coding it at all).
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        meanings = env.unwrapped.get_action_meanings()  # type: ignore[attr-defined]
        if len(meanings) < 3 or meanings[1] != "FIRE":
            raise ValueError(f"FireReset needs FIRE as action 1, got {meanings}")

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        """Reset, then take FIRE (resetting again in the unlikely case that ends the game)."""
        obs, info = self.env.reset(**kwargs)
        obs, _, terminated, truncated, info = self.env.step(1)
        if terminated or truncated:
            obs, info = self.env.reset()
        return obs, info

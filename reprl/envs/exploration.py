"""Sparse-reward exploration tasks shipped with reprl: DeepSea and Chain (pure NumPy).

Both are small tabular MDPs whose reward a dithering policy (epsilon-greedy, entropy-regularised
PPO) almost never finds, while an agent that explores deliberately (RND, Burda et al. 2018;
bootstrapped or randomised value functions, Osband et al. 2016) does. They are the learning
test of exploration components: quick to step (~300k steps/s for 8 envs on the sync backend,
2 cores), exact to reason about.

**DeepSea** (``DeepSea-<N>-v0``; Osband et al. 2019, "Behaviour Suite for Reinforcement
Learning", ``deep_sea``; Osband et al. 2019, "Deep Exploration via Randomized Value
Functions", JMLR): an N x N grid. The agent starts in the top-left cell; every step it moves
down one row and one column left or right (clipped at the walls), so every episode lasts
exactly N steps. Moving right costs ``0.01 / N``; moving right from the bottom-right cell
finds the treasure, +1. The only rewarding path is N rights in a row: the optimal return is
``1 - 0.01 = 0.99``, every other episode returns at most 0, and a uniformly random policy
finds the treasure with probability ``2**-N``. Which action moves right is drawn per cell,
as in bsuite, so that a policy cannot generalise "always press 1": the map is drawn once from
``mapping_seed`` (``env.kwargs.mapping_seed``, default 0) when the env is made, and is the same
for every env of a vector env and for the evaluation envs (a map drawn per episode or per
reset seed would make the task unlearnable: the observation does not show it).
``env.kwargs.randomize_actions=false`` makes action 1 "right" everywhere. Observation: the
one-hot of the agent's cell, ``N * N`` float32; after the last step (row N, off the grid) it
shows the last row.

**Chain** (``Chain-<N>-v0``; after the chain of Osband et al. 2016, "Deep Exploration via
Bootstrapped DQN"): N states in a line, the agent starts in state 1 (the second from
the left) and moves left or right (clipped at the ends). Every step that ends in the left-most
state pays a distractor reward of 0.001; reaching the right-most state pays +1 and ends the
episode (here the +1 is paid once, so returns compare across N); episodes are truncated after
N + 9 steps, as in the paper. The optimal return is 1 (N - 2 steps right);
the distractor (at most ``0.001 * (N + 9)``) lures greedy learners to the left. A random policy
reaches the goal with probability ~7.5% for N = 10, ~6e-4 for N = 20, ~3e-6 for N = 30.
Unlike DeepSea, action 1 is "right" in every state by default (``randomize_actions`` draws a
per-state map from ``mapping_seed`` instead). Observation: the one-hot of the state,
N float32.

Both keep their whole state in plain attributes (ints and small integer arrays), so the sync
and async backends resume them exactly through :mod:`reprl.envs.snapshot`. Their dynamics are
deterministic: the reset seed changes nothing (it seeds ``np_random``, unused).

"Solved" (the spec's reward threshold) is an evaluation mean return of 0.9 for both: the goal
reached in at least ~90% of evaluation episodes (each success returns 0.99 on DeepSea and at
least 1 on Chain; each failure at most 0 on DeepSea and ``0.001 * (N + 9)`` on Chain).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium.wrappers import TimeLimit

from reprl.envs.family import EnvFamily
from reprl.errors import ConfigError, choices_hint
from reprl.registry import ENVS

if TYPE_CHECKING:
    from reprl.envs.config import EnvConfig

SOLVED_RETURN = 0.9
"""Evaluation mean return that counts as solved (goal reached in >= ~90% of episodes)."""
ACTION_MEANINGS = ("LEFT", "RIGHT")
"""Labels of the two actions *without* a randomised map; with one, an action's meaning
depends on the cell, and the labels only name the two buttons."""
_CELL_PX = 8
"""Side in pixels of one cell in ``render()`` frames."""
_COLORS = {
    "empty": (20, 40, 80),
    "agent": (255, 255, 255),
    "goal": (255, 200, 0),
    "distractor": (120, 120, 120),
}


def _right_action_map(shape: tuple[int, ...], randomize: bool, seed: int) -> np.ndarray:
    """Which action (0 or 1) moves right in each cell: all 1, or drawn from ``seed``."""
    if not randomize:
        return np.ones(shape, np.int8)
    return np.random.default_rng(seed).integers(0, 2, shape, dtype=np.int8)


def _frame(rows: int, cols: int, cells: dict[str, list[tuple[int, int]]]) -> np.ndarray:
    """An RGB image of a ``rows x cols`` grid with the given cells coloured (last wins)."""
    image = np.empty((rows, cols, 3), np.uint8)
    image[:] = _COLORS["empty"]
    for kind in ("distractor", "goal", "agent"):
        for r, c in cells.get(kind, []):
            image[r, c] = _COLORS[kind]
    return np.kron(image, np.ones((_CELL_PX, _CELL_PX, 1), np.uint8))


class DeepSeaEnv(gym.Env[np.ndarray, int]):
    """The DeepSea grid of size ``size`` (see the module docstring).

    Args:
        size: N, the grid's side and the episode length.
        mapping_seed: seed of the per-cell action map (fixed for the env's lifetime).
        randomize_actions: draw the per-cell map; False makes action 1 "right" everywhere.
        render_mode: None or ``"rgb_array"``.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}
    MOVE_COST = 0.01
    """Total cost of moving right N times (each right move costs ``MOVE_COST / N``)."""

    def __init__(
        self,
        size: int,
        mapping_seed: int = 0,
        randomize_actions: bool = True,
        render_mode: str | None = None,
    ) -> None:
        if size < 2:
            raise ValueError(f"DeepSea size must be >= 2, got {size}")
        self.size = int(size)
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(0.0, 1.0, (self.size * self.size,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self._right_action = _right_action_map(
            (self.size, self.size), randomize_actions, mapping_seed
        )
        self._row = 0
        self._col = 0

    def optimal_action(self) -> int:
        """The action that moves right from the current cell (the optimal policy's)."""
        return int(self._right_action[min(self._row, self.size - 1), self._col])

    def _obs(self) -> np.ndarray:
        obs = np.zeros(self.size * self.size, np.float32)
        obs[min(self._row, self.size - 1) * self.size + self._col] = 1.0
        return obs

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._row, self._col = 0, 0
        return self._obs(), {}

    def step(self, action: int) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        if self._row >= self.size:
            raise RuntimeError("DeepSea: step() after the episode ended; call reset()")
        right = int(action) == self._right_action[self._row, self._col]
        reward = 0.0
        if right:
            # The treasure: moving right from the bottom-right cell (bsuite's deep_sea). Only N
            # consecutive rights reach that cell's column by the last row.
            if self._col == self.size - 1:
                reward += 1.0
            reward -= self.MOVE_COST / self.size
            self._col = min(self._col + 1, self.size - 1)
        else:
            self._col = max(self._col - 1, 0)
        self._row += 1
        return self._obs(), reward, self._row == self.size, False, {}

    def render(self) -> np.ndarray | None:  # type: ignore[override]
        if self.render_mode != "rgb_array":
            return None
        n = self.size
        agent = (min(self._row, n - 1), self._col)
        return _frame(n, n, {"goal": [(n - 1, n - 1)], "agent": [agent]})


class ChainEnv(gym.Env[np.ndarray, int]):
    """The chain of length ``length`` (see the module docstring); the time limit is a wrapper.

    Args:
        length: N, the number of states.
        mapping_seed: seed of the per-state action map (with ``randomize_actions``).
        randomize_actions: draw which action moves right per state; default: action 1.
        render_mode: None or ``"rgb_array"``.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}
    DISTRACTOR_REWARD = 0.001
    """Reward of every step that ends in the left-most state."""
    GOAL_REWARD = 1.0
    """Reward of reaching the right-most state (which ends the episode)."""
    START = 1
    """Start state (the paper's s_2)."""

    def __init__(
        self,
        length: int,
        mapping_seed: int = 0,
        randomize_actions: bool = False,
        render_mode: str | None = None,
    ) -> None:
        if length < 3:
            raise ValueError(f"Chain length must be >= 3, got {length}")
        self.length = int(length)
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(0.0, 1.0, (self.length,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self._right_action = _right_action_map((self.length,), randomize_actions, mapping_seed)
        self._state = self.START

    def optimal_action(self) -> int:
        """The action that moves right from the current state (the optimal policy's)."""
        return int(self._right_action[self._state])

    def _obs(self) -> np.ndarray:
        obs = np.zeros(self.length, np.float32)
        obs[self._state] = 1.0
        return obs

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._state = self.START
        return self._obs(), {}

    def step(self, action: int) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        if self._state == self.length - 1:
            raise RuntimeError("Chain: step() after the episode ended; call reset()")
        if int(action) == self._right_action[self._state]:
            self._state += 1
        else:
            self._state = max(self._state - 1, 0)
        terminated = self._state == self.length - 1
        if terminated:
            reward = self.GOAL_REWARD
        elif self._state == 0:
            reward = self.DISTRACTOR_REWARD
        else:
            reward = 0.0
        return self._obs(), reward, terminated, False, {}

    def render(self) -> np.ndarray | None:  # type: ignore[override]
        if self.render_mode != "rgb_array":
            return None
        cells = {
            "distractor": [(0, 0)],
            "goal": [(0, self.length - 1)],
            "agent": [(0, self._state)],
        }
        return _frame(1, self.length, cells)


_KWARGS = ("mapping_seed", "randomize_actions")
"""Keys of ``env.kwargs`` both families accept."""


class _GridFamily(EnvFamily):
    """Shared parts of the DeepSea and Chain families: ``<Name>-<N>-v0`` ids, kwargs checks."""

    exact_resume = True  # ints and small int arrays: the generic snapshot captures it all
    prefix = ""
    sizes: tuple[int, ...] = ()
    min_size = 2

    def _pattern(self) -> re.Pattern[str]:
        return re.compile(rf"^{self.prefix}-([1-9][0-9]*)-v0$")

    def ids(self) -> list[str]:
        return [f"{self.prefix}-{n}-v0" for n in self.sizes]

    def matches(self, env_id: str) -> bool:
        match = self._pattern().match(env_id)
        return match is not None and int(match.group(1)) >= self.min_size

    def size(self, env_id: str) -> int:
        """N of an id (``DeepSea-10-v0`` -> 10)."""
        match = self._pattern().match(env_id)
        if match is None:
            raise ConfigError(f"'{env_id}' is not a {self.name} id ({self.prefix}-<N>-v0)")
        return int(match.group(1))

    def check_config(self, env_id: str, cfg: EnvConfig) -> None:
        if self.size(env_id) < self.min_size:
            raise ConfigError(f"env.id={env_id}: N must be >= {self.min_size}")
        for key, value in cfg.kwargs.items():
            if key not in _KWARGS:
                raise ConfigError(
                    f"env.kwargs.{key}: unknown for {env_id}; {choices_hint(key, _KWARGS)}"
                )
            if key == "mapping_seed" and (isinstance(value, bool) or not isinstance(value, int)):
                raise ConfigError(f"env.kwargs.mapping_seed must be an int, got {value!r}")
            if key == "randomize_actions" and not isinstance(value, bool):
                raise ConfigError(
                    f"env.kwargs.randomize_actions must be true or false, got {value!r}"
                )

    def reward_threshold(self, env: gym.Env, cfg: EnvConfig) -> float | None:
        return cfg.reward_threshold if cfg.reward_threshold is not None else SOLVED_RETURN

    def action_meanings(self, env: gym.Env, env_id: str) -> tuple[str, ...]:
        return ACTION_MEANINGS


class DeepSeaFamily(_GridFamily):
    """``DeepSea-<N>-v0`` for any N >= 2 (Osband et al. 2019)."""

    name = "deep_sea"
    prefix = "DeepSea"
    sizes = (10, 20, 30, 40, 50)

    def time_limit(self, env_id: str, cfg: EnvConfig, evaluation: bool) -> int | None:
        """N (every episode lasts N steps), or the config's limit if shorter."""
        n = self.size(env_id)
        return n if cfg.max_episode_steps is None else min(cfg.max_episode_steps, n)

    def make(
        self, env_id: str, cfg: EnvConfig, evaluation: bool = False, render: bool = False
    ) -> gym.Env:
        n = self.size(env_id)
        env: gym.Env = DeepSeaEnv(n, render_mode="rgb_array" if render else None, **cfg.kwargs)
        limit = self.time_limit(env_id, cfg, evaluation)
        # Episodes end by themselves after N steps (terminated): a TimeLimit of N would also
        # flag that last step truncated, so one is only added for a shorter limit.
        return TimeLimit(env, limit) if limit is not None and limit < n else env


class ChainFamily(_GridFamily):
    """``Chain-<N>-v0`` for any N >= 3 (after Osband et al. 2016)."""

    name = "chain"
    prefix = "Chain"
    sizes = (10, 20, 30, 50)
    min_size = 3

    def time_limit(self, env_id: str, cfg: EnvConfig, evaluation: bool) -> int | None:
        """N + 9 steps (Osband et al. 2016), or the config's limit."""
        return cfg.max_episode_steps or self.size(env_id) + 9

    def make(
        self, env_id: str, cfg: EnvConfig, evaluation: bool = False, render: bool = False
    ) -> gym.Env:
        env = ChainEnv(self.size(env_id), render_mode="rgb_array" if render else None, **cfg.kwargs)
        return TimeLimit(env, self.time_limit(env_id, cfg, evaluation))  # type: ignore[arg-type]


DEEP_SEA = DeepSeaFamily()
CHAIN = ChainFamily()
ENVS.add("DeepSea-<N>-v0", DEEP_SEA)
ENVS.add("Chain-<N>-v0", CHAIN)

"""Games whose whole state is plain data, so that a search can save and restore it: the true
model MCTS plans with (:mod:`reprl.search.mcts`, the AlphaZero agent). Pure NumPy.

**TicTacToe-v0** (3 x 3, three in a row) and **ConnectFour-v0** (6 rows x 7 columns, pieces
drop to the lowest empty cell, four in a row): two players alternate. The observation is from
the *current* player's perspective, planes ``(3, H, W)`` float32: the current player's pieces,
the opponent's pieces, and a constant plane that is 1 when the current player moved first
(who moves first matters in Connect Four). ``info["action_mask"]`` marks the legal moves (empty
cells; columns with room). The reward is for the player who just moved: +1 for a win, 0
otherwise (a draw, or the game goes on); an illegal move loses at once (-1), so that agents
that cannot mask actions (DQN) can still play. With ``env.kwargs.opponent: random`` the env
is a single-agent task: the agent's side is drawn at every reset, a uniformly random
opponent answers inside the env, and the reward is the agent's (+1 win, -1 loss, 0 draw):
standard RL agents train on it and evaluation measures play against a random player.

**Catch-v0** (Osband et al. 2019, "Behaviour Suite for Reinforcement Learning", bsuite's
``catch``, ``bsuite/environments/catch.py``): a 10 x 5 board; the ball starts in a random
column of the top row and falls one row per step; the paddle starts in the middle of the
bottom row and moves left, stays or moves right (actions 0, 1, 2, clipped at the walls)
before the ball falls. When the ball reaches the bottom row the episode ends with +1 if the
paddle is under it, else -1: every episode lasts ``rows - 1 = 9`` steps. Observation: bsuite's
board (1 at the ball and the paddle) with a leading channel axis, ``(1, 10, 5)`` float32.
bsuite does not install on every machine, so the game is re-implemented here from that
definition (``env.kwargs.rows`` / ``columns`` as bsuite's constructor).

**MemoryLength-v0** (bsuite's ``memory_len``, ``bsuite/environments/memory_chain.py``): a cue
of ``num_bits`` bits (+-1) is shown on the first observation only; the agent must remember it
for ``memory_length`` steps. Observation ``(num_bits + 2,)`` float32: the time left
``1 - t / memory_length``, the query (which bit is asked; shown at ``t = memory_length`` only),
the cue (at ``t = 0`` only). Actions 0 and 1 do nothing until the last step ``t =
memory_length``, where the episode ends with +1 if the action equals the queried bit (0 for -1,
1 for +1), else -1: ``memory_length + 1`` steps per episode. A feed-forward agent cannot beat
chance (mean return 0); a recurrent one can reach 1. Unlike bsuite, whose ``step`` returns the
observation of the step before (the cue is seen twice), every observation here is the current
one.

Every game exposes the search-model interface: ``get_state()`` / ``set_state(state)`` (a
small tuple of plain data, cheap to copy), ``observation()``, ``action_mask()``,
``current_player`` and ``num_players`` (1 or 2: the sign flip of MCTS value backups).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium.wrappers import TimeLimit

from reprl.envs.family import EnvFamily
from reprl.errors import ConfigError, choices_hint
from reprl.registry import ENVS

if TYPE_CHECKING:
    from reprl.envs.config import EnvConfig

_CELL_PX = 16
"""Side in pixels of one cell in ``render()`` frames."""
_COLORS = np.array([[30, 30, 30], [230, 80, 60], [60, 130, 230]], np.uint8)
"""Empty, first player (or ball and paddle), second player."""


class Game(gym.Env[np.ndarray, int]):
    """Base of the games: the search-model interface and the gymnasium wrapping."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}
    num_players: int = 2
    """1 (Catch) or 2 (alternating, zero-sum): whether MCTS flips the value's sign per ply."""
    current_player: int = 0
    """The player to move (always 0 in single-player games)."""

    def get_state(self) -> Any:
        """The game's state as plain data (cheap; never aliases the live env)."""
        raise NotImplementedError

    def set_state(self, state: Any) -> None:
        """Restore :meth:`get_state`'s value."""
        raise NotImplementedError

    def observation(self) -> np.ndarray:
        """The observation of the current state (current player's perspective)."""
        raise NotImplementedError

    def action_mask(self) -> np.ndarray:
        """Legal moves of the current state, bool ``(num_actions,)``."""
        raise NotImplementedError

    def _info(self) -> dict[str, Any]:
        return {"action_mask": self.action_mask(), "current_player": self.current_player}


# ---------------------------------------------------------------------------------------------
# Two-player board games
# ---------------------------------------------------------------------------------------------
class BoardGame(Game):
    """An ``rows x cols`` board of 0 (empty), 1 (first player), 2 (second player) where a line
    of ``connect`` pieces wins; ``gravity`` makes actions columns (Connect Four)."""

    rows, cols, connect, gravity = 3, 3, 3, False

    def __init__(self, opponent: str | None = None, render_mode: str | None = None) -> None:
        if opponent not in (None, "none", "random"):
            raise ValueError(f"opponent must be none or random, got {opponent!r}")
        self.opponent = None if opponent in (None, "none") else opponent
        self.render_mode = render_mode
        self.num_actions = self.cols if self.gravity else self.rows * self.cols
        self.observation_space = gym.spaces.Box(0.0, 1.0, (3, self.rows, self.cols), np.float32)
        self.action_space = gym.spaces.Discrete(self.num_actions)
        self.board = np.zeros((self.rows, self.cols), np.int8)
        self.current_player = 0
        self.done = False
        self.agent_player = 0
        """The agent's side when playing against the built-in opponent."""

    # -------------------------------------------------------------- search-model interface
    def get_state(self) -> tuple[np.ndarray, int, bool, int]:
        return self.board.copy(), self.current_player, self.done, self.agent_player

    def set_state(self, state: tuple[np.ndarray, int, bool, int]) -> None:
        board, self.current_player, self.done, self.agent_player = state
        self.board = np.array(board, np.int8)

    def observation(self) -> np.ndarray:
        me = self.current_player + 1
        obs = np.empty((3, self.rows, self.cols), np.float32)
        obs[0] = self.board == me
        obs[1] = self.board == 3 - me
        obs[2] = float(self.current_player == 0)
        return obs

    def action_mask(self) -> np.ndarray:
        if self.done:
            return np.zeros(self.num_actions, bool)
        if self.gravity:
            return self.board[0] == 0
        return (self.board == 0).reshape(-1)

    # -------------------------------------------------------------- rules
    def _cell(self, action: int) -> tuple[int, int]:
        """The cell a legal ``action`` fills."""
        if not self.gravity:
            return divmod(action, self.cols)
        empty = np.flatnonzero(self.board[:, action] == 0)
        return int(empty[-1]), action

    def _wins(self, r: int, c: int) -> bool:
        """Whether the piece just placed at (r, c) completes a line of ``connect``."""
        piece, board = self.board[r, c], self.board
        for dr, dc in ((0, 1), (1, 0), (1, 1), (1, -1)):
            count = 1
            for sign in (1, -1):
                rr, cc = r + sign * dr, c + sign * dc
                while 0 <= rr < self.rows and 0 <= cc < self.cols and board[rr, cc] == piece:
                    count += 1
                    rr, cc = rr + sign * dr, cc + sign * dc
            if count >= self.connect:
                return True
        return False

    def _play(self, action: int) -> float:
        """Apply ``action`` for the current player; the mover's reward."""
        if self.done:
            raise RuntimeError(f"{type(self).__name__}: step() after the game ended; reset()")
        if not 0 <= action < self.num_actions or not self.action_mask()[action]:
            self.done = True  # an illegal move loses (agents without action masks)
            return -1.0
        r, c = self._cell(action)
        self.board[r, c] = self.current_player + 1
        if self._wins(r, c):
            self.done = True
            return 1.0
        self.done = bool((self.board != 0).all())  # board full: a draw
        self.current_player = 1 - self.current_player
        return 0.0

    def _opponent_move(self) -> float:
        """The built-in random opponent's move; its reward."""
        legal = np.flatnonzero(self.action_mask())
        return self._play(int(self.np_random.choice(legal)))

    # -------------------------------------------------------------- gymnasium
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.board = np.zeros((self.rows, self.cols), np.int8)
        self.current_player, self.done, self.agent_player = 0, False, 0
        if self.opponent is not None:
            self.agent_player = int(self.np_random.integers(2))
            if self.agent_player == 1:
                self._opponent_move()
        return self.observation(), self._info()

    def step(self, action: int) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        reward = self._play(int(action))
        if self.opponent is not None and not self.done:
            reward = -self._opponent_move()  # zero-sum: the opponent's win is the agent's loss
        return self.observation(), reward, self.done, False, self._info()

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        return np.kron(_COLORS[self.board], np.ones((_CELL_PX, _CELL_PX, 1), np.uint8))


class TicTacToeEnv(BoardGame):
    """Tic-tac-toe: 9 actions (cells, row-major), three in a row wins."""

    rows, cols, connect, gravity = 3, 3, 3, False


class ConnectFourEnv(BoardGame):
    """Connect Four: 7 actions (columns), 6 rows, four in a row wins."""

    rows, cols, connect, gravity = 6, 7, 4, True


# ---------------------------------------------------------------------------------------------
# Catch (bsuite)
# ---------------------------------------------------------------------------------------------
class CatchEnv(Game):
    """bsuite's Catch (see the module docstring). Actions: 0 left, 1 stay, 2 right."""

    num_players = 1
    MOVES = (-1, 0, 1)

    def __init__(self, rows: int = 10, columns: int = 5, render_mode: str | None = None) -> None:
        if rows < 2 or columns < 1:
            raise ValueError(f"Catch needs rows >= 2 and columns >= 1, got {rows} x {columns}")
        self.rows, self.columns = int(rows), int(columns)
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(0.0, 1.0, (1, self.rows, self.columns), np.float32)
        self.action_space = gym.spaces.Discrete(3)
        self.ball_x, self.ball_y, self.paddle_x = 0, 0, self.columns // 2
        self.current_player = 0

    def get_state(self) -> tuple[int, int, int]:
        return self.ball_x, self.ball_y, self.paddle_x

    def set_state(self, state: tuple[int, int, int]) -> None:
        self.ball_x, self.ball_y, self.paddle_x = (int(v) for v in state)

    def observation(self) -> np.ndarray:
        board = np.zeros((1, self.rows, self.columns), np.float32)
        board[0, self.ball_y, self.ball_x] = 1.0
        board[0, self.rows - 1, self.paddle_x] = 1.0
        return board

    def action_mask(self) -> np.ndarray:
        return np.ones(3, bool)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.ball_x = int(self.np_random.integers(self.columns))
        self.ball_y, self.paddle_x = 0, self.columns // 2
        return self.observation(), self._info()

    def step(self, action: int) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        if self.ball_y >= self.rows - 1:
            raise RuntimeError("Catch: step() after the episode ended; call reset()")
        # bsuite order: move the paddle, then drop the ball, then check the bottom row.
        self.paddle_x = min(max(self.paddle_x + self.MOVES[int(action)], 0), self.columns - 1)
        self.ball_y += 1
        terminated = self.ball_y == self.rows - 1
        reward = 0.0
        if terminated:
            reward = 1.0 if self.paddle_x == self.ball_x else -1.0
        return self.observation(), reward, terminated, False, self._info()

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        cells = self.observation()[0].astype(np.int64)
        return np.kron(_COLORS[cells], np.ones((_CELL_PX, _CELL_PX, 1), np.uint8))


# ---------------------------------------------------------------------------------------------
# Memory length (bsuite)
# ---------------------------------------------------------------------------------------------
class MemoryLengthEnv(Game):
    """bsuite's memory-length task (see the module docstring). Actions: the guessed bit."""

    num_players = 1

    def __init__(
        self, memory_length: int = 10, num_bits: int = 1, render_mode: str | None = None
    ) -> None:
        if memory_length < 1 or num_bits < 1:
            raise ValueError(
                f"MemoryLength needs memory_length >= 1 and num_bits >= 1, got {memory_length}, "
                f"{num_bits}"
            )
        self.memory_length, self.num_bits = int(memory_length), int(num_bits)
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (self.num_bits + 2,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.context = np.zeros(self.num_bits, np.int64)
        self.query, self.t = 0, 0
        self.current_player = 0

    def get_state(self) -> tuple[np.ndarray, int, int]:
        return self.context.copy(), self.query, self.t

    def set_state(self, state: tuple[np.ndarray, int, int]) -> None:
        context, query, t = state
        self.context, self.query, self.t = np.array(context, np.int64), int(query), int(t)

    def observation(self) -> np.ndarray:
        obs = np.zeros(self.num_bits + 2, np.float32)
        obs[0] = 1.0 - self.t / self.memory_length
        if self.t == self.memory_length:
            obs[1] = self.query
        if self.t == 0:
            obs[2:] = 2 * self.context - 1
        return obs

    def action_mask(self) -> np.ndarray:
        return np.ones(2, bool)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.context = self.np_random.integers(0, 2, self.num_bits)
        self.query = int(self.np_random.integers(self.num_bits))
        self.t = 0
        return self.observation(), self._info()

    def step(self, action: int) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        if self.t > self.memory_length:
            raise RuntimeError("MemoryLength: step() after the episode ended; call reset()")
        terminated = self.t == self.memory_length
        reward = 0.0
        if terminated:
            reward = 1.0 if int(action) == int(self.context[self.query]) else -1.0
        self.t += 1
        return self.observation(), reward, terminated, False, self._info()

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        row = (self.observation()[None] + 1.0) * 127.5
        gray = np.kron(row, np.ones((_CELL_PX, _CELL_PX))).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)


# ---------------------------------------------------------------------------------------------
# The family
# ---------------------------------------------------------------------------------------------
GAMES: dict[str, type[Game]] = {
    "TicTacToe-v0": TicTacToeEnv,
    "ConnectFour-v0": ConnectFourEnv,
    "Catch-v0": CatchEnv,
    "MemoryLength-v0": MemoryLengthEnv,
}
"""Game classes by env id."""
_KWARGS = {"TicTacToe-v0": ("opponent",), "ConnectFour-v0": ("opponent",)}
_KWARGS["Catch-v0"] = ("rows", "columns")
_KWARGS["MemoryLength-v0"] = ("memory_length", "num_bits")
_MAX_PLIES = {"TicTacToe-v0": 9, "ConnectFour-v0": 42}
CATCH_SOLVED = 0.9
"""Evaluation mean return that counts Catch and MemoryLength as solved (>= 95% of balls
caught, of bits recalled)."""


def _natural_length(env_id: str, cfg: EnvConfig) -> int:
    """The most steps an episode can last: 9 / 42 plies, Catch's ``rows - 1``, MemoryLength's
    ``memory_length + 1``."""
    if env_id == "MemoryLength-v0":
        return int(cfg.kwargs.get("memory_length", 10)) + 1
    return int(cfg.kwargs.get("rows", 10)) - 1 if env_id == "Catch-v0" else _MAX_PLIES[env_id]


def make_game(env_id: str, **kwargs: Any) -> Game:
    """A bare game (no wrappers) of ``env_id``: the model a search steps."""
    if env_id not in GAMES:
        raise ConfigError(f"unknown game '{env_id}'; valid: {', '.join(GAMES)}")
    return GAMES[env_id](**kwargs)


class GameFamily(EnvFamily):
    """TicTacToe-v0, ConnectFour-v0, Catch-v0 and MemoryLength-v0: plain-data state, exact
    resume."""

    name = "games"
    exact_resume = True

    def ids(self) -> list[str]:
        return list(GAMES)

    def check_config(self, env_id: str, cfg: EnvConfig) -> None:
        for key, value in cfg.kwargs.items():
            if key not in _KWARGS[env_id]:
                raise ConfigError(
                    f"env.kwargs.{key}: unknown for {env_id}; {choices_hint(key, _KWARGS[env_id])}"
                )
            if key == "opponent" and value not in (None, "none", "random"):
                raise ConfigError(f"env.kwargs.opponent: must be none or random, got {value!r}")
            if key in ("rows", "columns", "memory_length", "num_bits") and (
                isinstance(value, bool) or not isinstance(value, int)
            ):
                raise ConfigError(f"env.kwargs.{key} must be an int, got {value!r}")

    def time_limit(self, env_id: str, cfg: EnvConfig, evaluation: bool) -> int | None:
        """Every game ends by itself: at most 9 / 42 plies, Catch after ``rows - 1`` steps (or
        the config's limit if shorter)."""
        n = _natural_length(env_id, cfg)
        return n if cfg.max_episode_steps is None else min(cfg.max_episode_steps, n)

    def reward_threshold(self, env: gym.Env, cfg: EnvConfig) -> float | None:
        if cfg.reward_threshold is not None:
            return cfg.reward_threshold
        return CATCH_SOLVED if isinstance(env, (CatchEnv, MemoryLengthEnv)) else None

    def action_meanings(self, env: gym.Env, env_id: str) -> tuple[str, ...]:
        return ("LEFT", "STAY", "RIGHT") if env_id == "Catch-v0" else ()

    def make(
        self, env_id: str, cfg: EnvConfig, evaluation: bool = False, render: bool = False
    ) -> gym.Env:
        env = make_game(env_id, render_mode="rgb_array" if render else None, **cfg.kwargs)
        # Games end by themselves: a TimeLimit of their length would also flag the last step
        # truncated, so one is only added for a shorter configured limit.
        limit = cfg.max_episode_steps
        if limit is not None and limit < _natural_length(env_id, cfg):
            return TimeLimit(env, limit)
        return env


GAME_FAMILY = GameFamily()
for _env_id in GAMES:
    ENVS.add(_env_id, GAME_FAMILY)

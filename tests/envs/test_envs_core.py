"""The shared vector-env logic against a scripted raw backend: raw episode statistics,
reward clipping and episodic life, whatever the backend."""

from __future__ import annotations

import numpy as np
import pytest

from reprl.envs.core import CoreVectorEnv, RawStep
from reprl.errors import EnvError
from reprl.types import EnvSpec

SPEC = EnvSpec(
    env_id="Scripted-v0",
    obs_shape=(1,),
    obs_dtype=np.dtype(np.float32),
    action_type="discrete",
    num_actions=4,
)


class ScriptedVectorEnv(CoreVectorEnv):
    """One env replaying raw ``(reward, terminated, truncated, lives)`` rows."""

    backend = "scripted"

    def __init__(self, script: list[tuple[float, bool, bool, int]], **kwargs: bool) -> None:
        super().__init__(SPEC, 1, seed=0, **kwargs)
        self.script = script
        self.t = 0
        self.actions: list[int] = []

    def _reset_envs(self, seeds: list[int] | None) -> tuple[np.ndarray, np.ndarray | None]:
        return np.zeros((1, 1), np.float32), np.array([3])

    def _step_envs(self, actions: np.ndarray) -> RawStep:
        self.actions.append(int(actions[0]))
        reward, term, trunc, lives = self.script[self.t]
        self.t += 1
        obs = np.full((1, 1), self.t, np.float32)
        return obs, np.array([reward]), np.array([term]), np.array([trunc]), np.array([lives])

    def close(self) -> None:
        pass


# raw rows of one game with 3 lives: (reward, terminated, truncated, lives)
GAME = [
    (5.0, False, False, 3),
    (0.0, False, False, 2),  # life lost
    (2.0, False, False, 2),  # the step after a life loss
    (-3.0, False, False, 2),
    (0.0, True, False, 0),  # game over: raw return 5 + 2 - 3 = 4 over 5 steps
    (0.0, False, False, 3),  # next-step autoreset (backend): reward 0, flags false
    (7.0, False, False, 3),
]


def run(
    script: list[tuple[float, bool, bool, int]], **kwargs: bool
) -> tuple[list, ScriptedVectorEnv]:
    env = ScriptedVectorEnv(script, **kwargs)
    env.reset()
    return [env.step(np.array([3])) for _ in script], env


def test_raw_stats_without_transforms() -> None:
    results, env = run(GAME)
    assert [r.reward[0] for r in results] == [5, 0, 2, -3, 0, 0, 7]
    assert [r.terminated[0] for r in results] == [False] * 4 + [True, False, False]
    ended = [i for i, r in enumerate(results) if not np.isnan(r.episode_return[0])]
    assert ended == [4]
    assert results[4].episode_return[0] == 4.0 and results[4].episode_length[0] == 5
    assert all(r.episode_length[0] == 0 for i, r in enumerate(results) if i != 4)
    assert env.actions == [3] * 7


def test_clipping_and_episodic_life_keep_raw_stats() -> None:
    results, env = run(GAME, episodic_life=True, clip_rewards=True)
    # clipped rewards, the step after the life loss reports 0 and was a NOOP
    assert [r.reward[0] for r in results] == [1, 0, 0, -1, 0, 0, 1]
    assert [r.terminated[0] for r in results] == [False, True, False, False, True, False, False]
    assert env.actions == [3, 3, 0, 3, 3, 3, 3]
    # statistics: only at the real game over, raw and over the whole game
    ended = [i for i, r in enumerate(results) if not np.isnan(r.episode_return[0])]
    assert ended == [4]
    assert results[4].episode_return[0] == 4.0 and results[4].episode_length[0] == 5


def test_truncation_reports_stats_and_resets_accumulators() -> None:
    script = [
        (1.0, False, False, 0),
        (2.0, False, True, 0),
        (0.0, False, False, 0),
        (4.0, True, False, 0),
    ]
    results, _ = run(script)
    assert results[1].truncated[0] and results[1].episode_return[0] == 3.0
    assert results[3].episode_return[0] == 4.0 and results[3].episode_length[0] == 1


def test_step_before_reset_raises() -> None:
    env = ScriptedVectorEnv(GAME)
    with pytest.raises(EnvError, match="reset"):
        env.step(np.array([0]))


def test_action_shape_checked() -> None:
    env = ScriptedVectorEnv(GAME)
    env.reset()
    with pytest.raises(ValueError, match="expected 1 discrete actions"):
        env.step(np.array([0, 1]))

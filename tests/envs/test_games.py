"""Games with plain-data state (reprl/envs/games.py): rules, state round trips, bsuite Catch."""

from __future__ import annotations

import numpy as np
import pytest

from reprl.envs import EnvConfig, list_env_ids, make_vector_env
from reprl.envs.games import CatchEnv, ConnectFourEnv, MemoryLengthEnv, TicTacToeEnv, make_game


def play(env, actions):
    out = None
    for a in actions:
        out = env.step(a)
    return out


@pytest.mark.parametrize(
    "moves",
    [
        [0, 3, 1, 4, 2],  # top row
        [0, 1, 3, 2, 6],  # left column
        [0, 1, 4, 2, 8],  # main diagonal
        [2, 0, 4, 1, 6],  # anti-diagonal
    ],
)
def test_tictactoe_wins(moves: list[int]) -> None:
    env = TicTacToeEnv()
    env.reset(seed=0)
    for a in moves[:-1]:
        _, r, term, _, _ = env.step(a)
        assert r == 0 and not term
    _, r, term, _, info = env.step(moves[-1])
    assert r == 1.0 and term and not info["action_mask"].any()


def test_tictactoe_draw_and_masks() -> None:
    env = TicTacToeEnv()
    obs, info = env.reset(seed=0)
    assert obs.shape == (3, 3, 3) and info["action_mask"].all()
    # X O X / X O O / O X X: a full board without a line
    moves = [0, 1, 2, 4, 3, 5, 7, 6, 8]
    for i, a in enumerate(moves):
        _, r, term, _, info = env.step(a)
        assert r == 0 and term == (i == 8)
        if not term:
            assert not info["action_mask"][moves[: i + 1]].any()
    # the observation is from the mover's view: after X's move, O's pieces are plane 0
    env.reset(seed=0)
    obs, *_ = env.step(4)
    assert obs[1, 1, 1] == 1 and obs[0].sum() == 0 and obs[2].sum() == 0


def test_illegal_move_loses() -> None:
    env = TicTacToeEnv()
    env.reset(seed=0)
    env.step(4)
    _, r, term, _, _ = env.step(4)
    assert r == -1.0 and term


def test_connect_four_gravity_and_win() -> None:
    env = ConnectFourEnv()
    env.reset(seed=0)
    _, r, term, _, _ = play(env, [3, 4, 3, 4, 3, 4])
    assert env.board[5, 3] == 1 and env.board[3, 4] == 2 and not term
    _, r, term, _, _ = env.step(3)
    assert r == 1.0 and term
    env.reset(seed=0)
    play(env, [0] * 6)
    assert not env.action_mask()[0] and env.action_mask()[1:].all()


@pytest.mark.parametrize(
    "env_id", ["TicTacToe-v0", "ConnectFour-v0", "Catch-v0", "MemoryLength-v0"]
)
def test_state_round_trip(env_id: str) -> None:
    env = make_game(env_id)
    env.reset(seed=3)
    rng = np.random.default_rng(0)
    env.step(int(rng.choice(np.flatnonzero(env.action_mask()))))
    saved = env.get_state()
    obs = env.observation()
    trail = []
    for _ in range(3):
        legal = np.flatnonzero(env.action_mask())
        a = int(rng.choice(legal))
        out = env.step(a)
        trail.append((a, out[0], out[1], out[2]))
        if out[2]:
            break
    env.set_state(saved)
    np.testing.assert_array_equal(env.observation(), obs)
    for a, o, r, term in trail:  # replaying from the restored state gives the same steps
        o2, r2, term2, _, _ = env.step(a)
        np.testing.assert_array_equal(o, o2)
        assert (r, term) == (r2, term2)
    # the saved state does not alias the live env
    env.set_state(saved)
    env.step(int(np.flatnonzero(env.action_mask())[0]))
    np.testing.assert_array_equal(make_copy(env_id, saved).observation(), obs)


def make_copy(env_id: str, state):
    env = make_game(env_id)
    env.set_state(state)
    return env


def bsuite_catch(rows: int, columns: int, ball_x: int, actions: list[int]):
    """Transcription of bsuite's Catch._step (bsuite/environments/catch.py)."""
    paddle_x, paddle_y = columns // 2, rows - 1
    out = []
    for ball_y, action in enumerate(actions, start=1):  # the ball drops one row per step
        paddle_x = int(np.clip(paddle_x + (-1, 0, 1)[action], 0, columns - 1))
        if ball_y == paddle_y:
            out.append((1.0 if paddle_x == ball_x else -1.0, True, paddle_x))
            break
        out.append((0.0, False, paddle_x))
    return out


def test_catch_matches_bsuite() -> None:
    rng = np.random.default_rng(0)
    for episode in range(30):
        env = CatchEnv()
        obs, _ = env.reset(seed=episode)
        assert obs.shape == (1, 10, 5) and obs[0, 0].sum() == 1 and obs[0, 9, 2] == 1
        actions = rng.integers(3, size=9).tolist()
        ref = bsuite_catch(10, 5, env.ball_x, actions)
        for t, (a, (r, term, paddle)) in enumerate(zip(actions, ref, strict=False)):
            obs, r2, term2, trunc, _ = env.step(a)
            assert (r2, term2, trunc, env.paddle_x) == (r, term, False, paddle)
            assert obs[0, min(t + 1, 9), env.ball_x] == 1
        assert len(ref) == 9 and ref[-1][1]


@pytest.mark.parametrize(("memory_length", "num_bits"), [(1, 1), (6, 1), (4, 3)])
def test_memory_length_rules(memory_length: int, num_bits: int) -> None:
    """bsuite's memory_len: the cue on the first observation only, the query on the last, +1
    for the queried bit and -1 otherwise after ``memory_length + 1`` actions."""
    rewards = {0: [], 1: []}
    for episode in range(40):
        env = MemoryLengthEnv(memory_length, num_bits)
        obs, _ = env.reset(seed=episode)
        cue = obs[2:].copy()
        assert obs.shape == (num_bits + 2,) and obs[0] == 1.0 and set(cue) <= {-1.0, 1.0}
        guess = episode % 2
        for t in range(memory_length + 1):
            assert obs[0] == pytest.approx(1 - t / memory_length)
            if t > 0:
                assert not obs[2:].any()  # the cue is gone after the first observation
            assert obs[1] == (env.query if t == memory_length else 0)
            obs, reward, term, trunc, _ = env.step(guess)
            assert term == (t == memory_length) and not trunc
        right = int(cue[env.query] > 0)
        assert reward == (1.0 if guess == right else -1.0)
        rewards[guess].append(reward)
        with pytest.raises(RuntimeError, match="reset"):
            env.step(0)
    # a fixed guess is right half of the time: chance is a mean return of 0
    assert all(abs(np.mean(r)) < 0.6 for r in rewards.values())


def test_family_vector_env_and_opponent() -> None:
    assert {"TicTacToe-v0", "ConnectFour-v0", "Catch-v0"} <= set(list_env_ids())
    envs = make_vector_env(
        EnvConfig(id="TicTacToe-v0", num_envs=4, kwargs={"opponent": "random"}), seed=0
    )
    envs.reset(seed=0)
    rng = np.random.default_rng(0)
    returns = []
    for _ in range(100):
        res = envs.step(rng.integers(9, size=4))
        returns += res.episode_return[res.episode_length > 0].tolist()
    envs.close()
    assert returns and set(returns) <= {-1.0, 0.0, 1.0}

"""Backends against the shared contract: next-step autoreset, seeding, raw Atari statistics."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from reprl.envs import AtariConfig, EnvConfig, StepResult, VectorEnv, make_vector_env

HAS_ENVPOOL = importlib.util.find_spec("envpool") is not None
BACKENDS = ["sync", "async"] + (["envpool"] if HAS_ENVPOOL else [])


def rollout(env: VectorEnv, actions: np.ndarray) -> list[StepResult]:
    return [env.step(a) for a in actions]


def first_done(results: list[StepResult]) -> tuple[int, int]:
    """(step, env) of the first episode end."""
    for t, r in enumerate(results):
        done = np.flatnonzero(r.terminated | r.truncated)
        if done.size:
            return t, int(done[0])
    raise AssertionError("no episode ended")


@pytest.mark.parametrize("backend", BACKENDS)
def test_next_step_autoreset_cartpole(backend: str) -> None:
    cfg = EnvConfig(id="CartPole-v1", num_envs=4, backend=backend)
    rng = np.random.default_rng(0)
    with make_vector_env(cfg, seed=0) as env:
        env.reset()
        results = rollout(env, rng.integers(0, 2, (120, 4)))
    t, i = first_done(results)
    ended, after = results[t], results[t + 1]
    # the ended step holds the final observation and the raw statistics
    assert ended.episode_length[i] == ended.episode_return[i] == t + 1
    assert abs(ended.obs[i][2]) > 0.2 or abs(ended.obs[i][0]) > 2.4
    # the next step: action ignored, new episode's first obs, reward 0, flags false
    assert after.reward[i] == 0.0 and not after.terminated[i] and not after.truncated[i]
    assert np.all(np.abs(after.obs[i]) <= 0.05)
    assert np.isnan(after.episode_return[i]) and after.episode_length[i] == 0
    # the episode after counts from the step after the reset step
    for r in results[t + 2 :]:
        if r.terminated[i] or r.truncated[i]:
            assert r.episode_length[i] == r.episode_return[i]
            break
    # statistics only where an episode ended
    for r in results:
        done = r.terminated | r.truncated
        assert np.all(np.isnan(r.episode_return) == ~done)


def test_sync_and_async_identical_and_seeded_per_env() -> None:
    """Same seed and actions: same trajectories on both backends; env i is seeded seed + i."""
    actions = np.random.default_rng(1).integers(0, 2, (60, 3))
    out = {}
    for backend in BACKENDS:
        cfg = EnvConfig(id="CartPole-v1", num_envs=3, backend=backend)
        with make_vector_env(cfg, seed=10) as env:
            obs = env.reset()
            out[backend] = (obs, rollout(env, actions))
    (obs_s, res_s), (obs_a, res_a) = out["sync"], out["async"]
    np.testing.assert_array_equal(obs_s, obs_a)
    for rs, ra in zip(res_s, res_a, strict=True):
        np.testing.assert_array_equal(rs.obs, ra.obs)
        np.testing.assert_array_equal(rs.reward, ra.reward)
        np.testing.assert_array_equal(rs.terminated | rs.truncated, ra.terminated | ra.truncated)
    with make_vector_env(EnvConfig(id="CartPole-v1", num_envs=1), seed=12) as single:
        np.testing.assert_array_equal(single.reset()[0], obs_s[2])


def test_evaluation_time_limit_and_max_episode_steps() -> None:
    cfg = EnvConfig(id="Pendulum-v1", num_envs=2, max_episode_steps=7)
    with make_vector_env(cfg, seed=0, evaluation=True) as env:
        assert env.spec.max_episode_steps == 7
        env.reset()
        results = rollout(env, np.zeros((7, 2, 1), np.float32))
        assert results[-1].truncated.all() and not results[-2].truncated.any()
        np.testing.assert_array_equal(results[-1].episode_length, [7, 7])


ATARI_BACKENDS = ["sync", "async", "ale"]


@pytest.mark.atari
@pytest.mark.parametrize("backend", ATARI_BACKENDS)
def test_atari_short_run(backend: str) -> None:
    """~200 steps of Breakout with clipping and episodic life on every backend."""
    atari = AtariConfig(episodic_life=True, clip_rewards=True)
    cfg = EnvConfig(id="ALE/Breakout-v5", num_envs=2, backend=backend, atari=atari)
    rng = np.random.default_rng(0)
    with make_vector_env(cfg, seed=0) as env:
        obs = env.reset()
        assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
        results = rollout(env, rng.integers(0, 4, (200, 2)))
    rewards = np.stack([r.reward for r in results])
    assert set(np.unique(rewards)) <= {-1.0, 0.0, 1.0}
    assert all(r.obs.shape == (2, 4, 84, 84) and r.obs.dtype == np.uint8 for r in results)
    terminations = sum(int(r.terminated.sum()) for r in results)
    assert terminations >= 2, "random Breakout loses lives within 200 steps"


@pytest.mark.atari
def test_atari_next_step_autoreset_ale() -> None:
    cfg = EnvConfig(id="ALE/Breakout-v5", num_envs=2, backend="ale")
    rng = np.random.default_rng(0)
    with make_vector_env(cfg, seed=0, evaluation=True) as env:
        env.reset()
        results = rollout(env, rng.integers(0, 4, (700, 2)))
    t, i = first_done(results)
    after = results[t + 1]
    assert after.reward[i] == 0 and not after.terminated[i] and not after.truncated[i]
    assert np.all(after.obs[i, :-1] == 0) and after.obs[i, -1].any()  # zero-padded stack
    assert results[t].episode_length[i] == t + 1


@pytest.mark.atari
@pytest.mark.parametrize("backend", ["sync", "ale"] + (["envpool"] if HAS_ENVPOOL else []))
def test_atari_stats_raw_under_clipping_and_episodic_life(backend: str) -> None:
    """SpaceInvaders scores 5-30 per alien: with clipping on, the reported return must still be
    the unclipped game score, equal to the one reported with clipping off; with episodic life
    the learner sees a termination per life but the statistics cover the whole game."""
    actions = np.random.default_rng(0).integers(0, 6, (1500, 1))

    def game(clip: bool, episodic_life: bool) -> tuple[float, int, float, int]:
        atari = AtariConfig(clip_rewards=clip, episodic_life=episodic_life, noop_max=0)
        cfg = EnvConfig(id="ALE/SpaceInvaders-v5", num_envs=1, backend=backend, atari=atari)
        with make_vector_env(cfg, seed=3) as env:
            env.reset()
            reported, terminations = 0.0, 0
            for a in actions:
                r = env.step(a)
                reported += float(r.reward[0])
                terminations += int(r.terminated[0])
                if not np.isnan(r.episode_return[0]):
                    return (
                        float(r.episode_return[0]),
                        int(r.episode_length[0]),
                        reported,
                        terminations,
                    )
        raise AssertionError("game did not end")

    raw_return, raw_length, raw_reported, raw_terms = game(clip=False, episodic_life=False)
    clip_return, clip_length, clip_reported, _ = game(clip=True, episodic_life=False)
    assert raw_return == raw_reported and raw_terms == 1
    assert clip_return == raw_return and clip_length == raw_length
    assert clip_reported < raw_return
    life_return, life_length, _, life_terms = game(clip=True, episodic_life=True)
    assert life_terms == 3, "SpaceInvaders has 3 lives: 2 life losses + the game over"
    assert life_return >= 5 * life_terms and life_length > 100

"""Exact resume: a restored vector env steps on exactly as the saved one."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from reprl.envs import AtariConfig, EnvConfig, make_vector_env
from reprl.runs import checkpoint as ckpt

EXACT_IDS = ["CartPole-v1", "Acrobot-v1", "MountainCar-v0", "Pendulum-v1", "Taxi-v4"]


def actions_for(env: Any, steps: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    spec, n = env.spec, env.num_envs
    if spec.discrete:
        return rng.integers(0, spec.num_actions, (steps, n))
    return rng.uniform(-3, 3, (steps, n, *spec.action_shape)).astype(np.float32)


def only_plain(x: Any) -> None:
    if isinstance(x, dict):
        for k, v in x.items():
            assert isinstance(k, str)
            only_plain(v)
    elif isinstance(x, list):
        for v in x:
            only_plain(v)
    else:
        assert x is None or isinstance(x, (bool, int, float, str, np.ndarray)), type(x)
        assert not isinstance(x, np.ndarray) or x.dtype != object


through_checkpoint = ckpt.round_trip


def check_resume(env_id: str, backend_a: str, backend_b: str, **kwargs: Any) -> None:
    cfg_a = EnvConfig(id=env_id, num_envs=3, backend=backend_a, **kwargs)
    cfg_b = EnvConfig(id=env_id, num_envs=3, backend=backend_b, **kwargs)
    with make_vector_env(cfg_a, seed=1) as a, make_vector_env(cfg_b, seed=99) as b:
        assert a.supports_exact_resume() and b.supports_exact_resume()
        a.reset()
        for act in actions_for(a, 37, 0):
            a.step(act)
        state = a.state_dict()
        only_plain(state)
        state = through_checkpoint(state)
        b.load_state_dict(state)
        np.testing.assert_array_equal(a.last_obs, b.last_obs)
        for act in actions_for(a, 200, 1):
            ra, rb = a.step(act), b.step(act)
            np.testing.assert_array_equal(ra.obs, rb.obs)
            np.testing.assert_array_equal(ra.reward, rb.reward)
            np.testing.assert_array_equal(ra.terminated, rb.terminated)
            np.testing.assert_array_equal(ra.truncated, rb.truncated)
            np.testing.assert_array_equal(ra.episode_return, rb.episode_return)
            np.testing.assert_array_equal(ra.episode_length, rb.episode_length)


@pytest.mark.parametrize("env_id", EXACT_IDS)
@pytest.mark.parametrize("max_episode_steps", [None, 60])
def test_exact_resume_sync(env_id: str, max_episode_steps: int | None) -> None:
    check_resume(env_id, "sync", "sync", max_episode_steps=max_episode_steps)


def test_exact_resume_across_backends() -> None:
    check_resume("CartPole-v1", "sync", "async", max_episode_steps=30)


def test_exact_resume_with_normalization() -> None:
    check_resume("Pendulum-v1", "sync", "sync", normalize_obs=True, normalize_reward=True)


@pytest.mark.atari
def test_exact_resume_atari() -> None:
    """Emulator (with its sticky-action RNG), frame buffers, frame stack, episodic-life and
    statistics state all restored."""
    atari = AtariConfig(sticky_actions=0.25, episodic_life=True, clip_rewards=True)
    check_resume("ALE/Breakout-v5", "sync", "async", atari=atari)


@pytest.mark.parametrize(
    ("env_id", "backend"),
    [("LunarLander-v3", "sync"), pytest.param("ALE/Pong-v5", "ale", marks=pytest.mark.atari)],
)
def test_no_exact_resume_marker(env_id: str, backend: str) -> None:
    cfg = EnvConfig(id=env_id, num_envs=1, backend=backend)
    with make_vector_env(cfg, seed=0) as env:
        env.reset()
        assert not env.supports_exact_resume()
        state = env.state_dict()
        assert state["exact_resume"] is False and "envs" not in state
        env.load_state_dict(state)  # restores nothing: the caller resets and warns

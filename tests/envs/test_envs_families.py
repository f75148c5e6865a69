"""Every env family makes, resets and steps, with the spec it advertises."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from reprl.envs import AtariConfig, EnvConfig, list_env_ids, make_env_spec, make_vector_env
from reprl.errors import EnvError
from reprl.types import EnvSpec

CLASSIC = ["CartPole-v1", "Acrobot-v1", "MountainCar-v0", "Pendulum-v1", "MountainCarContinuous-v0"]
BOX2D = ["LunarLander-v3", "LunarLanderContinuous-v3"]


def random_actions(spec: EnvSpec, n: int, rng: np.random.Generator) -> np.ndarray:
    if spec.discrete:
        return rng.integers(0, spec.num_actions, n)
    return rng.uniform(-2.0, 2.0, (n, *spec.action_shape)).astype(np.float32)


def run(env_id: str, steps: int = 20, n: int = 2, **kwargs: object) -> EnvSpec:
    cfg = EnvConfig(id=env_id, num_envs=n, **kwargs)  # type: ignore[arg-type]
    spec = make_env_spec(cfg)
    rng = np.random.default_rng(0)
    with make_vector_env(cfg, seed=0) as env:
        assert env.spec.obs_shape == spec.obs_shape and env.spec.num_actions == spec.num_actions
        obs = env.reset()
        assert obs.shape == (n, *spec.obs_shape) and obs.dtype == spec.obs_dtype
        for _ in range(steps):
            result = env.step(random_actions(spec, n, rng))
            assert result.obs.shape == (n, *spec.obs_shape) and result.obs.dtype == spec.obs_dtype
            assert result.reward.shape == (n,) and result.reward.dtype == np.float32
            assert result.terminated.dtype == bool and result.truncated.dtype == bool
            assert result.episode_return.dtype == np.float64
            assert result.episode_length.dtype == np.int64
    return spec


@pytest.mark.parametrize("env_id", CLASSIC + BOX2D)
def test_vector_families_make_reset_step(env_id: str) -> None:
    spec = run(env_id)
    assert spec.obs_dtype == np.float32
    assert spec.max_episode_steps is not None
    if spec.discrete:
        assert spec.num_actions == len(spec.action_meanings) > 1
    else:
        assert spec.action_low is not None and spec.action_high is not None
        assert np.all(spec.action_low < spec.action_high)


def test_lunar_lander_variants() -> None:
    assert make_env_spec(EnvConfig(id="LunarLander-v3")).discrete
    continuous = make_env_spec(EnvConfig(id="LunarLanderContinuous-v3"))
    assert continuous.action_type == "continuous" and continuous.action_shape == (2,)
    via_kwargs = make_env_spec(EnvConfig(id="LunarLander-v3", kwargs={"continuous": True}))
    assert via_kwargs.action_shape == (2,)


@pytest.mark.parametrize("env_id", ["Taxi-v3", "Taxi-v4"])
def test_taxi_one_hot(env_id: str) -> None:
    spec = run(env_id)
    assert spec.obs_shape == (500,) and spec.obs_dtype == np.float32 and spec.num_actions == 6
    with make_vector_env(EnvConfig(id=env_id, num_envs=3), seed=1) as env:
        obs = env.reset()
        assert np.all(obs.sum(axis=1) == 1.0) and set(np.unique(obs)) == {0.0, 1.0}


def test_continuous_actions_clipped_to_bounds() -> None:
    """Pendulum's reward depends on the torque: an action far out of bounds must act as the
    bound, and the caller's array must stay untouched."""
    cfg = EnvConfig(id="Pendulum-v1", num_envs=2)
    with make_vector_env(cfg, seed=3) as a, make_vector_env(cfg, seed=3) as b:
        a.reset()
        b.reset()
        raw = np.array([[100.0], [-100.0]], np.float32)
        ra = a.step(raw)
        rb = b.step(np.array([[2.0], [-2.0]], np.float32))
        np.testing.assert_array_equal(ra.reward, rb.reward)
        np.testing.assert_array_equal(ra.obs, rb.obs)
        assert raw[0, 0] == 100.0


@pytest.mark.atari
def test_atari_breakout_preprocessing() -> None:
    spec = run("ALE/Breakout-v5", steps=10)
    assert spec.obs_shape == (4, 84, 84) and spec.obs_dtype == np.uint8
    assert spec.action_meanings == ("NOOP", "FIRE", "RIGHT", "LEFT")
    assert spec.max_episode_steps == 108_000 // 4
    v4 = make_env_spec(EnvConfig(id="BreakoutNoFrameskip-v4"))
    assert v4.obs_shape == spec.obs_shape and v4.action_meanings == spec.action_meanings
    full = make_env_spec(EnvConfig(id="ALE/Breakout-v5", atari=AtariConfig(full_action_space=True)))
    assert full.num_actions == 18


def test_list_env_ids() -> None:
    ids = list_env_ids()
    for env_id in CLASSIC + BOX2D + ["Taxi-v4", "ALE/Pong-v5", "ALE/MontezumaRevenge-v5"]:
        assert env_id in ids
    assert ids == sorted(ids)


@pytest.mark.atari
@pytest.mark.parametrize("backend", ["sync", "async", "ale"])
def test_render_first_atari(backend: str) -> None:
    """Evaluation videos: RGB frames of env 0 (ale renders through the sync backend)."""
    cfg = EnvConfig(id="ALE/Pong-v5", num_envs=2, backend=backend)
    with make_vector_env(cfg, seed=0, evaluation=True, render=True) as env:
        env.reset()
        env.step(np.zeros(2, np.int64))
        frame = env.render_first()
    assert frame.shape == (210, 160, 3) and frame.dtype == np.uint8 and frame.any()


@pytest.mark.skipif(importlib.util.find_spec("pygame") is not None, reason="pygame installed")
def test_render_without_pygame_is_a_clear_error() -> None:
    with make_vector_env(EnvConfig(id="CartPole-v1", num_envs=1), seed=0, render=True) as env:
        env.reset()
        with pytest.raises(EnvError, match="pygame"):
            env.render_first()

"""Configuration mistakes fail with a ConfigError (or EnvError) that names the fix."""

from __future__ import annotations

import importlib.util

import pytest

from reprl.envs import AtariConfig, EnvConfig, make_env_spec, make_vector_env
from reprl.errors import ConfigError, EnvError


def test_unknown_env_id() -> None:
    with pytest.raises(
        ConfigError, match=r"unknown env id 'CartPole-v2'; did you mean 'CartPole-v1'\?"
    ) as err:
        make_vector_env(EnvConfig(id="CartPole-v2"), seed=0)
    message = str(err.value)
    assert "ALE/<Game>-v5" in message and "Taxi-v4" in message and "LunarLander-v3" in message
    assert "ALE/Pong-v5" not in message  # games are not listed one by one


@pytest.mark.atari
def test_unknown_atari_game() -> None:
    with pytest.raises(ConfigError, match=r"did you mean 'ALE/Breakout-v5'\?"):
        make_env_spec(EnvConfig(id="ALE/Breakot-v5"))


def test_unknown_backend() -> None:
    with pytest.raises(ConfigError, match=r"unknown vector backend 'asink'; did you mean 'async'"):
        make_vector_env(EnvConfig(backend="asink"), seed=0)


def test_ale_backend_needs_atari() -> None:
    with pytest.raises(ConfigError, match="'ale' runs Atari games only"):
        make_vector_env(EnvConfig(id="CartPole-v1", backend="ale"), seed=0)
    with pytest.raises(ConfigError, match=r"env\.kwargs"):
        make_vector_env(EnvConfig(id="ALE/Pong-v5", backend="ale", kwargs={"mode": 1}), seed=0)


@pytest.mark.parametrize(
    ("cfg", "key"),
    [
        (EnvConfig(num_envs=0), "num_envs"),
        (EnvConfig(max_episode_steps=0), "max_episode_steps"),
        (EnvConfig(num_workers=-1), "num_workers"),
        (EnvConfig(id="ALE/Pong-v5", atari=AtariConfig(frame_skip=0)), "frame_skip"),
        (EnvConfig(id="ALE/Pong-v5", atari=AtariConfig(sticky_actions=1.5)), "sticky_actions"),
    ],
)
def test_inconsistent_options(cfg: EnvConfig, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        make_vector_env(cfg, seed=0)


def test_num_envs_argument_checked() -> None:
    with pytest.raises(ConfigError, match="num_envs"):
        make_vector_env(EnvConfig(), seed=0, num_envs=0)


@pytest.mark.skipif(importlib.util.find_spec("envpool") is not None, reason="envpool installed")
def test_envpool_missing() -> None:
    with pytest.raises(EnvError, match=r"pip install 'reprl\[envpool\]'"):
        make_vector_env(EnvConfig(id="CartPole-v1", backend="envpool"), seed=0)


def test_envpool_unsupported_id() -> None:
    with pytest.raises(ConfigError, match="envpool"):
        make_vector_env(EnvConfig(id="Taxi-v4", backend="envpool"), seed=0)


@pytest.mark.skipif(importlib.util.find_spec("envpool") is None, reason="envpool not installed")
def test_envpool_runs() -> None:
    import numpy as np

    with make_vector_env(EnvConfig(id="CartPole-v1", num_envs=2, backend="envpool"), seed=0) as env:
        env.reset()
        for _ in range(50):
            r = env.step(np.zeros(2, np.int64))
        assert r.obs.shape == (2, 4)


@pytest.mark.atari
def test_evaluation_always_has_a_time_limit() -> None:
    unlimited = EnvConfig(id="ALE/Pong-v5", atari=AtariConfig(max_frames_per_episode=0))
    assert make_env_spec(unlimited).max_episode_steps is None
    assert make_env_spec(unlimited, evaluation=True).max_episode_steps == 27_000
    limited = EnvConfig(id="ALE/Pong-v5", max_episode_steps=500)
    assert make_env_spec(limited, evaluation=True).max_episode_steps == 500
    assert make_env_spec(EnvConfig(id="CartPole-v1"), evaluation=True).max_episode_steps == 500

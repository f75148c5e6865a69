"""A crashed async worker raises an EnvError naming the env and the worker, never hangs."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

from reprl.envs import EnvConfig, make_vector_env
from reprl.envs.subproc import AsyncVectorEnv
from reprl.errors import EnvError


def make(num_envs: int = 4) -> AsyncVectorEnv:
    env = make_vector_env(
        EnvConfig(id="CartPole-v1", num_envs=num_envs, backend="async", num_workers=2), seed=0
    )
    assert isinstance(env, AsyncVectorEnv)
    return env


def test_exception_inside_env_step() -> None:
    env = make()
    env.reset()
    env.step(np.zeros(4, np.int64))
    start = time.monotonic()
    with pytest.raises(
        EnvError, match=r"CartPole-v1: async env worker 1 \(envs 2\.\.3\) crashed"
    ) as err:
        env.step(np.array([0, 1, 0, 7]))  # CartPole asserts its action is valid
    assert "AssertionError" in str(err.value)
    assert time.monotonic() - start < 10
    with pytest.raises(EnvError, match="closed"):
        env.step(np.zeros(4, np.int64))


def test_killed_worker() -> None:
    env = make()
    env.reset()
    os.kill(env._procs[0].pid, signal.SIGKILL)  # type: ignore[arg-type]
    start = time.monotonic()
    with pytest.raises(EnvError, match=r"CartPole-v1: async env worker 0 .*died"):
        for _ in range(10):
            env.step(np.zeros(4, np.int64))
    assert time.monotonic() - start < 10
    assert not any(p.is_alive() for p in env._procs)


def test_close_is_idempotent_and_stops_workers() -> None:
    env = make(3)
    env.reset()
    procs = list(env._procs)
    env.close()
    env.close()
    assert not any(p.is_alive() for p in procs)

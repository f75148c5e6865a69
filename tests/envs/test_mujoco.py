"""Gymnasium's MuJoCo v5 family: specs, vector stepping on both backends, time limits,
seeding, rendering and bit-identical exact resume."""

from __future__ import annotations

import dataclasses
import importlib.util
from typing import Any

import numpy as np
import pytest

pytest.importorskip("mujoco", reason="mujoco not installed: pip install 'reprl[mujoco]'")

from reprl.envs import EnvConfig, make_env_spec, make_vector_env  # noqa: E402
from reprl.envs.mujoco import MUJOCO  # noqa: E402
from reprl.errors import EnvError  # noqa: E402
from reprl.runs import checkpoint as ckpt  # noqa: E402

OBS_DIMS = {
    "HalfCheetah-v5": (17, 6),
    "Hopper-v5": (11, 3),
    "Walker2d-v5": (17, 6),
    "Ant-v5": (105, 8),
    "Humanoid-v5": (348, 17),
    "Swimmer-v5": (8, 2),
    "InvertedPendulum-v5": (4, 1),
    "Reacher-v5": (10, 2),
}


def actions(spec: Any, steps: int, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(-1.0, 1.0, (steps, n, *spec.action_shape)).astype(np.float32)


@pytest.mark.parametrize("env_id", sorted(OBS_DIMS))
def test_specs(env_id: str) -> None:
    spec = make_env_spec(EnvConfig(id=env_id))
    obs_dim, act_dim = OBS_DIMS[env_id]
    assert spec.obs_shape == (obs_dim,) and spec.obs_dtype == np.float32
    assert spec.action_type == "continuous" and spec.action_shape == (act_dim,)
    assert spec.action_low is not None and spec.action_high is not None
    assert spec.action_low.dtype == np.float32 and np.all(spec.action_low < spec.action_high)
    assert spec.max_episode_steps == (50 if env_id == "Reacher-v5" else 1000)
    assert spec.frame_stack == 1
    assert set(MUJOCO.ids()) >= set(OBS_DIMS)


@pytest.mark.parametrize("backend", ["sync", "async"])
def test_vector_steps_with_time_limit(backend: str) -> None:
    """300 steps of 2 envs, truncated (never terminated) every 40 steps, then autoreset."""
    cfg = EnvConfig(id="HalfCheetah-v5", num_envs=2, backend=backend, max_episode_steps=40)
    with make_vector_env(cfg, seed=0) as env:
        obs = env.reset()
        assert obs.shape == (2, 17) and obs.dtype == np.float32
        ends = 0
        for t, act in enumerate(actions(env.spec, 300, 2, 0)):
            r = env.step(act)
            assert r.obs.dtype == np.float32 and np.all(np.isfinite(r.obs))
            assert not r.terminated.any()  # HalfCheetah never terminates
            assert r.truncated.all() == ((t + 1) % 41 == 40)
            ends += int(r.truncated.all())
            if r.truncated.any():
                np.testing.assert_array_equal(r.episode_length, [40, 40])
        assert ends == 7


def test_hopper_terminates() -> None:
    """Hopper falls over under large random torques: a termination, not a truncation."""
    with make_vector_env(EnvConfig(id="Hopper-v5", num_envs=1), seed=0) as env:
        env.reset()
        flags = [env.step(a) for a in actions(env.spec, 200, 1, 1)]
        assert any(r.terminated[0] for r in flags) and not any(r.truncated[0] for r in flags)


def test_same_seed_same_observations() -> None:
    cfg = EnvConfig(id="Walker2d-v5", num_envs=2)
    with make_vector_env(cfg, seed=3) as a, make_vector_env(cfg, seed=3) as b:
        np.testing.assert_array_equal(a.reset(), b.reset())
        for act in actions(a.spec, 20, 2, 0):
            np.testing.assert_array_equal(a.step(act).obs, b.step(act).obs)
    with make_vector_env(cfg, seed=3) as a, make_vector_env(cfg, seed=4) as c:
        assert not np.array_equal(a.reset(), c.reset())


def test_kwargs_reach_the_env() -> None:
    kwargs = {"exclude_current_positions_from_observation": False}
    spec = make_env_spec(EnvConfig(id="HalfCheetah-v5", kwargs=kwargs))
    assert spec.obs_shape == (18,)


def test_render() -> None:
    cfg = EnvConfig(id="InvertedPendulum-v5", num_envs=1, kwargs={"width": 64, "height": 48})
    with make_vector_env(cfg, seed=0, evaluation=True, render=True) as env:
        env.reset()
        frame = env.render_first()
    assert frame.shape == (48, 64, 3) and frame.dtype == np.uint8 and frame.any()


through_checkpoint = ckpt.round_trip


@pytest.mark.parametrize(
    ("env_id", "backend_b"),
    [("HalfCheetah-v5", "sync"), ("Ant-v5", "async"), ("Humanoid-v5", "sync")],
)
def test_exact_resume(env_id: str, backend_b: str) -> None:
    """A restored env continues bit-identically, across episode ends. Ant and Humanoid read
    positions derived from the state (xpos, xipos) before stepping, so those must be restored
    too, not recomputed."""
    cfg = EnvConfig(id=env_id, num_envs=2, max_episode_steps=25)
    with (
        make_vector_env(cfg, seed=1) as a,
        make_vector_env(dataclasses.replace(cfg, backend=backend_b), seed=9) as b,
    ):
        assert a.supports_exact_resume()
        a.reset()
        for act in actions(a.spec, 17, 2, 0):
            a.step(act)
        b.load_state_dict(through_checkpoint(a.state_dict()))
        np.testing.assert_array_equal(a.last_obs, b.last_obs)
        for act in actions(a.spec, 60, 2, 1):
            ra, rb = a.step(act), b.step(act)
            np.testing.assert_array_equal(ra.obs, rb.obs)
            np.testing.assert_array_equal(ra.reward, rb.reward)
            np.testing.assert_array_equal(ra.terminated, rb.terminated)
            np.testing.assert_array_equal(ra.truncated, rb.truncated)


def test_missing_mujoco_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "mujoco" else real(name, *a)
    )
    with pytest.raises(EnvError, match=r"pip install 'reprl\[mujoco\]'"):
        MUJOCO.make("Hopper-v5", EnvConfig(id="Hopper-v5"))

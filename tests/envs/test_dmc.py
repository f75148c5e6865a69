"""DeepMind Control Suite family: ids, specs, action repeat against raw dm_control, time
limits as truncation, zero-padded pixel stacks on both backends, seeding, config errors."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

pytest.importorskip("dm_control", reason="dm_control not installed: pip install 'reprl[mujoco]'")

import dm_env  # noqa: E402

from reprl.envs import EnvConfig, list_env_ids, make_env_spec, make_vector_env  # noqa: E402
from reprl.envs.config import DMCConfig  # noqa: E402
from reprl.envs.dmc import DMC, DMCEnv, _suite  # noqa: E402
from reprl.envs.family import resolve_env  # noqa: E402
from reprl.errors import ConfigError  # noqa: E402

STATE_DIMS = {
    "dmc/walker-walk": (24, 6),
    "dmc/cheetah-run": (17, 6),
    "dmc/cartpole-swingup": (5, 1),
    "dmc/ball_in_cup-catch": (8, 2),
    "dmc/finger-spin": (9, 2),
    "dmc/reacher-easy": (6, 2),
}
PIXELS = DMCConfig(from_pixels=True, height=32, width=40, frame_stack=3, action_repeat=8)


def actions(spec: Any, steps: int, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(-1.0, 1.0, (steps, n, *spec.action_shape)).astype(np.float32)


@pytest.mark.parametrize("env_id", sorted(STATE_DIMS))
def test_state_specs(env_id: str) -> None:
    spec = make_env_spec(EnvConfig(id=env_id))
    obs_dim, act_dim = STATE_DIMS[env_id]
    assert spec.obs_shape == (obs_dim,) and spec.obs_dtype == np.float32
    assert spec.action_type == "continuous" and spec.action_shape == (act_dim,)
    np.testing.assert_array_equal(spec.action_low, -np.ones(act_dim, np.float32))
    np.testing.assert_array_equal(spec.action_high, np.ones(act_dim, np.float32))
    assert spec.max_episode_steps == 1000 and spec.frame_stack == 1
    assert spec.reward_threshold is None


def test_pixel_spec_and_time_limits() -> None:
    cfg = EnvConfig(id="dmc/cheetah-run", dmc=DMCConfig(from_pixels=True, action_repeat=4))
    spec = make_env_spec(cfg)
    assert spec.obs_shape == (9, 84, 84) and spec.obs_dtype == np.uint8
    assert spec.frame_stack == 3 and spec.max_episode_steps == 250
    no_stack = dataclasses.replace(cfg, dmc=DMCConfig(from_pixels=True, frame_stack=1))
    assert make_env_spec(no_stack).obs_shape == (3, 84, 84)
    repeat3 = EnvConfig(id="dmc/walker-walk", dmc=DMCConfig(action_repeat=3))
    assert DMC.time_limit(repeat3.id, repeat3, evaluation=False) == 334  # ceil(1000 / 3)
    lqr = EnvConfig(id="dmc/lqr-lqr_2_1")  # no time limit in dm_control
    assert DMC.time_limit(lqr.id, lqr, evaluation=False) is None
    assert DMC.time_limit(lqr.id, lqr, evaluation=True) == 1000


def test_ids_and_unknown_names() -> None:
    ids = list_env_ids()
    for env_id in STATE_DIMS:
        assert env_id in ids
    assert resolve_env("dmc/quadruped-run") is DMC  # in ALL_TASKS, not in BENCHMARKING
    with pytest.raises(ConfigError, match="did you mean 'dmc/walker-walk'"):
        make_env_spec(EnvConfig(id="dmc/walker-walkk"))
    with pytest.raises(ConfigError, match="did you mean 'dmc/ball_in_cup-catch'"):
        resolve_env("dmc/ball_in_cup-cach")
    with pytest.raises(ConfigError, match="unknown env id 'dmc/walker'"):
        resolve_env("dmc/walker")


@pytest.mark.parametrize(
    ("dmc", "backend", "match"),
    [
        (DMCConfig(action_repeat=0), "sync", "env.dmc.action_repeat"),
        (DMCConfig(from_pixels=True, frame_stack=0), "sync", "env.dmc.frame_stack"),
        (DMCConfig(from_pixels=True, height=0), "sync", "env.dmc.height"),
        (DMCConfig(camera_id=-3), "sync", "env.dmc.camera_id"),
        (DMCConfig(from_pixels=True), "envpool", "env.dmc.from_pixels"),
    ],
)
def test_bad_options(dmc: DMCConfig, backend: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        make_env_spec(EnvConfig(id="dmc/walker-walk", backend=backend, dmc=dmc))


def test_bad_options_found_at_make(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="env.dmc.camera_id 5 does not exist"):
        make_env_spec(EnvConfig(id="dmc/walker-walk", dmc=DMCConfig(from_pixels=True, camera_id=5)))
    with pytest.raises(ConfigError, match="env.dmc.width 4000"):
        make_env_spec(EnvConfig(id="dmc/walker-walk", dmc=DMCConfig(from_pixels=True, width=4000)))
    with pytest.raises(ConfigError, match="env.kwargs.random"):
        make_env_spec(EnvConfig(id="dmc/walker-walk", kwargs={"random": 3}))
    monkeypatch.setenv("MUJOCO_GL", "disable")
    with pytest.raises(ConfigError, match="MUJOCO_GL=disable"):
        make_env_spec(EnvConfig(id="dmc/walker-walk", dmc=DMCConfig(from_pixels=True)))


def test_action_repeat_matches_raw_dm_control() -> None:
    """A whole cartpole episode with action repeat 3: observations equal the raw env's, each
    reward is the sum over the repeated control steps, the 334th step is cut to 1 control step
    by the 1000-step limit and ends the episode as a truncation."""
    cfg = EnvConfig(id="dmc/cartpole-swingup", dmc=DMCConfig(action_repeat=3))
    env = DMC.make(cfg.id, cfg)
    raw = _suite().load("cartpole", "swingup", task_kwargs={"random": 7})
    obs, _ = env.reset(seed=7)
    first = raw.reset().observation
    want = np.concatenate([first["position"], first["velocity"]]).astype(np.float32)
    np.testing.assert_array_equal(obs, want)
    rng = np.random.default_rng(0)
    for t in range(334):
        action = rng.uniform(-1, 1, 1).astype(np.float32)
        obs, reward, terminated, truncated, _ = env.step(action)
        expected, control_steps = 0.0, 0
        while control_steps < 3:
            time_step = raw.step(action.astype(np.float64))
            expected += time_step.reward
            control_steps += 1
            if time_step.last():
                break
        assert reward == expected
        want = time_step.observation
        np.testing.assert_array_equal(
            obs, np.concatenate([want["position"], want["velocity"]]).astype(np.float32)
        )
        assert not terminated and truncated == (t == 333)
    assert control_steps == 1 and time_step.last() and time_step.discount == 1.0
    env.close()


def test_time_limit_override() -> None:
    """env.max_episode_steps replaces dm_control's limit, longer or shorter."""
    for limit in (7, 1100):
        cfg = EnvConfig(id="dmc/walker-walk", num_envs=1, max_episode_steps=limit)
        with make_vector_env(cfg, seed=0) as env:
            env.reset()
            results = [env.step(a) for a in actions(env.spec, limit, 1, 0)]
        assert [bool(r.truncated[0]) for r in results] == [False] * (limit - 1) + [True]
        assert not any(r.terminated[0] for r in results)


def test_discount_zero_is_a_termination() -> None:
    env = DMCEnv("cartpole", "balance", DMCConfig(action_repeat=2))
    env.reset(seed=0)

    class Ending:
        """dm_control env stub whose next step ends the episode with a given discount."""

        def __init__(self, discount: float) -> None:
            self.discount = discount

        def step(self, action: np.ndarray) -> dm_env.TimeStep:
            obs = {"position": np.zeros(3), "velocity": np.zeros(2)}
            return dm_env.TimeStep(dm_env.StepType.LAST, 0.5, self.discount, obs)

    real = env._env
    for discount, flags in ((0.0, (True, False)), (1.0, (False, True))):
        env._env = Ending(discount)
        _, reward, terminated, truncated, _ = env.step(np.zeros(1, np.float32))
        assert reward == 0.5 and (terminated, truncated) == flags  # stopped after 1 of 2
    env._env = real
    env.close()


@pytest.mark.parametrize("backend", ["sync", "async"])
def test_pixels_through_vector_env(backend: str) -> None:
    """uint8 frames stacked oldest first, zero-padded after every reset (autoresets too)."""
    n = 1 if backend == "sync" else 2  # async: one worker (dm_control imports once), 2 envs
    cfg = EnvConfig(id="dmc/cheetah-run", num_envs=n, backend=backend, num_workers=1, dmc=PIXELS)
    cfg = dataclasses.replace(cfg, max_episode_steps=12)
    with make_vector_env(cfg, seed=0) as env:
        assert env.spec.frame_stack == 3 and env.spec.obs_shape == (9, 32, 40)
        prev = env.reset()
        assert prev.dtype == np.uint8 and not prev[:, :6].any() and prev[:, 6:].any()
        for t, act in enumerate(actions(env.spec, 30, n, 0)):
            r = env.step(act)
            assert r.obs.shape == (n, 9, 32, 40) and r.obs.dtype == np.uint8
            assert not r.terminated.any() and r.truncated.all() == (t % 13 == 11)
            if t % 13 == 12:  # autoreset step: a new episode's first frame, zero-padded
                assert not r.obs[:, :6].any() and r.obs[:, 6:].any()
            else:  # the older frames move one slot back
                np.testing.assert_array_equal(r.obs[:, :6], prev[:, 3:])
            prev = r.obs


def test_same_seed_same_observations() -> None:
    cfg = EnvConfig(id="dmc/reacher-easy", num_envs=2)
    with make_vector_env(cfg, seed=5) as a, make_vector_env(cfg, seed=5) as b:
        obs = a.reset()
        np.testing.assert_array_equal(obs, b.reset())
        assert not np.array_equal(obs[0], obs[1])  # env i is seeded seed + i
        for act in actions(a.spec, 30, 2, 0):
            np.testing.assert_array_equal(a.step(act).obs, b.step(act).obs)
    pixels = EnvConfig(id="dmc/cartpole-swingup", dmc=PIXELS)
    env = DMC.make(pixels.id, pixels)
    first, _ = env.reset(seed=1)
    np.testing.assert_array_equal(env.reset(seed=1)[0], first)
    assert not np.array_equal(env.reset(seed=2)[0], first)
    env.close()


def test_render() -> None:
    with make_vector_env(EnvConfig(id="dmc/walker-walk", num_envs=1), seed=0, render=True) as env:
        env.reset()
        frame = env.render_first()
    assert frame.shape == (256, 256, 3) and frame.dtype == np.uint8 and frame.any()

"""JAX envs (gymnax twins of the classic-control tasks, Craftax) on the ``jax`` backend,
checked against a slow reference that replays one env with gymnax's own unjitted functions.
Skipped without the jax extra, except the checks that need no JAX."""

from __future__ import annotations

import importlib.util
import sys
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch

from reprl.envs import EnvConfig, list_env_ids, make_env_spec, make_vector_env
from reprl.envs.base import VectorEnv
from reprl.envs.jax_envs import CRAFTAX, GYMNAX
from reprl.errors import ConfigError, EnvError
from reprl.runs import checkpoint as ckpt

HAS_JAX = all(importlib.util.find_spec(m) for m in ("jax", "gymnax", "craftax"))
needs_jax = pytest.mark.skipif(
    not HAS_JAX, reason="jax extra not installed: pip install 'reprl[jax]'"
)
CARTPOLE = "gymnax/CartPole-v1"


def jax_cfg(env_id: str = CARTPOLE, num_envs: int = 4, **kwargs: Any) -> EnvConfig:
    return EnvConfig(id=env_id, num_envs=num_envs, backend="jax", **kwargs)


# ---------------------------------------------------------------------------- without JAX
def test_ids_listed_without_importing_jax() -> None:
    ids = list_env_ids()
    for name in ("CartPole-v1", "Acrobot-v1", "MountainCar-v0", "Pendulum-v1"):
        assert f"gymnax/{name}" in ids
    assert {"craftax/Craftax-Symbolic-v1", "craftax/Craftax-Classic-Symbolic-v1"} <= set(ids)


def test_missing_jax_is_a_one_line_env_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "jax", None)  # `import jax` raises ImportError
    for env_id in (CARTPOLE, "craftax/Craftax-Symbolic-v1"):
        with pytest.raises(EnvError) as info:
            make_env_spec(jax_cfg(env_id))
        assert "pip install 'reprl[jax]'" in str(info.value) and "\n" not in str(info.value)


def test_backend_and_kwargs_checks() -> None:
    with pytest.raises(ConfigError, match="runs JAX envs only.*valid: .*gymnax/CartPole-v1"):
        make_env_spec(EnvConfig(id="CartPole-v1", backend="jax"))
    with pytest.raises(ConfigError, match="use env.backend=jax"):
        make_env_spec(EnvConfig(id=CARTPOLE, backend="ale"))
    with pytest.raises(ConfigError, match="reset_batch must be an integer >= 1"):
        make_env_spec(jax_cfg(kwargs={"reset_batch": 0}))
    with pytest.raises(ConfigError, match="env.max_episode_steps"):
        make_env_spec(jax_cfg(kwargs={"max_steps_in_episode": 10}))


# ---------------------------------------------------------------------------- reference
class Reference:
    """Env i of a ``jax`` vector env seeded ``seed``, replayed alone with gymnax's unjitted
    ``reset_env``/``step_env`` and the backend's documented key schedule: key
    ``PRNGKey(seed + i)``, split before each step and each reset; the step after an episode
    ends resets (after a wasted step's split) and reports reward 0, both flags false."""

    def __init__(self, env_id: str, seed: int, i: int, limit: int) -> None:
        import jax

        self.jax = jax
        task = GYMNAX.task(env_id, jax_cfg(env_id))
        self.env, self.params, self.limit = task.env, task.params, limit
        self.key = jax.random.PRNGKey(seed + i)
        self.obs = self._reset()
        self.pending, self.elapsed, self.ret = False, 0, 0.0

    def _split(self) -> Any:
        pair = self.jax.random.split(self.key)
        self.key = pair[0]
        return pair[1]

    def _reset(self) -> np.ndarray:
        obs, self.state = self.env.reset_env(self._split(), self.params)
        return np.asarray(obs)

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, float, int]:
        """``(obs, reward, terminated, truncated, episode_return, episode_length)``."""
        sub = self._split()
        if self.pending:
            self.obs, self.pending, self.elapsed, self.ret = self._reset(), False, 0, 0.0
            return self.obs, 0.0, False, False, np.nan, 0
        obs, self.state, reward, term, _ = self.env.step_env(sub, self.state, action, self.params)
        self.obs, self.elapsed = np.asarray(obs), self.elapsed + 1
        self.ret += float(reward)
        trunc = self.elapsed >= self.limit
        self.pending = bool(term) or trunc
        ended = (self.ret, self.elapsed) if self.pending else (np.nan, 0)
        return self.obs, float(reward), bool(term), trunc, *ended


def random_actions(env: VectorEnv, steps: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    spec, n = env.spec, env.num_envs
    if spec.discrete:
        return rng.integers(0, spec.num_actions, (steps, n))
    return rng.uniform(-3, 3, (steps, n, *spec.action_shape)).astype(np.float32)


# ---------------------------------------------------------------------------- gymnax
@needs_jax
def test_gymnax_specs_match_gymnasium() -> None:
    cartpole = make_env_spec(jax_cfg())
    assert cartpole.obs_shape == (4,) and cartpole.obs_dtype == np.float32
    assert cartpole.num_actions == 2 and cartpole.action_meanings == ("PUSH_LEFT", "PUSH_RIGHT")
    assert cartpole.reward_threshold == 475.0 and cartpole.max_episode_steps == 500
    pendulum = make_env_spec(jax_cfg("gymnax/Pendulum-v1"))
    assert pendulum.action_type == "continuous" and pendulum.action_shape == (1,)
    np.testing.assert_array_equal(pendulum.action_low, [-2.0])
    np.testing.assert_array_equal(pendulum.action_high, [2.0])
    assert pendulum.max_episode_steps == 200 and pendulum.reward_threshold is None
    assert make_env_spec(jax_cfg("gymnax/MountainCar-v0")).reward_threshold == -110.0
    with pytest.raises(ConfigError, match="env.kwargs.gravty: unknown.*did you mean 'gravity'"):
        make_env_spec(jax_cfg(kwargs={"gravty": 9.0}))


@needs_jax
@pytest.mark.parametrize("env_id", [CARTPOLE, "gymnax/Acrobot-v1", "gymnax/Pendulum-v1"])
def test_steps_match_the_reference(env_id: str) -> None:
    """Next-step autoreset (final obs, then the new episode's first obs with reward 0 and
    flags false), terminated vs truncated at the time limit, raw episode statistics, seeding
    of env i by ``seed + i``, and batched resets of 2 envs at a time (more are pending when
    several episodes end together)."""
    n, seed, limit = 5, 7, 12
    cfg = jax_cfg(env_id, n, max_episode_steps=limit, kwargs={"reset_batch": 2})
    refs = [Reference(env_id, seed, i, limit) for i in range(n)]
    seen = {"terminated": 0, "truncated": 0, "reset": 0}
    with make_vector_env(cfg, seed=seed) as env:
        obs = env.reset()
        np.testing.assert_allclose(obs, [r.obs for r in refs], rtol=1e-5, atol=1e-6)
        for actions in random_actions(env, 60, 0):
            res = env.step(actions)
            for i, ref in enumerate(refs):
                action = actions[i] if env.spec.discrete else np.clip(actions[i], -2.0, 2.0)
                was_pending = ref.pending
                r_obs, r_rew, r_term, r_trunc, r_ret, r_len = ref.step(action)
                np.testing.assert_allclose(res.obs[i], r_obs, rtol=1e-5, atol=1e-5)
                assert res.reward[i] == pytest.approx(r_rew, rel=1e-5, abs=1e-5)
                assert (res.terminated[i], res.truncated[i]) == (r_term, r_trunc)
                assert res.episode_length[i] == r_len
                np.testing.assert_allclose(res.episode_return[i], r_ret, rtol=1e-5)
                seen["terminated"] += r_term
                seen["truncated"] += r_trunc and not r_term
                seen["reset"] += was_pending
    if env_id == CARTPOLE:  # random CartPole episodes end both ways within 12 steps
        assert seen["terminated"] and seen["truncated"]
    assert seen["reset"] >= n


@needs_jax
def test_truncation_at_the_time_limit() -> None:
    """Alternating pushes keep the pole up: every env is truncated (not terminated) after
    exactly 5 steps, and the step after it starts the next episode: 4 envs reset by batches of
    3, each with its own fresh state."""
    cfg = jax_cfg(max_episode_steps=5, kwargs={"reset_batch": 3})
    with make_vector_env(cfg, seed=0) as env:
        assert env.spec.max_episode_steps == 5
        env.reset()
        for t in range(12):
            res = env.step(np.full(4, t % 2))
            ends = t in (4, 10)
            assert not res.terminated.any()
            assert res.truncated.all() == ends and res.truncated.any() == ends
            if ends:
                np.testing.assert_array_equal(res.episode_length, 5)
                np.testing.assert_array_equal(res.episode_return, 5.0)
            if t == 5:  # the reset step
                np.testing.assert_array_equal(res.reward, 0.0)
                assert np.abs(res.obs).max() <= 0.05  # CartPole's initial states
                assert len({tuple(o) for o in res.obs}) == 4


@needs_jax
def test_seeding_is_per_env_and_reproducible() -> None:
    def rollout(seed: int, n: int) -> np.ndarray:
        with make_vector_env(jax_cfg(num_envs=n), seed=seed) as env:
            frames = [env.reset().copy()]
            acts = np.random.default_rng(0).integers(0, 2, (40, 4))[:, :n]
            frames += [env.step(a).obs.copy() for a in acts]
        return np.stack(frames, axis=1)  # (N, T, 4)

    a = rollout(3, 4)
    np.testing.assert_array_equal(a, rollout(3, 4))
    assert not np.allclose(a[0], a[1])  # envs differ
    assert not np.allclose(a, rollout(4, 4))
    # env 2 of seed 3 is env 0 of seed 5 (same actions): independent of num_envs
    two = np.random.default_rng(0).integers(0, 2, (40, 4))[:, 2]
    with make_vector_env(jax_cfg(num_envs=1), seed=5) as env:
        alone = [env.reset()[0].copy()] + [
            env.step(two[t : t + 1]).obs[0].copy() for t in range(40)
        ]
    np.testing.assert_allclose(a[2], np.stack(alone), rtol=1e-6, atol=1e-7)


@needs_jax
@pytest.mark.parametrize(
    ("env_id", "backend"),
    [(CARTPOLE, "jax"), ("gymnax/Pendulum-v1", "jax"), (CARTPOLE, "sync")],
)
def test_exact_resume(env_id: str, backend: str) -> None:
    cfg = EnvConfig(id=env_id, num_envs=3, backend=backend, max_episode_steps=20)
    with make_vector_env(cfg, seed=1) as a, make_vector_env(cfg, seed=99) as b:
        assert a.supports_exact_resume()
        a.reset()
        for act in random_actions(a, 37, 0):
            a.step(act)
        b.load_state_dict(ckpt.round_trip(a.state_dict()))
        np.testing.assert_array_equal(a.last_obs, b.last_obs)
        for act in random_actions(a, 80, 1):
            ra, rb = a.step(act), b.step(act)
            for field in ("obs", "reward", "terminated", "truncated", "episode_length"):
                np.testing.assert_array_equal(getattr(ra, field), getattr(rb, field))
            np.testing.assert_array_equal(ra.episode_return, rb.episode_return)


@needs_jax
def test_continuous_actions_clipped() -> None:
    cfg = jax_cfg("gymnax/Pendulum-v1", 2)
    with make_vector_env(cfg, seed=3) as a, make_vector_env(cfg, seed=3) as b:
        a.reset()
        b.reset()
        raw = np.array([[100.0], [-100.0]], np.float32)
        ra, rb = a.step(raw), b.step(np.array([[2.0], [-2.0]], np.float32))
        np.testing.assert_array_equal(ra.reward, rb.reward)
        np.testing.assert_array_equal(ra.obs, rb.obs)
        assert raw[0, 0] == 100.0


@needs_jax
def test_observations_are_views_and_compile_once() -> None:
    # own params (gravity restated): jitted functions of its own, whose compilations we count
    cfg = jax_cfg(kwargs={"reset_batch": 3, "gravity": 9.8})
    with make_vector_env(cfg, seed=0) as env:
        env.reset()
        for act in random_actions(env, 50, 0):
            res = env.step(act)
        assert not res.obs.flags.owndata and res.obs.flags.writeable  # a view of JAX's buffer
        assert torch.from_numpy(res.obs).data_ptr() == res.obs.ctypes.data  # no copy either
        fns = env._fns  # one compilation for the initial reset and the autoresets
        assert fns.step._cache_size() == 1 and fns.reset_into._cache_size() == 1


@needs_jax
def test_sync_backend_and_rendering() -> None:
    """Backend sync runs each env through JaxGymEnv: the same episodes as the jax backend
    (random actions: several end); both render env 0 with the gymnasium twin's renderer."""
    acts = np.random.default_rng(0).integers(0, 2, (40, 2))
    results, ends = {}, 0
    for backend in ("sync", "jax"):
        cfg = EnvConfig(id=CARTPOLE, num_envs=2, backend=backend)
        with make_vector_env(cfg, seed=4, evaluation=True, render=True) as env:
            obs = [env.reset().copy()]
            for a in acts:
                res = env.step(a)
                obs.append(res.obs.copy())
                ends += backend == "jax" and res.terminated.sum()
            frame = env.render_first()
            assert frame.dtype == np.uint8 and frame.shape == (400, 600, 3) and frame.std() > 0
            results[backend] = np.stack(obs)
    assert ends >= 2
    np.testing.assert_allclose(results["sync"], results["jax"], rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------------------- Craftax
@pytest.fixture(scope="module")
def craftax() -> Iterator[VectorEnv]:
    """Two Craftax-Symbolic envs with 100-step episodes (the tiny ppo_craftax run uses the
    same shapes, so one compilation serves both; ~50 s cold, seconds from JAX's cache)."""
    cfg = jax_cfg("craftax/Craftax-Symbolic-v1", 2, max_episode_steps=100)
    with make_vector_env(cfg, seed=0) as env:
        start = time.perf_counter()
        env.reset()
        env.step(np.zeros(2, np.int64))
        print(f"Craftax compile + first step: {time.perf_counter() - start:.1f} s")
        yield env


@needs_jax
def test_craftax_specs() -> None:
    full = make_env_spec(jax_cfg("craftax/Craftax-Symbolic-v1"))
    assert full.obs_shape == (8268,) and full.obs_dtype == np.float32 and full.num_actions == 43
    assert full.max_episode_steps == 100_000 and full.action_meanings[:2] == ("NOOP", "LEFT")
    classic = make_env_spec(jax_cfg("craftax/Craftax-Classic-Symbolic-v1"))
    assert classic.obs_shape == (1345,) and classic.num_actions == 17
    assert classic.max_episode_steps == 10_000
    assert CRAFTAX.reset_batch(jax_cfg()) == 4


@needs_jax
def test_craftax_random_steps_and_resume(craftax: VectorEnv) -> None:
    """300 random steps: float observations in [0, 1], episodes that end by death
    (terminated) or at the 100-step limit (truncated), and an exact resume."""
    env = craftax
    env.reset(seed=1)
    lengths: list[int] = []
    for t, act in enumerate(random_actions(env, 300, 0)):
        res = env.step(act)
        assert res.obs.shape == (2, 8268) and res.obs.dtype == np.float32
        assert res.obs.min() >= 0.0 and res.obs.max() <= 1.0 and np.isfinite(res.reward).all()
        ended = res.episode_length > 0
        lengths += res.episode_length[ended].tolist()
        assert (res.episode_length[res.truncated] == 100).all()
        assert (res.episode_length[res.terminated] < 100).all()
        if t == 150:
            state = ckpt.round_trip(env.state_dict())
            after = random_actions(env, 20, 1)
            expected = [env.step(a) for a in after]
    assert len(lengths) >= 4 and max(lengths) == 100
    env.load_state_dict(state)
    for act, exp in zip(after, expected, strict=True):
        res = env.step(act)
        np.testing.assert_array_equal(res.obs, exp.obs)
        np.testing.assert_array_equal(res.reward, exp.reward)
        np.testing.assert_array_equal(
            res.terminated | res.truncated, exp.terminated | exp.truncated
        )

"""DeepSea and Chain: rewards, action maps, one-hot observations, seeding, exact resume, and a
training run through the config system."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from reprl.config import load_config
from reprl.envs import EnvConfig, list_env_ids, make_env_spec, make_vector_env, resolve_env
from reprl.envs.exploration import ChainEnv, DeepSeaEnv
from reprl.errors import ConfigError
from reprl.runs import checkpoint as ckpt
from reprl.train import train


def play(env: Any, policy: Any) -> tuple[float, int, bool, bool]:
    """One episode of a single env: ``(return, length, terminated, truncated)``."""
    env.reset()
    total, steps = 0.0, 0
    while True:
        _, reward, terminated, truncated, _ = env.step(policy(env))
        total += float(reward)
        steps += 1
        if terminated or truncated:
            return total, steps, terminated, truncated


def optimal(env: Any) -> int:
    return env.unwrapped.optimal_action()


# ----------------------------------------------------------------------------- DeepSea


@pytest.mark.parametrize("size", [2, 10, 20])
def test_deep_sea_optimal_path_finds_the_treasure(size: int) -> None:
    env = resolve_env(f"DeepSea-{size}-v0").make(f"DeepSea-{size}-v0", EnvConfig())
    ret, steps, terminated, truncated = play(env, optimal)
    assert ret == pytest.approx(1.0 - 0.01) and steps == size
    assert terminated and not truncated


def test_deep_sea_rewards_of_other_paths() -> None:
    """Every other path returns at most 0: the move costs and no treasure."""
    env = DeepSeaEnv(5, randomize_actions=False)  # action 1 = right everywhere
    assert play(env, lambda e: 0) == (0.0, 5, True, False)
    ret, steps, _, _ = play(env, lambda e: 1 if e._row < 4 else 0)  # left on the last step
    assert ret == pytest.approx(-4 * 0.01 / 5) and steps == 5
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)


def test_deep_sea_random_policy_almost_never_finds_the_treasure() -> None:
    """A uniformly random policy succeeds with probability 2^-N (bsuite's point)."""
    rng = np.random.default_rng(0)
    random_policy = lambda e: int(rng.integers(2))  # noqa: E731
    for size, episodes in [(4, 4000), (10, 1000)]:
        env = DeepSeaEnv(size)
        hits = sum(play(env, random_policy)[0] > 0 for _ in range(episodes))
        expected = episodes * 2.0**-size
        assert abs(hits - expected) <= 5 * np.sqrt(expected) + 1, (size, hits, expected)
    assert hits <= 5  # N = 10: ~1 success in 1000 episodes


def test_deep_sea_action_map() -> None:
    """Which action moves right is drawn per cell from ``mapping_seed`` once, so every env of a
    vector env and every evaluation env share one map; the reset seed does not change it."""
    a, b, c = DeepSeaEnv(10), DeepSeaEnv(10), DeepSeaEnv(10, mapping_seed=1)
    a.reset(seed=0)
    b.reset(seed=123)
    assert np.array_equal(a._right_action, b._right_action)
    assert not np.array_equal(a._right_action, c._right_action)
    assert 20 < a._right_action.sum() < 80  # both actions move right somewhere
    assert np.all(DeepSeaEnv(10, randomize_actions=False)._right_action == 1)

    cfg = EnvConfig(id="DeepSea-10-v0", num_envs=4)
    probe = DeepSeaEnv(10)
    with make_vector_env(cfg, seed=7) as env, make_vector_env(cfg, seed=0, evaluation=True) as ev:
        for vec in (env, ev):
            vec.reset()
            probe.reset()
            for _ in range(10):
                result = vec.step(np.full(4, probe.optimal_action()))
                probe.step(probe.optimal_action())
            np.testing.assert_allclose(result.episode_return, 0.99, rtol=1e-6)


def test_deep_sea_one_hot_observations() -> None:
    env = DeepSeaEnv(6)
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(1)
    for step in range(6):
        assert obs.dtype == np.float32 and obs.shape == (36,)
        assert obs.sum() == 1.0 and set(np.unique(obs)) == {0.0, 1.0}
        row, col = divmod(int(obs.argmax()), 6)
        assert (row, col) == (env._row, env._col) and row == step
        obs, *_ = env.step(int(rng.integers(2)))
    assert obs.sum() == 1.0 and divmod(int(obs.argmax()), 6)[0] == 5  # last row after the end


def test_render_frames() -> None:
    cfg = EnvConfig(id="DeepSea-10-v0", num_envs=1)
    with make_vector_env(cfg, seed=0, render=True) as env:
        env.reset()
        frame = env.render_first()
    assert frame.shape == (80, 80, 3) and frame.dtype == np.uint8
    chain = ChainEnv(12, render_mode="rgb_array")
    chain.reset()
    assert chain.render().shape == (8, 96, 3)  # type: ignore[union-attr]
    assert DeepSeaEnv(3).render() is None


# ----------------------------------------------------------------------------- Chain


def test_chain_rewards_and_time_limit() -> None:
    family = resolve_env("Chain-10-v0")
    env = family.make("Chain-10-v0", EnvConfig())
    assert play(env, optimal) == (1.0, 8, True, False)  # N - 2 steps right from state 1
    ret, steps, terminated, truncated = play(env, lambda e: 1 - optimal(e))  # always left
    assert steps == 19 and truncated and not terminated  # N + 9 steps
    assert ret == pytest.approx(19 * 0.001)  # the distractor on every step at the left end
    short = family.make("Chain-10-v0", EnvConfig(max_episode_steps=5))
    assert play(short, optimal)[1:] == (5, False, True)


def test_chain_random_policy_success_rate() -> None:
    """Exact success probability of a random walk from state 1 within N + 9 steps (computed by
    dynamic programming): 7.5% for N = 10, 6e-4 for N = 20."""

    def exact(n: int) -> float:
        p, success = np.eye(n)[1], 0.0
        for _ in range(n + 9):
            q = np.zeros(n)
            q[1:] += 0.5 * p[:-1]  # right (the goal state is absorbing and removed below)
            np.add.at(q, np.maximum(np.arange(n - 1) - 1, 0), 0.5 * p[:-1])  # left, clipped at 0
            success += q[-1]
            q[-1] = 0.0
            p = q
        return success

    assert exact(10) == pytest.approx(0.0754, abs=1e-4)
    assert exact(20) == pytest.approx(6.06e-4, rel=1e-2)
    rng = np.random.default_rng(0)
    env = resolve_env("Chain-10-v0").make("Chain-10-v0", EnvConfig())
    episodes = 4000
    hits = sum(play(env, lambda e: int(rng.integers(2)))[0] >= 1.0 for _ in range(episodes))
    expected = episodes * exact(10)
    assert abs(hits - expected) <= 5 * np.sqrt(expected)


def test_chain_action_map_and_observations() -> None:
    assert np.all(ChainEnv(10)._right_action == 1)  # Osband et al. 2016: action 1 is right
    shuffled = ChainEnv(10, randomize_actions=True, mapping_seed=3)
    assert 0 < shuffled._right_action.sum() < 10
    assert play(shuffled, optimal)[0] == 1.0
    obs, _ = shuffled.reset()
    assert obs.dtype == np.float32 and obs.shape == (10,) and obs[1] == 1.0 and obs.sum() == 1.0


# ----------------------------------------------------------------------------- the family


def test_ids_specs_and_config_errors() -> None:
    ids = list_env_ids()
    assert "DeepSea-10-v0" in ids and "Chain-20-v0" in ids
    spec = make_env_spec(EnvConfig(id="DeepSea-13-v0"))
    assert spec.obs_shape == (169,) and spec.obs_dtype == np.float32 and spec.num_actions == 2
    assert spec.max_episode_steps == 13 and spec.reward_threshold == 0.9
    assert spec.action_meanings == ("LEFT", "RIGHT")
    assert make_env_spec(EnvConfig(id="Chain-20-v0")).max_episode_steps == 29
    assert make_env_spec(EnvConfig(id="DeepSea-10-v0", max_episode_steps=4)).max_episode_steps == 4
    for bad in ("DeepSea-1-v0", "DeepSea-010-v0", "Chain-2-v0", "DeepSea-10-v1"):
        with pytest.raises(ConfigError, match="unknown env id"):
            make_env_spec(EnvConfig(id=bad))
    with pytest.raises(ConfigError, match=r"env.kwargs.mapping_sed: .*mapping_seed"):
        make_env_spec(EnvConfig(id="DeepSea-10-v0", kwargs={"mapping_sed": 1}))
    with pytest.raises(ConfigError, match="randomize_actions"):
        make_env_spec(EnvConfig(id="Chain-10-v0", kwargs={"randomize_actions": "yes"}))
    custom = EnvConfig(id="DeepSea-10-v0", kwargs={"mapping_seed": 5}, reward_threshold=0.5)
    assert make_env_spec(custom).reward_threshold == 0.5


@pytest.mark.parametrize("backend", ["sync", "async"])
def test_vector_env_seeding_reproducible(backend: str) -> None:
    def rollout(seed: int) -> list[np.ndarray]:
        cfg = EnvConfig(id="Chain-20-v0", num_envs=3, backend=backend, num_workers=2)
        rng = np.random.default_rng(0)
        out = []
        with make_vector_env(cfg, seed=seed) as env:
            out.append(env.reset())
            for _ in range(80):
                r = env.step(rng.integers(0, 2, 3))
                assert r.obs.dtype == np.float32 and np.all(r.obs.sum(axis=1) == 1.0)
                out += [r.obs, r.reward, r.terminated, r.truncated]
        return out

    for x, y in zip(rollout(1), rollout(1), strict=True):
        np.testing.assert_array_equal(x, y)


through_checkpoint = ckpt.round_trip


@pytest.mark.parametrize(
    ("env_id", "backend_b"),
    [("DeepSea-8-v0", "sync"), ("DeepSea-8-v0", "async"), ("Chain-12-v0", "async")],
)
def test_exact_resume(env_id: str, backend_b: str) -> None:
    """A restored vector env steps on exactly as the saved one (mid-episode and across episode
    ends; the snapshot holds positions, the action map, time-limit counters and RNGs)."""
    kwargs = {"randomize_actions": True, "mapping_seed": 4}
    cfg_a = EnvConfig(id=env_id, num_envs=3, kwargs=kwargs)
    cfg_b = EnvConfig(id=env_id, num_envs=3, backend=backend_b, num_workers=2, kwargs=kwargs)
    rng = np.random.default_rng(0)
    with make_vector_env(cfg_a, seed=1) as a, make_vector_env(cfg_b, seed=99) as b:
        assert a.supports_exact_resume() and b.supports_exact_resume()
        a.reset()
        for _ in range(13):
            a.step(rng.integers(0, 2, 3))
        b.load_state_dict(through_checkpoint(a.state_dict()))
        np.testing.assert_array_equal(a.last_obs, b.last_obs)
        for _ in range(60):
            act = rng.integers(0, 2, 3)
            ra, rb = a.step(act), b.step(act)
            for field in ("obs", "reward", "terminated", "truncated", "episode_return"):
                np.testing.assert_array_equal(getattr(ra, field), getattr(rb, field))


@pytest.mark.parametrize("env_group", ["deepsea", "chain"])
def test_train_smoke(env_group: str, tmp_path: Path) -> None:
    """``reprl train experiment=ppo_cartpole env=deepsea`` with a tiny budget."""
    cfg = load_config(
        [
            "experiment=ppo_cartpole",
            f"env={env_group}",
            "env.num_envs=2",
            "total_steps=64",
            "agent.num_steps=16",
            "agent.num_epochs=1",
            "logger.progress=false",
            "logger.tensorboard=false",
            "eval.episodes=2",
            "eval.every_steps=0",
            f"run_dir={tmp_path}",
        ]
    )
    assert cfg.env.id.startswith({"deepsea": "DeepSea-", "chain": "Chain-"}[env_group])
    result = train(cfg)
    assert result.global_step == 64 and result.final_eval is not None

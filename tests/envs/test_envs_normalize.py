"""NormalizeVectorEnv against a numpy reference on a recorded stream."""

from __future__ import annotations

from typing import Any

import numpy as np

from reprl.envs import (
    EnvConfig,
    NormalizeVectorEnv,
    RunningMeanStd,
    StepResult,
    VectorEnv,
    make_vector_env,
)
from reprl.types import EnvSpec

N, T, D = 3, 50, 2


def recorded_stream(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    obs = rng.normal(5.0, 3.0, (T + 1, N, D)).astype(np.float32)
    reward = rng.normal(1.0, 2.0, (T, N)).astype(np.float32)
    done = rng.random((T, N)) < 0.1
    return obs, reward, done


class ReplayVectorEnv(VectorEnv):
    """Replays a recorded stream (obs[0] at reset)."""

    def __init__(self, obs: np.ndarray, reward: np.ndarray, done: np.ndarray) -> None:
        self.obs, self.reward, self.done = obs, reward, done
        self.num_envs = N
        self.spec = EnvSpec("Replay-v0", (D,), np.dtype(np.float32), "discrete", num_actions=2)
        self.t = 0

    def reset(self, seed: int | None = None) -> np.ndarray:
        self.t = 0
        return self.obs[0]

    def step(self, actions: np.ndarray) -> StepResult:
        t = self.t
        self.t += 1
        return StepResult(
            self.obs[t + 1],
            self.reward[t],
            self.done[t],
            np.zeros(N, bool),
            np.full(N, np.nan),
            np.zeros(N, np.int64),
        )

    def state_dict(self) -> dict[str, Any]:
        return {"t": self.t}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.t = state["t"]

    def close(self) -> None:
        pass


def test_running_mean_std_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    batches = [rng.normal(3.0, 2.0, (k, 4)) for k in (1, 5, 17, 2)]
    rms = RunningMeanStd((4,), epsilon=0.0)
    for b in batches:
        rms.update(b)
    data = np.concatenate(batches)
    np.testing.assert_allclose(rms.mean, data.mean(0), rtol=1e-12)
    np.testing.assert_allclose(rms.var, data.var(0), rtol=1e-12)
    assert rms.count == len(data)


def test_normalizer_matches_reference() -> None:
    obs, reward, done = recorded_stream()
    gamma, eps = 0.9, 1e-8
    env = NormalizeVectorEnv(
        ReplayVectorEnv(obs, reward, done),
        gamma=gamma,
        clip_obs=10.0,
        clip_reward=10.0,
        epsilon=eps,
    )
    out_obs = [env.reset()]
    results = [env.step(np.zeros(N)) for _ in range(T)]
    out_obs += [results[-1].obs]
    out_rew = [r.reward for r in results]

    # reference, from scratch at every step (SB3's count starts at 1e-4 with mean 0, var 1)
    def stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c0, c = 1e-4, len(x)
        mean = x.mean(0) * c / (c + c0)
        var = (1.0 * c0 + x.var(0) * c + x.mean(0) ** 2 * c0 * c / (c + c0)) / (c + c0)
        return mean, var

    mean, var = stats(obs[:1].reshape(-1, D).astype(np.float64))
    np.testing.assert_allclose(out_obs[0], (obs[0] - mean) / np.sqrt(var + eps), rtol=1e-5)
    mean, var = stats(obs.reshape(-1, D).astype(np.float64))
    np.testing.assert_allclose(
        out_obs[-1], np.clip((obs[-1] - mean) / np.sqrt(var + eps), -10, 10), rtol=1e-5
    )
    returns, history = np.zeros(N), []
    for t in range(T):
        returns = returns * gamma + reward[t]
        history.append(returns.copy())
        _, ret_var = stats(np.concatenate(history))
        expected = np.clip(reward[t] / np.sqrt(ret_var + eps), -10, 10)
        np.testing.assert_allclose(out_rew[t], expected, rtol=1e-5)
        returns[done[t]] = 0.0


def is_plain(x: Any) -> bool:
    if isinstance(x, dict):
        return all(isinstance(k, str) and is_plain(v) for k, v in x.items())
    if isinstance(x, (list, tuple)):
        return all(is_plain(v) for v in x)
    return x is None or isinstance(x, (bool, int, float, str, np.ndarray))


def test_state_dict_round_trip_and_frozen_eval() -> None:
    obs, reward, done = recorded_stream(1)
    a = NormalizeVectorEnv(ReplayVectorEnv(obs, reward, done))
    a.reset()
    for _ in range(20):
        a.step(np.zeros(N))
    state = a.state_dict()
    assert is_plain(state) and state["env"] == {"t": 20} and "obs_rms" in state["normalizer"]
    b = NormalizeVectorEnv(ReplayVectorEnv(obs, reward, done))
    b.load_state_dict(state)
    for _ in range(20):
        ra, rb = a.step(np.zeros(N)), b.step(np.zeros(N))
        np.testing.assert_array_equal(ra.obs, rb.obs)
        np.testing.assert_array_equal(ra.reward, rb.reward)
    # frozen: evaluation keeps the statistics it was given
    b.set_training(False)
    frozen = b.normalizer_state()
    for _ in range(5):
        b.step(np.zeros(N))
    np.testing.assert_array_equal(b.obs_rms.mean, frozen["obs_rms"]["mean"])
    assert b.ret_rms.count == frozen["ret_rms"]["count"]


def test_factory_eval_env_shares_frozen_stats() -> None:
    cfg = EnvConfig(id="CartPole-v1", num_envs=2, normalize_obs=True, normalize_reward=True)
    with make_vector_env(cfg, seed=0) as train, make_vector_env(cfg, seed=1, evaluation=True) as ev:
        assert isinstance(train, NormalizeVectorEnv) and isinstance(ev, NormalizeVectorEnv)
        assert train.spec.obs_dtype == np.float32 and not ev.training and not ev.norm_reward
        train.reset()
        for _ in range(30):
            result = train.step(np.ones(2, np.int64))
        ev.load_normalizer_state(train.normalizer_state())
        count = ev.obs_rms.count
        ev.reset()
        r = ev.step(np.ones(2, np.int64))
        assert ev.obs_rms.count == count and r.reward.dtype == np.float32
        assert np.all(r.reward == 1.0)  # evaluation rewards stay raw
        assert np.all(np.abs(result.obs) <= cfg.clip_obs)

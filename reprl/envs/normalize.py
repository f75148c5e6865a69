"""Running observation and reward normalisation for any :class:`VectorEnv`.

The same scheme as Stable-Baselines3's ``VecNormalize`` (stable_baselines3/common/vec_env/
vec_normalize.py): observations are standardised by their running mean and variance; rewards
are divided by the running standard deviation of the discounted return
``R_t = gamma * R_{t-1} + r_t`` (not of the reward itself, so the scale of the value targets
stays about one; Engstrom et al. 2020, "Implementation Matters in Deep RL", sec. 3). Unlike
SB3, the statistics are plain numpy data in ``state_dict`` and are saved in every checkpoint
(SB3 users lose them on resume unless they pickle the wrapper separately).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from reprl.envs.base import StepResult, VectorEnv
from reprl.envs.snapshot import numpy_tree


class RunningMeanStd:
    """Mean and variance of a stream of batches, in float64.

    Merges each batch with Chan et al.'s parallel algorithm (1979; "Updating formulae and a
    pairwise algorithm for computing sample variances"), as SB3's ``RunningMeanStd``. The count
    starts at a tiny ``epsilon`` with mean 0 and variance 1, so the first batch dominates.
    """

    def __init__(self, shape: tuple[int, ...] = (), epsilon: float = 1e-4) -> None:
        self.mean = np.zeros(shape, np.float64)
        self.var = np.ones(shape, np.float64)
        self.count = float(epsilon)

    def update(self, batch: np.ndarray) -> None:
        """Merge a batch shaped ``(B, *shape)``."""
        batch = np.asarray(batch, np.float64)
        batch_mean, batch_var, batch_count = batch.mean(axis=0), batch.var(axis=0), batch.shape[0]
        delta = batch_mean - self.mean
        total = self.count + batch_count
        m2 = self.var * self.count + batch_var * batch_count
        m2 = m2 + np.square(delta) * self.count * batch_count / total
        self.mean = self.mean + delta * batch_count / total
        self.var = m2 / total
        self.count = total

    def state_dict(self) -> dict[str, Any]:
        """Plain data: mean and var arrays, count float."""
        return {"mean": self.mean.copy(), "var": self.var.copy(), "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.mean = np.array(state["mean"], np.float64).reshape(self.mean.shape)
        self.var = np.array(state["var"], np.float64).reshape(self.var.shape)
        self.count = float(state["count"])


class NormalizeVectorEnv(VectorEnv):
    """Normalise the observations and/or rewards of ``env``.

    Episode statistics (``episode_return``) are passed through untouched: they stay raw.

    Args:
        env: the vector env to wrap.
        obs: standardise observations (they become float32).
        reward: divide rewards by the running std of the discounted return.
        gamma: discount of that return.
        clip_obs: normalised observations are clipped to ``[-clip_obs, clip_obs]``.
        clip_reward: normalised rewards are clipped to ``[-clip_reward, clip_reward]``.
        epsilon: added to variances before the square root.
    """

    OBS_DTYPE = np.dtype(np.float32)
    """Dtype of normalised observations."""

    def __init__(
        self,
        env: VectorEnv,
        obs: bool = True,
        reward: bool = True,
        gamma: float = 0.99,
        clip_obs: float = 10.0,
        clip_reward: float = 10.0,
        epsilon: float = 1e-8,
    ) -> None:
        self.env = env
        self.num_envs = env.num_envs
        self.norm_obs, self.norm_reward = obs, reward
        self.gamma, self.epsilon = gamma, epsilon
        self.clip_obs, self.clip_reward = clip_obs, clip_reward
        self.spec = env.spec
        if obs:
            self.spec = dataclasses.replace(env.spec, obs_dtype=self.OBS_DTYPE)
        self.obs_rms = RunningMeanStd(env.spec.obs_shape)
        self.ret_rms = RunningMeanStd(())
        self.returns = np.zeros(self.num_envs, np.float64)
        self.training = True

    # ----------------------------------------------------------------- maths
    def normalize_obs(self, obs: np.ndarray) -> np.ndarray:
        """Standardise with the current statistics (no update)."""
        std = np.sqrt(self.obs_rms.var + self.epsilon)
        normalized = np.clip((obs - self.obs_rms.mean) / std, -self.clip_obs, self.clip_obs)
        return normalized.astype(np.float32)

    def normalize_reward(self, reward: np.ndarray) -> np.ndarray:
        """Scale by the std of the discounted return (no update)."""
        scaled = reward / np.sqrt(self.ret_rms.var + self.epsilon)
        return np.clip(scaled, -self.clip_reward, self.clip_reward).astype(np.float32)

    # ----------------------------------------------------------------- VectorEnv
    def reset(self, seed: int | None = None) -> np.ndarray:
        obs = self.env.reset(seed)
        self.returns[:] = 0.0
        if not self.norm_obs:
            return obs
        if self.training:
            self.obs_rms.update(obs)
        return self.normalize_obs(obs)

    def step(self, actions: np.ndarray) -> StepResult:
        result = self.env.step(actions)
        obs, reward = result.obs, result.reward
        if self.norm_obs:
            if self.training:
                self.obs_rms.update(obs)
            obs = self.normalize_obs(obs)
        if self.norm_reward:
            self.returns = self.returns * self.gamma + reward
            if self.training:
                self.ret_rms.update(self.returns)
            reward = self.normalize_reward(reward)
            # The return accumulates within an episode only (SB3 resets it where ``dones``).
            self.returns[result.terminated | result.truncated] = 0.0
        return dataclasses.replace(result, obs=obs, reward=reward)

    def close(self) -> None:
        self.env.close()

    def set_training(self, training: bool) -> None:
        """False freezes the statistics (evaluation); forwarded to the wrapped env."""
        self.training = training
        self.env.set_training(training)

    def supports_exact_resume(self) -> bool:
        return self.env.supports_exact_resume()

    def render_first(self) -> np.ndarray:
        return self.env.render_first()

    @property
    def last_obs(self) -> np.ndarray | None:
        """The wrapped env's latest observations, normalised with the current statistics."""
        obs = self.env.last_obs
        return obs if obs is None or not self.norm_obs else self.normalize_obs(obs)

    # ----------------------------------------------------------------- checkpoints
    def normalizer_state(self) -> dict[str, Any]:
        """The statistics only (plain data), e.g. for a frozen evaluation env."""
        return {
            "obs_rms": self.obs_rms.state_dict(),
            "ret_rms": self.ret_rms.state_dict(),
            "returns": self.returns.copy(),
        }

    def load_normalizer_state(self, state: dict[str, Any] | None) -> None:
        """Restore :meth:`normalizer_state` (numpy arrays or checkpoint tensors). The per-env
        discounted ``returns`` are restored only when the number of envs matches."""
        if state is None:
            return
        state = numpy_tree(state)
        self.obs_rms.load_state_dict(state["obs_rms"])
        self.ret_rms.load_state_dict(state["ret_rms"])
        returns = np.asarray(state["returns"], np.float64)
        if returns.shape == self.returns.shape:
            self.returns = returns.copy()

    def state_dict(self) -> dict[str, Any]:
        """``{"normalizer": statistics, "env": the wrapped env's state}`` (plain data)."""
        return {"normalizer": self.normalizer_state(), "env": self.env.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.load_normalizer_state(state["normalizer"])
        self.env.load_state_dict(state["env"])

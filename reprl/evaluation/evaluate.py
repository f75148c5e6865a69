"""Evaluation: full episodes on fresh envs with the training wrappers minus score-changing ones.

Each of ``episodes`` envs plays exactly one episode in parallel (counting only each env's
first episode avoids the bias towards short episodes that "first N to finish" has).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from reprl.envs import make_vector_env
from reprl.envs.config import EnvConfig


def evaluate(
    agent: Any,
    env_cfg: EnvConfig,
    episodes: int,
    deterministic: bool = True,
    seed: int = 0,
    normalizer_state: dict[str, Any] | None = None,
    frames: list[np.ndarray] | None = None,
) -> dict[str, Any]:
    """Play ``episodes`` episodes with ``agent``; returns mean/std return and length.

    ``normalizer_state`` (the training envs' observation statistics) is loaded frozen.
    With ``frames`` given, env 0's rendered frames are appended to it (for videos).
    """
    envs = make_vector_env(
        env_cfg, seed=seed, num_envs=episodes, evaluation=True, render=frames is not None
    )
    start = time.perf_counter()
    try:
        if normalizer_state is not None:
            envs.load_normalizer_state(normalizer_state)
        envs.set_training(False)
        obs = torch.from_numpy(np.array(envs.reset(seed=seed)))
        state = agent.initial_state(episodes)
        is_first = torch.ones(episodes, 1, dtype=torch.bool)
        returns = np.full(episodes, np.nan)
        lengths = np.zeros(episodes, dtype=np.int64)
        if frames is not None:
            frames.append(envs.render_first())
        while np.isnan(returns).any():
            action, _, state = agent.act(obs[:, None], state, is_first, deterministic)
            res = envs.step(action[:, 0].cpu().numpy())
            if frames is not None and np.isnan(returns[0]):
                frames.append(envs.render_first())
            ended = (res.episode_length > 0) & np.isnan(returns)
            returns[ended] = res.episode_return[ended]
            lengths[ended] = res.episode_length[ended]
            obs = torch.from_numpy(res.obs)
            is_first = torch.zeros(episodes, 1, dtype=torch.bool)
    finally:
        envs.close()
    return {
        "mean_return": float(returns.mean()),
        "std_return": float(returns.std()),
        "mean_length": float(lengths.mean()),
        "std_length": float(lengths.std()),
        "episodes": episodes,
        "returns": returns.tolist(),
        "lengths": lengths.tolist(),
        "time": time.perf_counter() - start,
    }

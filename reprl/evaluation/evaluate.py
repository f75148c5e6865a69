"""Evaluation: full episodes on fresh envs with the training wrappers minus score-changing ones.

Each of ``episodes`` envs plays exactly one episode in parallel (counting only each env's
first episode avoids the bias towards short episodes that "first N to finish" has).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from reprl.envs import make_vector_env
from reprl.envs.config import EnvConfig
from reprl.errors import ConfigError
from reprl.types import EnvSpec


def check_epsilon(epsilon: float, spec: EnvSpec) -> None:
    """Raise a ConfigError if epsilon-greedy evaluation cannot apply to ``spec``'s actions."""
    if epsilon > 0 and not spec.discrete:
        raise ConfigError(
            f"eval.epsilon: epsilon-greedy evaluation needs discrete actions; {spec.env_id} has "
            f"{spec.action_type} actions (set eval.epsilon=0)"
        )


def evaluate(
    agent: Any,
    env_cfg: EnvConfig,
    episodes: int,
    deterministic: bool = True,
    seed: int = 0,
    normalizer_state: dict[str, Any] | None = None,
    frames: list[np.ndarray] | None = None,
    recorder: Callable[[np.ndarray, np.ndarray | None, float], None] | None = None,
    epsilon: float = 0.0,
) -> dict[str, Any]:
    """Play ``episodes`` episodes with ``agent``; returns mean/std return and length.

    With ``epsilon`` > 0 (discrete actions only), each env takes a uniformly random action
    with that probability at each step instead of the agent's (drawn from a generator seeded
    with ``seed``: the same episodes for the same agent).

    ``normalizer_state`` (the training envs' observation statistics) is loaded frozen.
    With ``frames`` given, env 0's rendered frames are appended to it (for videos).
    ``recorder(frame, action, reward)`` is called with each of env 0's frames until its first
    episode ends, the action that led to the frame (None for the first) and its raw reward
    (:mod:`reprl.tools.video` streams annotated frames to an mp4 with it).
    """
    render = frames is not None or recorder is not None
    envs = make_vector_env(env_cfg, seed=seed, num_envs=episodes, evaluation=True, render=render)
    rng = np.random.default_rng(seed)

    def record(action: np.ndarray | None, reward: float) -> None:
        frame = envs.render_first()
        if frames is not None:
            frames.append(frame)
        if recorder is not None:
            recorder(frame, action, reward)

    start = time.perf_counter()
    try:
        check_epsilon(epsilon, envs.spec)
        if normalizer_state is not None:
            envs.load_normalizer_state(normalizer_state)
        envs.set_training(False)
        obs = torch.from_numpy(np.array(envs.reset(seed=seed)))
        state = agent.initial_state(episodes)
        is_first = torch.ones(episodes, 1, dtype=torch.bool)
        returns = np.full(episodes, np.nan)
        lengths = np.zeros(episodes, dtype=np.int64)
        if render:
            record(None, 0.0)
        while np.isnan(returns).any():
            action, _, state = agent.act(obs[:, None], state, is_first, deterministic)
            actions = action[:, 0].cpu().numpy()
            if epsilon > 0:
                explore = rng.random(episodes) < epsilon
                random = rng.integers(envs.spec.num_actions, size=episodes)
                actions = np.where(explore, random, actions).astype(actions.dtype)
            res = envs.step(actions)
            if render and np.isnan(returns[0]):
                record(actions[0], float(res.reward[0]))
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

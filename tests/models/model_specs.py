"""Env specs shared by the model tests."""

from __future__ import annotations

import numpy as np

from reprl.types import EnvSpec

VECTOR_DISCRETE = EnvSpec("CartPole-v1", (4,), np.dtype(np.float32), "discrete", num_actions=2)
VECTOR_CONTINUOUS = EnvSpec(
    "Pendulum-v1",
    (3,),
    np.dtype(np.float32),
    "continuous",
    action_shape=(2,),
    action_low=np.array([-2.0, -1.0], np.float32),
    action_high=np.array([2.0, 1.0], np.float32),
)
IMAGE_DISCRETE = EnvSpec("ALE/Pong-v5", (3, 48, 40), np.dtype(np.uint8), "discrete", num_actions=6)
"""Non-square, 3 channels: catches H/W and channel mix-ups; big enough for nature_cnn."""
IMAGE_CONTINUOUS = EnvSpec(
    "dmc/cheetah-run",
    (3, 48, 40),
    np.dtype(np.uint8),
    "continuous",
    action_shape=(6,),
    action_low=-np.ones(6, np.float32),
    action_high=np.ones(6, np.float32),
)

NT_SHAPES = [(1, 1), (3, 1), (2, 5)]
"""(N, T) pairs every module is checked on, including the acting case T = 1."""

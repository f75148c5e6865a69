"""Environments: families (classic control, Box2D, Taxi, Atari, MuJoCo, DeepMind Control,
Super Mario Bros, DeepSea and Chain, gymnax and Craftax), vector backends (sync, async, ale,
envpool, jax), normalisation and the factory. Importing this package registers every family in
``ENVS`` and every backend in ``VECTOR_BACKENDS``."""

from __future__ import annotations

from reprl.envs import (  # noqa: F401
    ale_vector,
    atari,
    classic,
    dmc,
    envpool_vector,
    exploration,
    games,
    jax_envs,
    mario,
    mujoco,
    subproc,
    sync,
    vizdoom,
)
from reprl.envs.base import StepResult, VectorEnv
from reprl.envs.config import AtariConfig, EnvConfig
from reprl.envs.factory import make_env_spec, make_vector_env
from reprl.envs.family import EnvFamily, list_env_ids, resolve_env
from reprl.envs.normalize import NormalizeVectorEnv, RunningMeanStd

__all__ = [
    "AtariConfig",
    "EnvConfig",
    "EnvFamily",
    "NormalizeVectorEnv",
    "RunningMeanStd",
    "StepResult",
    "VectorEnv",
    "list_env_ids",
    "make_env_spec",
    "make_vector_env",
    "resolve_env",
]

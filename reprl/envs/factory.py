"""Make vector envs and env specs from an :class:`EnvConfig`.

``env.id`` resolves through the ``ENVS`` registry to a family (``classic``, ``atari``, ...),
``env.backend`` through ``VECTOR_BACKENDS`` to a backend class; each is a small typed object,
no if/elif chain. Evaluation envs use the training wrappers except those that change the score
(Atari reward clipping and episodic life) and always have a time limit.
"""

from __future__ import annotations

import dataclasses

from reprl.envs.base import VectorEnv
from reprl.envs.config import EnvConfig
from reprl.envs.core import CoreVectorEnv
from reprl.envs.family import EnvFamily, resolve_env
from reprl.envs.normalize import NormalizeVectorEnv
from reprl.errors import ConfigError
from reprl.registry import VECTOR_BACKENDS
from reprl.types import EnvSpec

MASKABLE = ("classic_control", "box2d")
"""Families whose envs apply ``env.obs_mask`` (reprl/envs/classic.py)."""


def check_config(
    cfg: EnvConfig, num_envs: int | None = None
) -> tuple[EnvFamily, type[CoreVectorEnv]]:
    """Resolve and validate ``cfg`` without making an env (config load time runs this);
    every mistake is a ConfigError naming the key."""
    num_envs = cfg.num_envs if num_envs is None else num_envs
    if num_envs < 1:
        raise ConfigError(f"env.num_envs must be >= 1, got {num_envs}")
    if cfg.num_workers < 0:
        raise ConfigError(
            f"env.num_workers must be >= 0 (0 = one per CPU core), got {cfg.num_workers}"
        )
    if cfg.max_episode_steps is not None and cfg.max_episode_steps < 1:
        raise ConfigError(
            f"env.max_episode_steps must be >= 1 or null, got {cfg.max_episode_steps}"
        )
    if cfg.normalize_reward and not 0.0 <= cfg.norm_gamma <= 1.0:
        raise ConfigError(f"env.norm_gamma must be in [0, 1], got {cfg.norm_gamma}")
    family = resolve_env(cfg.id)
    if cfg.obs_mask and family.name not in MASKABLE:
        raise ConfigError(
            f"env.obs_mask: only for {', '.join(MASKABLE)} envs (flat float observations); "
            f"{cfg.id} is {family.name}"
        )
    backend = VECTOR_BACKENDS.get(cfg.backend).obj
    family.check_config(cfg.id, cfg)
    backend.check(family, cfg.id, cfg)
    return family, backend


def make_env_spec(cfg: EnvConfig, evaluation: bool = False) -> EnvSpec:
    """The spec of the envs :func:`make_vector_env` makes (makes one env and closes it)."""
    family, _ = check_config(cfg, cfg.num_envs)
    spec = family.spec(cfg.id, cfg, evaluation)
    if cfg.normalize_obs:
        spec = dataclasses.replace(spec, obs_dtype=NormalizeVectorEnv.OBS_DTYPE)
    return spec


def make_vector_env(
    cfg: EnvConfig,
    seed: int,
    num_envs: int | None = None,
    evaluation: bool = False,
    render: bool = False,
) -> VectorEnv:
    """A vector env of ``num_envs`` (default ``cfg.num_envs``) envs, env i seeded ``seed + i``.

    ``evaluation=True`` turns off Atari reward clipping and episodic life, always applies a
    time limit, and freezes normalisation statistics (copy the training env's into it with
    ``eval_env.load_normalizer_state(train_env.normalizer_state())``). ``render=True`` makes
    ``render_first()`` return RGB frames of env 0; backends that cannot render (ale, envpool)
    are replaced by the sync backend then, which plays the same preprocessed game.
    """
    n = cfg.num_envs if num_envs is None else num_envs
    family, backend = check_config(cfg, n)
    spec = family.spec(cfg.id, cfg, evaluation)
    if render and not backend.can_render:
        backend = VECTOR_BACKENDS.get("sync").obj
    env: VectorEnv = backend(
        family=family,
        env_id=cfg.id,
        cfg=cfg,
        num_envs=n,
        seed=seed,
        evaluation=evaluation,
        spec=spec,
        render=render,
    )
    if cfg.normalize_obs or cfg.normalize_reward:
        env = NormalizeVectorEnv(
            env,
            obs=cfg.normalize_obs,
            reward=cfg.normalize_reward and not evaluation,
            gamma=cfg.norm_gamma,
            clip_obs=cfg.clip_obs,
            clip_reward=cfg.clip_reward,
        )
        env.set_training(not evaluation)
    env.config = cfg
    return env

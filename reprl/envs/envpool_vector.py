"""Backend ``envpool``: envpool's C++ thread pool (optional: ``pip install 'reprl[envpool]'``).

envpool (0.8+, gymnasium API) autoresets on the next step, as reprl's contract wants: the step
after an episode ends returns the new episode's first observation, reward 0 and both flags
false. Env i is seeded ``seed + i`` by envpool itself, so a reset with a new seed rebuilds the
pool. Atari runs without envpool's reward clipping and episodic life (``CoreVectorEnv`` applies
both on raw rewards, so statistics stay raw); ids envpool names differently are mapped here.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np

from reprl.envs.atari import AtariFamily, game_name
from reprl.envs.classic import ClassicControlFamily
from reprl.envs.core import CoreVectorEnv, RawStep
from reprl.errors import ConfigError, EnvError
from reprl.registry import VECTOR_BACKENDS

if TYPE_CHECKING:
    from reprl.envs.config import EnvConfig
    from reprl.envs.family import EnvFamily
    from reprl.types import EnvSpec

INSTALL_HINT = "envpool is not installed: pip install 'reprl[envpool]'"


def envpool_task(family: EnvFamily, env_id: str) -> str:
    """envpool's task id for ``env_id`` (``ALE/Breakout-v5`` -> ``Breakout-v5``)."""
    if isinstance(family, AtariFamily):
        return f"{game_name(env_id)}-v5"
    if isinstance(family, ClassicControlFamily):
        return env_id
    raise ConfigError(
        f"env.backend 'envpool' supports Atari and classic control ids, not '{env_id}'; "
        f"valid: {', '.join(ClassicControlFamily.IDS)}, ALE/<Game>-v5; or use backend sync/async"
    )


@VECTOR_BACKENDS.register("envpool")
class EnvpoolVectorEnv(CoreVectorEnv):
    """envpool vector env (see :class:`CoreVectorEnv` for the semantics)."""

    backend = "envpool"

    def __init__(
        self,
        family: EnvFamily,
        env_id: str,
        cfg: EnvConfig,
        num_envs: int,
        seed: int,
        evaluation: bool,
        spec: EnvSpec,
        render: bool = False,
    ) -> None:
        self.check(family, env_id, cfg)
        try:
            import envpool
        except ImportError:
            raise EnvError(INSTALL_HINT) from None
        super().__init__(spec, num_envs, seed, *family.score_transforms(cfg, evaluation))
        self._envpool = envpool
        self._task = envpool_task(family, env_id)
        self._lives_key = family.lives_key
        self._kwargs: dict[str, Any] = {
            "env_type": "gymnasium",
            "num_envs": num_envs,
            "num_threads": min(num_envs, cfg.num_workers or os.cpu_count() or 1),
        }
        limit = family.time_limit(env_id, cfg, evaluation)
        if limit is not None:
            self._kwargs["max_episode_steps"] = limit  # agent steps, for every envpool task
        if isinstance(family, AtariFamily):
            a = cfg.atari
            self._kwargs.update(
                img_height=a.screen_size,
                img_width=a.screen_size,
                stack_num=a.frame_stack,
                gray_scale=True,
                frame_skip=a.frame_skip,
                # envpool draws 1..noop_max no-ops at reset; noop_max=0 makes its uniform
                # distribution empty (undefined behaviour: it segfaults), so 0 becomes 1.
                noop_max=max(a.noop_max, 1),
                episodic_life=False,
                reward_clip=False,
                repeat_action_probability=a.sticky_actions,
                use_fire_reset=a.fire_reset,
                full_action_space=a.full_action_space,
            )
        self._kwargs.update(cfg.kwargs)
        self._made_seed: int | None = None
        self._env: Any = None

    @staticmethod
    def check(family: EnvFamily, env_id: str, cfg: EnvConfig) -> None:
        """Atari and classic control only (other envpool tasks differ from gymnasium's)."""
        envpool_task(family, env_id)

    def _make(self, seed: int) -> None:
        if self._env is not None:
            self._env.close()
        self._env = self._envpool.make(self._task, seed=seed, **self._kwargs)
        self._made_seed = seed

    def _lives_of(self, info: dict[str, Any]) -> np.ndarray | None:
        if self._lives_key is None:
            return None
        return np.asarray(info[self._lives_key], np.int64)

    def _reset_envs(self, seeds: list[int] | None) -> tuple[np.ndarray, np.ndarray | None]:
        if self._env is None or (seeds is not None and seeds[0] != self._made_seed):
            self._make(self._seed if seeds is None else seeds[0])
        obs, info = self._env.reset()
        return np.asarray(obs, self.spec.obs_dtype), self._lives_of(info)

    def _step_envs(self, actions: np.ndarray) -> RawStep:
        obs, reward, terminated, truncated, info = self._env.step(actions)
        return (
            np.asarray(obs, self.spec.obs_dtype),
            np.asarray(reward, np.float64),
            np.asarray(terminated, bool),
            np.asarray(truncated, bool),
            self._lives_of(info),
        )

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env = None

"""Backend ``ale``: ale-py's ``AtariVectorEnv`` (C++ threads, preprocessing built in).

It has next-step autoreset and the same preprocessing as :mod:`reprl.envs.atari` (no-op and
FIRE reset, frame skip with max-pool, 84x84 grayscale, zero-padded frame stack). Its info
holds ``lives`` but no unclipped reward, and its ``episodic_life`` option restarts the whole
game on a life loss (ale-py 0.12), so it runs with ``reward_clipping=False`` and
``episodic_life=False``; :class:`CoreVectorEnv` clips rewards and ends the learner's episode
on a lost life after recording the raw full-game return, exactly as for the other backends.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np

from reprl.envs.atari import AtariFamily
from reprl.envs.core import CoreVectorEnv, RawStep
from reprl.errors import ConfigError, EnvError
from reprl.registry import VECTOR_BACKENDS

if TYPE_CHECKING:
    from reprl.envs.config import EnvConfig
    from reprl.envs.family import EnvFamily
    from reprl.types import EnvSpec

NO_FRAME_LIMIT = 2**31 - 1
"""ale-py counts the limit in emulator frames in an int32."""


@VECTOR_BACKENDS.register("ale")
class AleVectorEnv(CoreVectorEnv):
    """ale-py's threaded Atari vector env (see :class:`CoreVectorEnv` for the semantics)."""

    backend = "ale"

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
        assert isinstance(family, AtariFamily)
        super().__init__(spec, num_envs, seed, *family.score_transforms(cfg, evaluation))
        try:
            from ale_py.vector_env import AtariVectorEnv
            from gymnasium.vector import AutoresetMode
        except ImportError as exc:
            raise EnvError(f"backend 'ale' needs ale-py: pip install ale-py ({exc})") from exc
        a = cfg.atari
        # Frames, not agent steps: the C++ env counts every emulated frame towards the limit.
        limit = family.time_limit(env_id, cfg, evaluation)
        frames = NO_FRAME_LIMIT if limit is None else min(limit * a.frame_skip, NO_FRAME_LIMIT)
        self._env = AtariVectorEnv(
            game=family.rom_id(env_id),
            num_envs=num_envs,
            num_threads=min(num_envs, cfg.num_workers or os.cpu_count() or 1),
            max_num_frames_per_episode=frames,
            repeat_action_probability=a.sticky_actions,
            full_action_space=a.full_action_space,
            autoreset_mode=AutoresetMode.NEXT_STEP,
            img_height=a.screen_size,
            img_width=a.screen_size,
            grayscale=True,
            stack_num=a.frame_stack,
            frameskip=a.frame_skip,
            maxpool=True,
            noop_max=a.noop_max,
            episodic_life=False,
            life_loss_info=False,
            reward_clipping=False,
            use_fire_reset=a.fire_reset,
        )
        shape = self._env.single_observation_space.shape
        if shape != spec.obs_shape:
            raise EnvError(f"ale-py observations {shape} differ from the spec's {spec.obs_shape}")

    @staticmethod
    def check(family: EnvFamily, env_id: str, cfg: EnvConfig) -> None:
        """The ale backend runs Atari games only."""
        if not isinstance(family, AtariFamily):
            raise ConfigError(
                f"env.backend 'ale' runs Atari games only (ALE/<Game>-v5), not '{env_id}'; "
                "use backend sync or async"
            )
        if cfg.kwargs:
            raise ConfigError(
                f"env.kwargs {sorted(cfg.kwargs)} cannot be passed to backend 'ale' "
                "(AtariVectorEnv takes env.atari options only); use backend sync or async"
            )

    def _reset_envs(self, seeds: list[int] | None) -> tuple[np.ndarray, np.ndarray | None]:
        # ale-py seeds env i with seed + i when given an int, as every reprl backend does.
        obs, info = self._env.reset(seed=None if seeds is None else int(seeds[0]))
        return obs, info["lives"].astype(np.int64)

    def _step_envs(self, actions: np.ndarray) -> RawStep:
        obs, reward, terminated, truncated, info = self._env.step(actions)
        return obs, reward, terminated, truncated, info["lives"].astype(np.int64)

    def close(self) -> None:
        self._env.close()

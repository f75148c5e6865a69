"""Backend ``sync``: every env in this process, stepped by a lean loop (:class:`SerialEnvs`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from reprl.envs.core import CoreVectorEnv, RawStep
from reprl.envs.serial import SerialEnvs
from reprl.registry import VECTOR_BACKENDS

if TYPE_CHECKING:
    from reprl.envs.config import EnvConfig
    from reprl.envs.family import EnvFamily
    from reprl.types import EnvSpec


def raw_buffers(spec: EnvSpec, num_envs: int, lives: bool) -> dict[str, np.ndarray | None]:
    """Preallocated output arrays of a raw vector step, keyed as :class:`SerialEnvs`' args."""
    return {
        "obs": np.zeros((num_envs, *spec.obs_shape), spec.obs_dtype),
        "reward": np.zeros(num_envs, np.float64),
        "terminated": np.zeros(num_envs, bool),
        "truncated": np.zeros(num_envs, bool),
        "lives": np.zeros(num_envs, np.int64) if lives else None,
    }


def copy_raw(buf: dict[str, np.ndarray | None]) -> RawStep:
    """Copies of the raw step in ``buf``: the caller owns what step() returns, while the
    buffers are rewritten on the next step."""
    lives = buf["lives"]
    return (
        buf["obs"].copy(),  # type: ignore[union-attr]
        buf["reward"].copy(),  # type: ignore[union-attr]
        buf["terminated"].copy(),  # type: ignore[union-attr]
        buf["truncated"].copy(),  # type: ignore[union-attr]
        None if lives is None else lives.copy(),
    )


@VECTOR_BACKENDS.register("sync")
class SyncVectorEnv(CoreVectorEnv):
    """In-process vector env (see :class:`CoreVectorEnv` for the semantics)."""

    backend = "sync"
    can_render = True

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
        super().__init__(spec, num_envs, seed, *family.score_transforms(cfg, evaluation))
        self._exact = family.exact_resume
        self._buf = raw_buffers(spec, num_envs, family.lives_key is not None)
        envs = []
        try:
            for _ in range(num_envs):
                envs.append(family.make(env_id, cfg, evaluation, render))
        except BaseException:
            for env in envs:
                env.close()
            raise
        self._serial = SerialEnvs(envs, **self._buf, lives_key=family.lives_key, family=family)

    def _reset_envs(self, seeds: list[int] | None) -> tuple[np.ndarray, np.ndarray | None]:
        self._serial.reset(seeds)
        obs, _, _, _, lives = copy_raw(self._buf)
        return obs, lives

    def _step_envs(self, actions: np.ndarray) -> RawStep:
        self._serial.step(actions)
        return copy_raw(self._buf)

    def supports_exact_resume(self) -> bool:
        return self._exact

    def _get_env_states(self) -> list[dict[str, Any]]:
        return self._serial.get_state()

    def _set_env_states(self, states: list[dict[str, Any]]) -> None:
        self._serial.set_state(states)

    def render_first(self) -> np.ndarray:
        return self._serial.render_first()

    def close(self) -> None:
        self._serial.close()

"""What every backend shares: action preparation, raw episode statistics, and Atari's
score-changing transforms (episodic life, reward clipping) applied on raw rewards.

A backend subclasses :class:`CoreVectorEnv` and implements ``_reset_envs`` / ``_step_envs``,
which return *raw* data: unclipped rewards, real game ends (terminated or truncated), and the
remaining lives when the family has them, with next-step autoreset. Everything else (and so
every semantic in :mod:`reprl.envs.base`) is implemented once, here.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import TYPE_CHECKING, Any

import numpy as np

from reprl.envs.base import StepResult, VectorEnv
from reprl.envs.snapshot import numpy_tree
from reprl.errors import EnvError
from reprl.types import EnvSpec

if TYPE_CHECKING:
    from reprl.envs.config import EnvConfig
    from reprl.envs.family import EnvFamily

RawStep = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, "np.ndarray | None"]
"""``(obs, reward, terminated, truncated, lives)`` of one raw vector step."""


class CoreVectorEnv(VectorEnv):
    """Base of the sync, async, ale and envpool backends.

    Args:
        spec: the env's spec (after all wrappers).
        num_envs: number of envs.
        seed: env i is seeded ``seed + i`` at the first ``reset()``.
        episodic_life: a lost life ends the learner's episode (training only, Atari).
        clip_rewards: rewards clipped to their sign (training only, Atari).
    """

    backend: str = ""
    """Registered backend name (stored in state dicts)."""
    can_render: bool = False
    """Whether ``render=True`` works (else the factory renders with the sync backend)."""

    def __init__(
        self,
        spec: EnvSpec,
        num_envs: int,
        seed: int,
        episodic_life: bool = False,
        clip_rewards: bool = False,
    ) -> None:
        self.spec = spec
        self.num_envs = n = num_envs
        self._seed = seed
        self._seeded = False
        self._episodic_life = episodic_life
        self._clip_rewards = clip_rewards
        self._obs: np.ndarray | None = None
        self._ep_return = np.zeros(n, np.float64)
        self._ep_length = np.zeros(n, np.int64)
        self._done = np.zeros(n, bool)  # real episode end on the last step: autoreset now
        self._lives = np.zeros(n, np.int64)
        self._life_pending = np.zeros(n, bool)  # last step lost a life: this step "resets"
        # Fixed per env: computed once instead of at every step (np.prod alone is ~3 us).
        self._action_size = n if spec.discrete else n * int(np.prod(spec.action_shape))

    # ----------------------------------------------------------------- backend hooks
    @staticmethod
    def check(family: EnvFamily, env_id: str, cfg: EnvConfig) -> None:
        """Raise ConfigError if this backend cannot run ``env_id`` with ``cfg`` (called by the
        factory before anything is made). Default: every family works."""
        return None

    @abstractmethod
    def _reset_envs(self, seeds: list[int] | None) -> tuple[np.ndarray, np.ndarray | None]:
        """Reset every env (env i with ``seeds[i]``); return ``(obs, lives)``."""

    @abstractmethod
    def _step_envs(self, actions: np.ndarray) -> RawStep:
        """Step every env with next-step autoreset; return raw arrays the caller may keep."""

    def _get_env_states(self) -> list[dict[str, Any]]:
        """Plain-data state of every env (only when :meth:`supports_exact_resume`)."""
        raise NotImplementedError

    def _set_env_states(self, states: list[dict[str, Any]]) -> None:
        """Restore what :meth:`_get_env_states` returned."""
        raise NotImplementedError

    # ----------------------------------------------------------------- VectorEnv
    @property
    def last_obs(self) -> np.ndarray | None:
        return self._obs

    def reset(self, seed: int | None = None) -> np.ndarray:
        if seed is None and not self._seeded:
            seed = self._seed
        self._seeded = True
        seeds = None if seed is None else [seed + i for i in range(self.num_envs)]
        obs, lives = self._reset_envs(seeds)
        self._ep_return[:] = 0.0
        self._ep_length[:] = 0
        self._done[:] = False
        self._life_pending[:] = False
        self._lives[:] = 0 if lives is None else lives
        self._obs = obs
        return obs

    def _prepare_actions(self, actions: np.ndarray) -> np.ndarray:
        """Discrete: int64 ``(N,)``. Continuous: clipped to the bounds, float32 (a new array,
        so the agent's raw action is untouched). NOOP (action 0) for envs whose last step lost
        a life: that step stands for the episode's reset (SB3's ``EpisodicLifeEnv`` steps a
        no-op there too)."""
        spec, n = self.spec, self.num_envs
        a = np.asarray(actions)
        if a.size != self._action_size:
            if spec.discrete:
                raise ValueError(f"expected {n} discrete actions, got shape {a.shape}")
            raise ValueError(f"expected actions of shape {(n, *spec.action_shape)}, got {a.shape}")
        # Only episodic life ever sets _life_pending: skip its any() (~1 us) everywhere else.
        pending = self._episodic_life and self._life_pending.any()
        if spec.discrete:
            a = a.reshape(n).astype(np.int64, copy=pending)
        else:
            # np.minimum(np.maximum(.)) is what np.clip computes (NaN kept), without
            # np.clip's Python dispatch layers: ~2 us instead of ~8 us per step (Pendulum).
            a, low, high = a.reshape(n, *spec.action_shape), spec.action_low, spec.action_high
            if low is None or high is None:
                a = np.clip(a, low, high)
            else:
                a = np.minimum(np.maximum(a, low), high)
            a = a.astype(np.float32, copy=False)
        if pending:
            a[self._life_pending] = 0
        return a

    def step(self, actions: np.ndarray) -> StepResult:
        if self._obs is None:
            raise EnvError(f"{self.spec.env_id}: call reset() (or load_state_dict) before step()")
        obs, raw_reward, terminated, truncated, lives = self._step_envs(
            self._prepare_actions(actions)
        )
        raw_reward = raw_reward.astype(np.float64, copy=False)

        # raw episode statistics: the backend autoreset envs that ended on the last step.
        # The masked writes only when some did (~1 us each otherwise spent on no element);
        # np.count_nonzero tests that in ~0.3 us against ~1.3 us for ndarray.any().
        resetting = self._done
        if np.count_nonzero(resetting):
            self._ep_return[resetting] = 0.0
            self._ep_length[resetting] = 0
        self._ep_return += raw_reward  # 0 on autoreset steps
        self._ep_length += ~resetting
        ended = terminated | truncated
        if np.count_nonzero(ended):
            episode_return = np.where(ended, self._ep_return, np.nan)
            episode_length = np.where(ended, self._ep_length, 0)
        else:  # the same arrays, made without reading the statistics
            episode_return = np.full(self.num_envs, np.nan)
            episode_length = np.zeros(self.num_envs, np.int64)
        self._done = ended

        reward = np.sign(raw_reward) if self._clip_rewards else raw_reward
        reward = reward.astype(np.float32)
        if self._episodic_life and lives is not None:
            # Mnih et al. 2015: a lost life is terminal for the learner, not for the game. The
            # step after stands for the reset (action ignored, reward 0, flags false).
            pending = self._life_pending
            lost = (lives < self._lives) & ~ended & ~resetting & ~pending
            reward[pending] = 0.0
            terminated = terminated | lost
            self._life_pending = lost
        if lives is not None:
            self._lives[:] = lives
        self._obs = obs
        return StepResult(
            obs=obs,
            reward=reward,
            terminated=terminated.astype(bool, copy=False),
            truncated=truncated.astype(bool, copy=False),
            episode_return=episode_return,
            episode_length=episode_length,
        )

    # ----------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Plain data. Without exact-resume support only a marker
        (``{"exact_resume": False, ...}``): the resumed run must ``reset()`` its envs."""
        state: dict[str, Any] = {
            "backend": self.backend,
            "env_id": self.spec.env_id,
            "num_envs": self.num_envs,
            "exact_resume": self.supports_exact_resume(),
        }
        if not state["exact_resume"] or self._obs is None:
            state["exact_resume"] = False
            return state
        state.update(
            seeded=self._seeded,
            obs=self._obs.copy(),
            episode_return=self._ep_return.copy(),
            episode_length=self._ep_length.copy(),
            done=self._done.copy(),
            lives=self._lives.copy(),
            life_pending=self._life_pending.copy(),
            envs=self._get_env_states(),
        )
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore an exact-resume state (numpy arrays, or the tensors a checkpoint turned them
        into); a marker-only state restores nothing."""
        if not state.get("exact_resume"):
            return
        state = numpy_tree(state)
        if not self.supports_exact_resume():
            raise EnvError(f"backend '{self.backend}' cannot restore env state for exact resume")
        if (state["env_id"], state["num_envs"]) != (self.spec.env_id, self.num_envs):
            raise EnvError(
                f"env state of {state['num_envs']} x {state['env_id']} cannot be loaded into "
                f"{self.num_envs} x {self.spec.env_id}"
            )
        self._set_env_states(state["envs"])
        self._seeded = bool(state["seeded"])
        self._obs = np.array(state["obs"], dtype=self.spec.obs_dtype)
        self._ep_return[:] = state["episode_return"]
        self._ep_length[:] = state["episode_length"]
        self._done[:] = state["done"]
        self._lives[:] = state["lives"]
        self._life_pending[:] = state["life_pending"]

"""JAX environments and the ``jax`` vector backend (optional: ``pip install 'reprl[jax]'``).

Ids: ``gymnax/<Name>`` for gymnax's twins of gymnasium's classic-control tasks (CartPole-v1,
Acrobot-v1, MountainCar-v0, Pendulum-v1, MountainCarContinuous-v0) and
``craftax/Craftax-Symbolic-v1``, ``craftax/Craftax-Classic-Symbolic-v1`` (Matthews et al. 2024,
"Craftax: A Lightning-Fast Benchmark for Open-Ended RL"). They are listed without JAX
installed; making one imports JAX (lazily, so ``import reprl`` never does).

Backend ``jax`` (:class:`JaxVectorEnv`) keeps all envs as one batched state pytree on the JAX
CPU device and steps them with one jitted, vmapped call of the env's ``step_env``:

- Resets. gymnax's and Craftax's own ``step`` auto-reset by computing a fresh reset for every
  env on every step and selecting it where the episode ended (``jax.lax.select`` runs both
  branches), and a Craftax world costs ~4 ms to generate, several steps' worth. Here the step
  never resets: envs whose episode ended on the previous step (reprl's next-step autoreset)
  are reset by a separately jitted reset of a fixed batch of R envs (``env.kwargs.reset_batch``,
  default ``min(num_envs, 16)``, Craftax 4) that scatters the fresh states into them; it runs
  again while more than R are pending. Fixed shapes compile once. The initial ``reset()`` runs
  the same function over all envs, R at a time. Craftax-Symbolic x64, random actions, 2
  shared cores: 5.6k steps/s (R=16: 4.2k) against 340 with Craftax's own auto-reset.
- Seeding. Env i owns the PRNG key ``PRNGKey(seed + i)``, split at each of its steps and
  resets, so its trajectory depends on its seed and its actions only (not on ``num_envs`` or
  on which envs reset together).
- Time limits. The env's own step limit is disabled (``max_steps_in_episode`` /
  ``max_timesteps`` set to 2**31 - 1); the backend counts agent steps per env and truncates at
  :meth:`EnvFamily.time_limit` (gymnasium's registered limit for the gymnax twins, 500 for
  CartPole-v1; Craftax's default ``max_timesteps``: 100000 for Craftax, 10000 for Classic), so
  ``terminated`` is a real game end and ``truncated`` a time limit, as for every backend.
- Observations. The float32 observations come back as NumPy views of JAX's CPU buffers through
  DLPack (no copy; writable, unlike ``np.asarray`` of a JAX array), which ``torch.from_numpy``
  wraps without copying either.
- Compilation. Craftax compiles for ~50 s (step and reset) on a 2-core machine; JAX's
  persistent compilation cache is turned on in ``$XDG_CACHE_HOME/reprl/jax`` (default
  ``~/.cache/reprl/jax``; safe to delete) unless the user set ``JAX_COMPILATION_CACHE_DIR``,
  so later processes load the compiled code in ~8 s. Every vector env of an id shares the
  jitted functions (training and evaluation envs of the same size compile once).

``env.kwargs`` takes ``reset_batch`` and any field of the env's params dataclass (gymnax's
``gravity``, Craftax's ``day_length`` ...). Backends sync and async run each env through
:class:`JaxGymEnv`, a one-env ``jax`` backend as a gymnasium env (``reprl play``, tests); use
backend ``jax`` for speed.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
import torch

from reprl.envs.classic import _ACTION_MEANINGS, _mode
from reprl.envs.core import CoreVectorEnv, RawStep
from reprl.envs.family import EnvFamily
from reprl.errors import ConfigError, EnvError, choices_hint
from reprl.registry import ENVS, VECTOR_BACKENDS
from reprl.types import EnvSpec

if TYPE_CHECKING:
    from reprl.envs.config import EnvConfig

INSTALL_HINT = "pip install 'reprl[jax]'"
NO_LIMIT = 2**31 - 1
"""The env's own step limit while the backend counts steps (the largest int32)."""
BACKEND_KWARGS = ("reset_batch",)
"""``env.kwargs`` keys read by the backend; the others replace fields of the env's params."""
GYMNAX_IDS = (
    "CartPole-v1",
    "Acrobot-v1",
    "MountainCar-v0",
    "Pendulum-v1",
    "MountainCarContinuous-v0",
)
CRAFTAX_IDS = ("Craftax-Symbolic-v1", "Craftax-Classic-Symbolic-v1")


def require_jax() -> Any:
    """The ``jax`` module, with the persistent compilation cache on (see the module docstring).

    Raises:
        EnvError: JAX is not installed.
    """
    try:
        import jax
    except ImportError:
        raise EnvError(f"JAX envs need jax, gymnax and craftax: {INSTALL_HINT}") from None
    if jax.config.jax_compilation_cache_dir is None:
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "reprl" / "jax"
        # No size cap: JAX's LRU eviction (jax_compilation_cache_max_size) fails on entries
        # written without it and then stops caching; each Craftax executable is ~1-4 MB.
        jax.config.update("jax_compilation_cache_dir", str(cache))
    return jax


# ---------------------------------------------------------------------------- jitted functions
class JaxFunctions:
    """The jitted batched functions of one JAX env with fixed params, shared by every vector
    env of it (jit caches one compilation per batch size).

    Keys are legacy ``uint32 (N, 2)`` PRNG keys, one per env; every function splits the keys
    it uses and returns the new ones.
    """

    def __init__(self, env: Any, params: Any) -> None:
        jax = require_jax()
        jnp = jax.numpy
        self.jax = jax
        self.device = jax.devices("cpu")[0]

        def split(keys: Any) -> tuple[Any, Any]:
            pairs = jax.vmap(jax.random.split)(keys)
            return pairs[:, 0], pairs[:, 1]

        def reset_batch(keys: Any) -> tuple[Any, Any]:
            obs, state = jax.vmap(env.reset_env, in_axes=(0, None))(keys, params)
            return obs.astype(jnp.float32), state

        def step(keys: Any, state: Any, actions: Any) -> tuple[Any, ...]:
            keys, sub = split(keys)
            step_env = jax.vmap(env.step_env, in_axes=(0, 0, 0, None))
            obs, new_state, reward, terminated, _ = step_env(sub, state, actions, params)
            # same dtypes as the input state: one compiled signature for step and reset
            new_state = jax.tree.map(lambda new, old: new.astype(old.dtype), new_state, state)
            n = keys.shape[0]
            reward = reward.reshape(n).astype(jnp.float32)
            return keys, obs.astype(jnp.float32), new_state, reward, terminated.reshape(n)

        def reset_into(keys: Any, state: Any, obs: Any, idx: Any) -> tuple[Any, Any, Any]:
            """Reset envs ``idx`` (R indices; index N pads and is dropped) in place."""
            n = keys.shape[0]
            new_keys, sub = split(keys[jnp.minimum(idx, n - 1)])
            fresh_obs, fresh = reset_batch(sub)

            def put(x: Any, y: Any) -> Any:
                return x.at[idx].set(y.astype(x.dtype), mode="drop")

            return put(keys, new_keys), jax.tree.map(put, state, fresh), put(obs, fresh_obs)

        self._reset_batch = reset_batch
        self.step = jax.jit(step, donate_argnums=(0, 1))
        self.reset_into = jax.jit(reset_into, donate_argnums=(0, 1, 2))

    @functools.cache  # noqa: B019 - one entry per batch size; the object lives as long as its id
    def shapes(self, num_envs: int) -> tuple[Any, Any]:
        """``(obs, state)`` shapes of ``num_envs`` envs (traced, not run)."""
        keys = self.jax.ShapeDtypeStruct((num_envs, 2), np.uint32)
        return self.jax.eval_shape(self._reset_batch, keys)

    def zeros(self, num_envs: int) -> tuple[Any, Any]:
        """``(obs, state)`` of ``num_envs`` envs filled with zeros, to reset into."""
        obs, state = self.shapes(num_envs)

        def make(s: Any) -> Any:  # committed to the device as step's outputs are: one signature
            return self.jax.device_put(np.zeros(s.shape, s.dtype), self.device)

        return make(obs), self.jax.tree.map(make, state)


@dataclasses.dataclass
class JaxTask:
    """One JAX env with its params (internal step limit disabled) and jitted functions."""

    env: Any
    params: Any
    default_limit: int
    """The env's own episode limit before it was disabled."""
    functions: JaxFunctions


# ---------------------------------------------------------------------------- families
class JaxFamily(EnvFamily):
    """Shared by the gymnax and Craftax families: ids ``<prefix>/<Name>``, specs from the JAX
    env's own spaces, params overrides from ``env.kwargs``."""

    prefix: str = ""
    names: tuple[str, ...] = ()
    limit_field: str = ""
    """Field of the env's params holding its episode limit (disabled; the backend counts)."""
    default_reset_batch: int = 16
    """Envs reset per call of the jitted reset unless ``env.kwargs.reset_batch`` says (capped
    at ``num_envs``)."""
    exact_resume = True  # JaxGymEnv's state is plain arrays (see capture)

    # ------------------------------------------------------------ per family
    def _load(self, name: str) -> Any:
        """Import the package and make the env object (no compilation)."""
        raise NotImplementedError

    def make_renderer(self, env_id: str, cfg: EnvConfig) -> Any:
        """A callable turning one env's state into an RGB frame ``(H, W, 3)`` uint8, with a
        ``close()`` method."""
        raise NotImplementedError

    # ------------------------------------------------------------ ids and tasks
    def ids(self) -> list[str]:
        return [f"{self.prefix}/{name}" for name in self.names]

    def name_of(self, env_id: str) -> str:
        """``gymnax/CartPole-v1`` -> ``CartPole-v1``."""
        return env_id.split("/", 1)[1]

    def check_config(self, env_id: str, cfg: EnvConfig) -> None:
        if cfg.backend not in ("jax", "sync", "async"):
            raise ConfigError(
                f"env.backend '{cfg.backend}' cannot run {env_id}; use env.backend=jax "
                "(or sync/async, one jitted env each)"
            )
        batch = cfg.kwargs.get("reset_batch", self.default_reset_batch)
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ConfigError(f"env.kwargs.reset_batch must be an integer >= 1, got {batch!r}")
        if self.limit_field in cfg.kwargs:
            raise ConfigError(
                f"env.kwargs.{self.limit_field}: the backend counts steps; set "
                "env.max_episode_steps instead"
            )

    def reset_batch(self, cfg: EnvConfig) -> int:
        """Envs per call of the jitted reset (``env.kwargs.reset_batch``)."""
        return int(cfg.kwargs.get("reset_batch", self.default_reset_batch))

    def task(self, env_id: str, cfg: EnvConfig) -> JaxTask:
        """The env of ``env_id`` with the config's params overrides (cached per overrides).

        Raises:
            EnvError: JAX (or gymnax/craftax) is not installed.
            ConfigError: an ``env.kwargs`` key is no field of the env's params.
        """
        require_jax()
        overrides = {k: v for k, v in cfg.kwargs.items() if k not in BACKEND_KWARGS}
        frozen = tuple(sorted((k, _hashable(v)) for k, v in overrides.items()))
        try:
            hash(frozen)
        except TypeError:
            raise ConfigError(
                f"env.kwargs of {env_id} must be numbers, bools, strings or lists of them, "
                f"got {overrides}"
            ) from None
        return self._task(env_id, frozen)

    @functools.cache  # noqa: B019 - families are module-level singletons
    def _task(self, env_id: str, overrides: tuple[tuple[str, Any], ...]) -> JaxTask:
        env = self._load(self.name_of(env_id))
        params = env.default_params
        valid = [f.name for f in dataclasses.fields(params) if f.name != self.limit_field]
        for key, _ in overrides:
            if key not in valid:
                raise ConfigError(
                    f"env.kwargs.{key}: unknown for {env_id}; "
                    f"{choices_hint(key, [*valid, *BACKEND_KWARGS])}"
                )
        default_limit = getattr(params, self.limit_field)
        params = params.replace(**dict(overrides), **{self.limit_field: NO_LIMIT})
        return JaxTask(env, params, int(default_limit), JaxFunctions(env, params))

    # ------------------------------------------------------------ spec
    def make(
        self, env_id: str, cfg: EnvConfig, evaluation: bool = False, render: bool = False
    ) -> gym.Env:
        """A one-env jax backend as a gymnasium env (backends sync and async)."""
        return JaxGymEnv(self, env_id, cfg, evaluation, render)

    def capture(self, env: gym.Env) -> dict[str, Any]:
        assert isinstance(env, JaxGymEnv)
        return env.vec.state_dict()

    def restore(self, env: gym.Env, state: dict[str, Any]) -> None:
        assert isinstance(env, JaxGymEnv)
        env.vec.load_state_dict(state)

    def action_names(self, env_id: str) -> tuple[str, ...]:
        """Labels of the discrete actions."""
        return ()

    def spec(self, env_id: str, cfg: EnvConfig, evaluation: bool = False) -> EnvSpec:
        """The spec from the JAX env's own spaces (nothing is compiled)."""
        task = self.task(env_id, cfg)
        obs_space = task.env.observation_space(task.params)
        act_space = task.env.action_space(task.params)
        common: dict[str, Any] = dict(
            env_id=env_id,
            obs_shape=tuple(int(d) for d in obs_space.shape),
            obs_dtype=np.dtype(np.float32),
            reward_threshold=self.threshold(env_id, cfg),
            max_episode_steps=self.time_limit(env_id, cfg, evaluation),
        )
        if hasattr(act_space, "n"):
            return EnvSpec(
                action_type="discrete",
                num_actions=int(act_space.n),
                action_meanings=self.action_names(env_id),
                **common,
            )
        shape = tuple(int(d) for d in act_space.shape)
        return EnvSpec(
            action_type="continuous",
            action_shape=shape,
            action_low=np.broadcast_to(np.asarray(act_space.low, np.float32), shape).copy(),
            action_high=np.broadcast_to(np.asarray(act_space.high, np.float32), shape).copy(),
            **common,
        )

    def threshold(self, env_id: str, cfg: EnvConfig) -> float | None:
        """The config's reward threshold (families add gymnasium's)."""
        return cfg.reward_threshold


def _hashable(value: Any) -> Any:
    """YAML lists as tuples (cache keys, frozen params)."""
    return tuple(_hashable(v) for v in value) if isinstance(value, (list, tuple)) else value


class GymnaxFamily(JaxFamily):
    """gymnax's classic-control tasks (``gymnax/CartPole-v1`` ...): the time limit and reward
    threshold of their gymnasium twins; frames drawn by the twin's renderer."""

    name = "gymnax"
    prefix = "gymnax"
    names = GYMNAX_IDS
    limit_field = "max_steps_in_episode"

    def _load(self, name: str) -> Any:
        try:
            import gymnax
        except ImportError:
            raise EnvError(f"{name} needs gymnax: {INSTALL_HINT}") from None
        return gymnax.make(name)[0]

    def time_limit(self, env_id: str, cfg: EnvConfig, evaluation: bool) -> int | None:
        return super().time_limit(self.name_of(env_id), cfg, evaluation)

    def threshold(self, env_id: str, cfg: EnvConfig) -> float | None:
        if cfg.reward_threshold is not None:
            return cfg.reward_threshold
        twin = gym.spec(self.name_of(env_id)).reward_threshold
        return None if twin is None else float(twin)

    def action_names(self, env_id: str) -> tuple[str, ...]:
        return _ACTION_MEANINGS.get(self.name_of(env_id), ())

    def make_renderer(self, env_id: str, cfg: EnvConfig) -> Any:
        return _TwinRenderer(self.name_of(env_id))


def _twin_attributes(name: str, s: Any) -> dict[str, Any]:
    """The gymnasium twin's attributes (``state``, Pendulum's ``last_u``) for gymnax state
    ``s`` of one env."""
    if name == "CartPole-v1":
        return {"state": np.array([s.x, s.x_dot, s.theta, s.theta_dot], np.float64)}
    if name == "Acrobot-v1":
        angles = [s.joint_angle1, s.joint_angle2, s.velocity_1, s.velocity_2]
        return {"state": np.array(angles, np.float64)}
    if name == "Pendulum-v1":
        return {"state": np.array([s.theta, s.theta_dot], np.float64), "last_u": float(s.last_u)}
    return {"state": np.array([s.position, s.velocity], np.float64)}  # MountainCar*


class _TwinRenderer:
    """Draws a gymnax state with the gymnasium twin's ``rgb_array`` renderer."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.env = gym.make(name, render_mode=_mode(True), disable_env_checker=True)

    def __call__(self, state: Any) -> np.ndarray:
        twin = self.env.unwrapped
        for key, value in _twin_attributes(self.name, state).items():
            setattr(twin, key, value)
        return np.asarray(twin.render(), np.uint8)

    def close(self) -> None:
        self.env.close()


class CraftaxFamily(JaxFamily):
    """Craftax and Craftax-Classic with symbolic observations (float32 vectors: the local map
    one-hot, inventory and status); frames drawn by Craftax's pixel renderer."""

    name = "craftax"
    prefix = "craftax"
    names = CRAFTAX_IDS
    limit_field = "max_timesteps"
    # A world costs ~4 ms to generate whatever the batch, and a random agent's episodes end
    # for ~0.2 of 64 envs per step: 4 wastes fewer worlds than 16 (measured 5.6k vs 4.2k
    # steps/s for 64 envs on 2 cores; Craftax's own auto-reset: 340).
    default_reset_batch = 4

    def _load(self, name: str) -> Any:
        try:
            from craftax.craftax_env import make_craftax_env_from_name
        except ImportError:
            raise EnvError(f"{name} needs craftax: {INSTALL_HINT}") from None
        return make_craftax_env_from_name(name, auto_reset=False)

    def time_limit(self, env_id: str, cfg: EnvConfig, evaluation: bool) -> int | None:
        if cfg.max_episode_steps is not None:
            return cfg.max_episode_steps
        return self.task(env_id, cfg).default_limit

    def _constants(self, env_id: str) -> Any:
        if "Classic" in env_id:
            from craftax.craftax_classic import constants
        else:
            from craftax.craftax import constants
        return constants

    def action_names(self, env_id: str) -> tuple[str, ...]:
        return tuple(a.name for a in self._constants(env_id).Action)

    def make_renderer(self, env_id: str, cfg: EnvConfig) -> Any:
        if "Classic" in env_id:
            from craftax.craftax_classic.renderer import make_craftax_pixel_renderer
        else:
            from craftax.craftax.renderer import make_craftax_pixel_renderer
        jax = require_jax()
        render = jax.jit(make_craftax_pixel_renderer(self._constants(env_id).BLOCK_PIXEL_SIZE_IMG))
        return _CraftaxRenderer(render)


class _CraftaxRenderer:
    def __init__(self, render: Any) -> None:
        self.render = render

    def __call__(self, state: Any) -> np.ndarray:
        return np.clip(np.asarray(self.render(state)), 0, 255).astype(np.uint8)

    def close(self) -> None:
        return None


GYMNAX = GymnaxFamily()
CRAFTAX = CraftaxFamily()
for _family in (GYMNAX, CRAFTAX):
    for _env_id in _family.ids():
        ENVS.add(_env_id, _family)


# ---------------------------------------------------------------------------- backend
@VECTOR_BACKENDS.register("jax")
class JaxVectorEnv(CoreVectorEnv):
    """JAX envs stepped by one jitted call (see the module docstring and
    :class:`CoreVectorEnv` for the semantics)."""

    backend = "jax"
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
        self.check(family, env_id, cfg)
        assert isinstance(family, JaxFamily)
        super().__init__(spec, num_envs, seed, *family.score_transforms(cfg, evaluation))
        task = family.task(env_id, cfg)
        self._fns = task.functions
        self._jax = self._fns.jax
        self._limit = family.time_limit(env_id, cfg, evaluation)
        self._reset_batch = min(num_envs, family.reset_batch(cfg))
        self._action_dtype = np.int32 if spec.discrete else np.float32
        self._elapsed = np.zeros(num_envs, np.int64)  # agent steps of the current episodes
        self._keys: Any = None
        self._state: Any = None
        self._renderer = family.make_renderer(env_id, cfg) if render else None

    @staticmethod
    def check(family: EnvFamily, env_id: str, cfg: EnvConfig) -> None:
        """JAX envs only."""
        if not isinstance(family, JaxFamily):
            ids = [i for f in (GYMNAX, CRAFTAX) for i in f.ids()]
            raise ConfigError(
                f"env.backend 'jax' runs JAX envs only, not '{env_id}'; valid: {', '.join(ids)}"
            )

    # ------------------------------------------------------------ stepping
    def _put(self, array: np.ndarray) -> Any:
        return self._jax.device_put(array, self._fns.device)

    def _reset_where(self, mask: np.ndarray, obs: Any) -> Any:
        """Reset the envs of ``mask`` into ``self._state``/``obs``, R at a time."""
        n, r = self.num_envs, self._reset_batch
        pending = np.flatnonzero(mask)
        for start in range(0, len(pending), r):
            chunk = pending[start : start + r]
            idx = np.full(r, n, np.int32)  # index n is out of range: dropped
            idx[: len(chunk)] = chunk
            self._keys, self._state, obs = self._fns.reset_into(self._keys, self._state, obs, idx)
        return obs

    @staticmethod
    def _export(obs: Any) -> np.ndarray:
        """A NumPy view of the JAX buffer (DLPack: no copy, writable)."""
        return torch.from_dlpack(obs).numpy()

    def _reset_envs(self, seeds: list[int] | None) -> tuple[np.ndarray, np.ndarray | None]:
        jax = self._jax
        if seeds is not None:
            keys = np.stack([np.asarray(jax.random.PRNGKey(s)) for s in seeds])
            self._keys = self._put(keys)
        elif self._keys is None:
            raise EnvError(f"{self.spec.env_id}: the first reset needs seeds")
        obs, self._state = self._fns.zeros(self.num_envs)
        obs = self._reset_where(np.ones(self.num_envs, bool), obs)
        self._elapsed[:] = 0
        return self._export(obs), None

    def _step_envs(self, actions: np.ndarray) -> RawStep:
        # CoreVectorEnv.step updates _done after this call: it still flags the envs whose
        # episode ended on the last step, which this step resets
        pending = self._done
        # NumPy arguments: jit's C++ dispatch moves them to the device faster than device_put
        actions = actions.astype(self._action_dtype, copy=False)
        self._keys, obs, self._state, reward, terminated = self._fns.step(
            self._keys, self._state, actions
        )
        if pending.any():
            obs = self._reset_where(pending, obs)
        reward = np.array(reward, np.float64)
        terminated = np.array(terminated, bool)
        reward[pending] = 0.0
        terminated[pending] = False
        self._elapsed += 1
        self._elapsed[pending] = 0
        if self._limit is None:
            truncated = np.zeros(self.num_envs, bool)
        else:  # gymnasium's TimeLimit: truncated at the limit, whether or not terminated
            truncated = self._elapsed >= self._limit
        return self._export(obs), reward, terminated, truncated, None

    # ------------------------------------------------------------ exact resume
    def supports_exact_resume(self) -> bool:
        return True

    def _get_env_states(self) -> list[dict[str, Any]]:
        """One entry holding every env's arrays batched (leading axis N): the state leaves by
        pytree path, the PRNG keys and the step counters (N small tensors per leaf would
        bloat checkpoints)."""
        tree = self._jax.tree_util
        leaves = tree.tree_flatten_with_path(self._state)[0]
        return [
            {
                "state": {tree.keystr(path): np.array(leaf) for path, leaf in leaves},
                "keys": np.array(self._keys),
                "elapsed": self._elapsed.copy(),
            }
        ]

    def _set_env_states(self, states: list[dict[str, Any]]) -> None:
        (saved,) = states
        tree = self._jax.tree_util
        _, shapes = self._fns.shapes(self.num_envs)
        paths, treedef = tree.tree_flatten_with_path(shapes)
        leaves = []
        for path, leaf in paths:
            name = tree.keystr(path)
            if name not in saved["state"]:
                raise EnvError(f"{self.spec.env_id}: saved env state lacks {name}")
            value = np.asarray(saved["state"][name], dtype=leaf.dtype)  # checkpoints widen
            if value.shape != leaf.shape:
                raise EnvError(
                    f"{self.spec.env_id}: saved {name} has shape {value.shape}, "
                    f"expected {leaf.shape}"
                )
            leaves.append(self._put(value))
        self._state = tree.tree_unflatten(treedef, leaves)
        self._keys = self._put(np.asarray(saved["keys"], np.uint32))
        self._elapsed[:] = saved["elapsed"]

    # ------------------------------------------------------------ rendering
    def render_first(self) -> np.ndarray:
        if self._renderer is None:
            raise EnvError("the env was not made for rendering (make_vector_env(render=True))")
        if self._state is None:
            raise EnvError(f"{self.spec.env_id}: call reset() before render_first()")
        return self._renderer(self._jax.tree.map(lambda x: x[0], self._state))

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        self._state = self._keys = None


# ---------------------------------------------------------------------------- one env
class JaxGymEnv(gym.Env):
    """One JAX env as a gymnasium env, for backends sync and async and ``reprl play``: a
    one-env :class:`JaxVectorEnv` (time limit included) whose caller resets it after an
    episode ends. Env seeded ``s`` plays the same episodes as env i of a ``jax`` vector env
    seeded ``s - i`` (given the same actions)."""

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(
        self, family: JaxFamily, env_id: str, cfg: EnvConfig, evaluation: bool, render: bool
    ) -> None:
        spec = family.spec(env_id, cfg, evaluation)
        self.vec = JaxVectorEnv(family, env_id, cfg, 1, 0, evaluation, spec, render)
        self.render_mode = "rgb_array" if render else None
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, spec.obs_shape, np.float32)
        if spec.discrete:
            self.action_space: gym.Space = gym.spaces.Discrete(spec.num_actions)
        else:
            assert spec.action_low is not None and spec.action_high is not None
            self.action_space = gym.spaces.Box(spec.action_low, spec.action_high, dtype=np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is None and self.vec._done[0]:
            # the episode ended: reset through the vector env's autoreset step, which splits
            # the env's key as the jax backend does (same episodes on every backend)
            obs = self.vec.step(np.zeros((1, *self.action_space.shape), np.float32)).obs
        else:
            obs = self.vec.reset(seed)
        return obs[0].copy(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        res = self.vec.step(np.asarray(action)[None])
        done = (bool(res.terminated[0]), bool(res.truncated[0]))
        return res.obs[0].copy(), float(res.reward[0]), *done, {}

    def render(self) -> np.ndarray:  # type: ignore[override]
        return self.vec.render_first()

    def close(self) -> None:
        self.vec.close()

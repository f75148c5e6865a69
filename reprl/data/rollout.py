"""On-policy Source: steps a vector env with the agent and returns ``(N, T)`` Batches."""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from reprl.envs.base import StepResult, VectorEnv
from reprl.errors import ConfigError
from reprl.runs.checkpoint import to_numpy
from reprl.types import Batch

if TYPE_CHECKING:
    from reprl.agents.base import Agent


def obs_torch_dtype(obs_dtype: np.dtype | type) -> torch.dtype:
    """The dtype observations are stored and fed to networks in: uint8 frames stay uint8 (the
    backbone scales them), everything else is float32."""
    return torch.uint8 if np.dtype(obs_dtype) == np.uint8 else torch.float32


class StepStats:
    """What a Source reports between log events: finished episodes (raw return, length) and
    time spent stepping envs and choosing actions. Shared by every Source."""

    def __init__(self) -> None:
        self.episodes: list[tuple[float, int]] = []
        self.env_time = 0.0
        self.inference_time = 0.0

    def record_episodes(self, res: StepResult) -> None:
        """Remember the episodes that ended on this vector step."""
        for i in np.flatnonzero(res.episode_length):
            self.episodes.append((float(res.episode_return[i]), int(res.episode_length[i])))

    def pop(self) -> dict[str, float]:
        """Metrics since the last call (``perf/`` timings, ``charts/`` episode means)."""
        out: dict[str, float] = {
            "perf/env_time": self.env_time,
            "perf/inference_time": self.inference_time,
        }
        if self.episodes:
            rets, lens = zip(*self.episodes)
            out["charts/episodic_return"] = float(np.mean(rets))
            out["charts/episodic_length"] = float(np.mean(lens))
            out["charts/episodes"] = float(len(rets))
        self.episodes.clear()
        self.env_time = self.inference_time = 0.0
        return out


class RolloutSource:
    """Collects ``num_steps`` steps from each of ``envs.num_envs`` envs per :meth:`next`.

    Buffers are allocated once; observations are written straight from the env's arrays
    into them (uint8 stays uint8) and acting reads views of them, so nothing is copied twice.
    """

    def __init__(self, envs: VectorEnv, num_steps: int, seed: int, device: torch.device) -> None:
        self.envs, self.num_steps, self.device = envs, num_steps, device
        spec, n = envs.spec, envs.num_envs
        obs_dtype = obs_torch_dtype(spec.obs_dtype)
        if spec.discrete:
            act_shape, act_dtype = (), torch.long
        else:
            act_shape, act_dtype = spec.action_shape, torch.float32
        t = num_steps
        self.buf = Batch(
            obs=torch.zeros((n, t, *spec.obs_shape), dtype=obs_dtype),
            action=torch.zeros((n, t, *act_shape), dtype=act_dtype),
            reward=torch.zeros((n, t)),
            terminated=torch.zeros((n, t), dtype=torch.bool),
            truncated=torch.zeros((n, t), dtype=torch.bool),
            is_first=torch.zeros((n, t), dtype=torch.bool),
            valid=torch.zeros((n, t), dtype=torch.bool),
        )
        # NumPy views of the buffers: per-step writes in NumPy cost ~1 us instead of ~5 us.
        self.np = {name: tensor.numpy() for name, tensor in self.buf.tensors()}
        self.next_obs = np.asarray(envs.reset(seed=seed))
        self.next_is_first = np.ones(n, dtype=bool)
        self.next_valid = np.ones(n, dtype=bool)
        # Per-step views of the obs and is_first buffers that acting reads, made once: slicing
        # a tensor costs ~2 us, twice per env step.
        self._step_views = [
            (self.buf.obs[:, t : t + 1], self.buf.is_first[:, t : t + 1]) for t in range(num_steps)
        ]
        self.state: Any = None
        self._stateless_agent: Agent | None = None
        """The agent whose initial state is None (a stateless model): not asked again."""
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)
        self.stats = StepStats()

    # ------------------------------------------------------------------ collect
    def next(self, agent: Agent) -> Batch:
        """Collect one rollout with ``agent`` acting; returns a Batch (on ``self.device``).

        Its extras hold what acting stored plus, for bootstrapping, ``next_obs`` and
        ``next_is_first`` ``(N, 1, ...)``: the observation after the last step. With a
        recurrent neck also ``initial_state``, the neck's state where the rollout starts, and
        ``next_state``, the state reached at its end (the one ``next_obs`` continues from),
        each ``(N, 1, ...)`` as ``Neck.state_to_batch`` packs it.
        """
        buf = self.buf
        if self.state is None and agent is not self._stateless_agent:
            self.state = agent.initial_state(self.envs.num_envs)
            if self.state is None:  # ~5 us per call saved on every later call (train_freq 1)
                self._stateless_agent = agent
        extras: dict[str, torch.Tensor] = {}
        # A recurrent neck's state where the rollout starts, to re-run the model over each
        # env's sequence when learning (cloned: acting's tensors are inference-mode tensors).
        initial_state = None if self.state is None else self._pack(agent, self.state)
        extras_np: dict[str, np.ndarray] = {}
        # One autocast region for the whole rollout: its cache keeps the low-precision copies
        # of the (unchanging) weights across steps instead of casting them at every step.
        with agent.autocast():
            self._collect(agent, extras, extras_np)
        batch = Batch(
            obs=buf.obs,
            action=buf.action,
            reward=buf.reward,
            terminated=buf.terminated,
            truncated=buf.truncated,
            is_first=buf.is_first,
            valid=buf.valid,
            extras=extras,
        )
        # What the rollout's last step leads to, for bootstrapping: (N, 1, ...)
        batch.extras["next_obs"] = torch.from_numpy(self.next_obs[:, None]).to(buf.obs.dtype)
        batch.extras["next_is_first"] = torch.from_numpy(self.next_is_first[:, None])
        if initial_state is not None:
            batch.extras["initial_state"] = initial_state
            batch.extras["next_state"] = self._pack(agent, self.state)
        return batch if self.device.type == "cpu" else batch.to(self.device, non_blocking=True)

    @staticmethod
    def _pack(agent: Agent, state: Any) -> torch.Tensor:
        """A neck state as a normal CPU tensor ``(N, 1, ...)`` for the Batch."""
        return agent.model.neck.state_to_batch(state).to("cpu", copy=True)

    def _collect(
        self, agent: Agent, extras: dict[str, torch.Tensor], extras_np: dict[str, np.ndarray]
    ) -> None:
        """Step every env ``num_steps`` times, writing into the buffers and ``extras``."""
        envs, bnp = self.envs, self.np
        obs_np, first_np, valid_np = bnp["obs"], bnp["is_first"], bnp["valid"]
        action_np, reward_np = bnp["action"], bnp["reward"]
        term_np, trunc_np = bnp["terminated"], bnp["truncated"]
        clock = time.perf_counter
        t_env = t_inf = 0.0
        for t, (obs_t, is_first_t) in enumerate(self._step_views):
            obs_np[:, t] = self.next_obs
            first_np[:, t] = self.next_is_first
            valid_np[:, t] = self.next_valid
            t0 = clock()
            action, step_extras, self.state = agent.act(obs_t, self.state, is_first_t)
            if step_extras:
                if not extras:  # allocate algorithm extras from the first step's shapes
                    for k, v in step_extras.items():
                        extras[k] = torch.zeros(
                            (v.shape[0], self.num_steps, *v.shape[2:]), dtype=v.dtype
                        )
                        extras_np[k] = extras[k].numpy()
                for k, v in step_extras.items():
                    extras_np[k][:, t] = v.cpu().numpy()[:, 0]
            # NumPy slices the (N, 1, ...) action: a tensor slice costs ~2 us more.
            action_t = action.cpu().numpy()[:, 0]
            action_np[:, t] = action_t
            t1 = clock()
            res = envs.step(action_t)
            t_env += clock() - t1
            t_inf += t1 - t0
            self.next_obs = res.obs
            reward_np[:, t] = res.reward
            term_np[:, t] = res.terminated
            trunc_np[:, t] = res.truncated
            done = res.terminated | res.truncated
            self.next_is_first = ~self.next_valid  # the obs after a reset step starts an episode
            self.next_valid = ~done
            if np.count_nonzero(done):  # ~1 us less than done.any()
                self.stats.record_episodes(res)
        self.stats.env_time += t_env
        self.stats.inference_time += t_inf

    # ------------------------------------------------------------------ minibatches
    def minibatches(self, batch: Batch, num_epochs: int, num_minibatches: int) -> Iterator[Batch]:
        """Shuffled transitions, ``(B, 1, ...)`` each, ``num_epochs`` passes."""
        flat = batch.flatten()
        size = flat.shape[0]
        mb_size = size // num_minibatches
        for _ in range(num_epochs):
            perm = torch.randperm(size, generator=self.generator).to(batch.reward.device)
            for start in range(0, mb_size * num_minibatches, mb_size):
                yield flat.index(perm[start : start + mb_size])

    def sequence_minibatches(
        self, batch: Batch, num_epochs: int, num_minibatches: int
    ) -> Iterator[Batch]:
        """Whole env sequences, ``(num_envs / num_minibatches, T, ...)`` each, in time order,
        ``num_epochs`` passes; envs are shuffled between minibatches, time steps never.

        For recurrent models: each minibatch keeps its envs' ``initial_state`` extras, and the
        loss re-runs the model over the sequences from them with the ``is_first`` resets, as
        CleanRL's ppo_atari_lstm.py (``envsperbatch``) does. Shuffled single transitions would
        cut every sequence from its state (Tianshou's recurrent-training bug).

        Raises:
            ConfigError: the number of envs is not divisible by ``num_minibatches``.
        """
        n = batch.shape[0]
        check_sequence_split(n, num_minibatches)
        mb_envs = n // num_minibatches
        for _ in range(num_epochs):
            perm = torch.randperm(n, generator=self.generator).to(batch.reward.device)
            for start in range(0, n, mb_envs):
                yield batch.index(perm[start : start + mb_envs])

    # ------------------------------------------------------------------ bookkeeping
    def pop_metrics(self) -> dict[str, float]:
        """Episode statistics and timings since the last call."""
        return self.stats.pop()

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue collecting exactly where this source stopped."""
        state: dict[str, Any] = {
            "next_obs": self.next_obs.copy(),
            "next_is_first": self.next_is_first.copy(),
            "next_valid": self.next_valid.copy(),
            "generator": self.generator.get_state(),
            "env": self.envs.state_dict(),
        }
        if self.state is not None:
            state["recurrent_state"] = self.state
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`. Where the env backend cannot restore its envs' own state
        (Box2D, ale/envpool backends), the envs are reset instead and a warning says so."""
        self.envs.load_state_dict(to_numpy(state["env"]))
        self.generator.set_state(state["generator"])
        self.state = _to_device(state.get("recurrent_state"), self.device)
        if self.envs.supports_exact_resume():
            self.next_obs = to_numpy(state["next_obs"]).copy()
            self.next_is_first = to_numpy(state["next_is_first"]).copy()
            self.next_valid = to_numpy(state["next_valid"]).copy()
            return
        warnings.warn(
            f"{self.envs.spec.env_id}: this env backend cannot save its envs' state; the resumed "
            "run starts new episodes (weights, optimizer and counters are restored exactly)",
            stacklevel=2,
        )
        self.next_obs = np.asarray(self.envs.reset(seed=self.seed + 7919))
        self.next_is_first = np.ones(self.envs.num_envs, dtype=bool)
        self.next_valid = np.ones(self.envs.num_envs, dtype=bool)


def check_sequence_split(num_envs: int, num_minibatches: int) -> None:
    """Sequence minibatches split the envs: ``num_envs`` must be divisible by
    ``num_minibatches`` (ConfigError naming both otherwise)."""
    if num_envs % num_minibatches:
        raise ConfigError(
            f"agent.num_minibatches: sequence minibatches split the envs into equal groups, "
            f"but env.num_envs={num_envs} is not divisible by num_minibatches={num_minibatches}"
        )


def _to_device(state: Any, device: torch.device) -> Any:
    """A loaded recurrent state (tensors in nested tuples) as fresh tensors on ``device``
    (a loaded checkpoint's tensors are memory-mapped from the file)."""
    if isinstance(state, torch.Tensor):
        return state.to(device, copy=True)
    if isinstance(state, (list, tuple)):
        return type(state)(_to_device(s, device) for s in state)
    return state

"""Off-policy Source: steps a vector env with the agent and stores every step in a replay buffer.

:meth:`ReplaySource.next` collects ``train_freq`` steps per env (the agent explores, e.g.
epsilon-greedy) and returns them as a small ``(N, train_freq)`` Batch, from whose shape the
loop counts env steps; the agent samples its minibatches from :attr:`ReplaySource.buffer`
(with :attr:`ReplaySource.rng`). Episode statistics and timings as
:class:`reprl.data.rollout.RolloutSource`.
"""

from __future__ import annotations

import time
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from reprl.data.replay import ReplayBuffer
from reprl.data.rollout import StepStats
from reprl.envs.base import VectorEnv
from reprl.runs.checkpoint import to_numpy
from reprl.types import Batch

if TYPE_CHECKING:
    from reprl.agents.base import Agent


class ReplaySource:
    """Collects ``train_freq`` steps per env per :meth:`next` into ``buffer``.

    Args:
        envs: the training envs.
        buffer: where every step goes (its ``num_envs`` must match ``envs``).
        train_freq: steps per env collected by each :meth:`next`.
        seed: seeds the env reset and the sampling generator :attr:`rng`.
        device: where returned Batches live.
        replay_in_checkpoint: include the buffer in :meth:`state_dict` (exact resume, large).
    """

    def __init__(
        self,
        envs: VectorEnv,
        buffer: ReplayBuffer,
        train_freq: int,
        seed: int,
        device: torch.device,
        replay_in_checkpoint: bool = False,
    ) -> None:
        if buffer.num_envs != envs.num_envs:
            raise ValueError(f"buffer has {buffer.num_envs} envs, the vector env {envs.num_envs}")
        self.envs, self.buffer, self.train_freq, self.device = envs, buffer, train_freq, device
        self.replay_in_checkpoint = replay_in_checkpoint
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        """Generator for replay sampling (saved in checkpoints)."""
        self.next_obs = np.asarray(envs.reset(seed=seed))
        self.next_is_first = np.ones(envs.num_envs, dtype=bool)
        self.next_valid = np.ones(envs.num_envs, dtype=bool)
        self.state: Any = None
        self.stats = StepStats()

    def next(self, agent: Agent) -> Batch:
        """Step every env ``train_freq`` times with ``agent.act``; store and return the steps."""
        n, t_len = self.envs.num_envs, self.train_freq
        if self.state is None:
            self.state = agent.initial_state(n)
        cols: dict[str, list[np.ndarray]] = {
            k: [] for k in ("obs", "action", "reward", "terminated", "truncated", "is_first")
        }
        cols["valid"] = []
        clock = time.perf_counter
        t_env = t_inf = 0.0
        with agent.autocast():
            for _ in range(t_len):
                obs, is_first, valid = self.next_obs, self.next_is_first, self.next_valid
                t0 = clock()
                action, _, self.state = agent.act(
                    torch.from_numpy(obs[:, None]), self.state, torch.from_numpy(is_first[:, None])
                )
                action_np = action[:, 0].cpu().numpy()
                t1 = clock()
                res = self.envs.step(action_np)
                t_env += clock() - t1
                t_inf += t1 - t0
                self.buffer.add(
                    obs, action_np, res.reward, res.terminated, res.truncated, valid, is_first
                )
                for key, value in (
                    ("obs", obs),
                    ("action", action_np),
                    ("reward", res.reward),
                    ("terminated", res.terminated),
                    ("truncated", res.truncated),
                    ("is_first", is_first),
                    ("valid", valid),
                ):
                    cols[key].append(np.asarray(value))
                done = res.terminated | res.truncated
                self.next_obs = np.asarray(res.obs)
                self.next_is_first = ~valid  # the obs after a reset step starts an episode
                self.next_valid = ~done
                if done.any():
                    self.stats.record_episodes(res)
        self.stats.env_time += t_env
        self.stats.inference_time += t_inf
        arrays = {k: torch.from_numpy(np.stack(v, axis=1)) for k, v in cols.items()}
        arrays["reward"] = arrays["reward"].float()
        batch = Batch(**arrays)
        return batch if self.device.type == "cpu" else batch.to(self.device, non_blocking=True)

    # ------------------------------------------------------------------ bookkeeping
    def pop_metrics(self) -> dict[str, float]:
        """Episode statistics, timings and buffer fill since the last call."""
        return self.stats.pop() | {"charts/replay_size": float(len(self.buffer))}

    def state_dict(self) -> dict[str, Any]:
        """Envs, current observations and the sampling generator; the buffer only with
        ``replay_in_checkpoint`` (otherwise a resumed run starts from an empty buffer)."""
        state: dict[str, Any] = {
            "next_obs": self.next_obs.copy(),
            "next_is_first": self.next_is_first.copy(),
            "next_valid": self.next_valid.copy(),
            "rng": self.rng.bit_generator.state,
            "env": self.envs.state_dict(),
        }
        if self.state is not None:
            state["recurrent_state"] = self.state
        if self.replay_in_checkpoint:
            state["buffer"] = self.buffer.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (envs reset with a warning where the backend cannot
        restore them, as :class:`reprl.data.rollout.RolloutSource`)."""
        self.envs.load_state_dict(to_numpy(state["env"]))
        self.rng.bit_generator.state = state["rng"]
        self.state = state.get("recurrent_state")
        if "buffer" in state:
            self.buffer.load_state_dict(state["buffer"])
        if self.envs.supports_exact_resume():
            self.next_obs = to_numpy(state["next_obs"]).copy()
            self.next_is_first = to_numpy(state["next_is_first"]).copy()
            self.next_valid = to_numpy(state["next_valid"]).copy()
        else:
            warnings.warn(
                f"{self.envs.spec.env_id}: this env backend cannot save its envs' state; the "
                "resumed run starts new episodes",
                stacklevel=2,
            )
            self.next_obs = np.asarray(self.envs.reset(seed=self.seed + 7919))
            self.next_is_first = np.ones(self.envs.num_envs, dtype=bool)
            self.next_valid = np.ones(self.envs.num_envs, dtype=bool)
        if "buffer" not in state:
            # The buffer starts empty: its first added step must begin an episode.
            self.next_is_first = np.ones(self.envs.num_envs, dtype=bool)

"""Off-policy Source: steps a vector env with the agent and stores every step in a replay buffer.

:meth:`ReplaySource.next` collects ``train_freq`` steps per env (the agent explores, e.g.
epsilon-greedy) and returns them as a small ``(N, train_freq)`` Batch, from whose shape the
loop counts env steps; the agent samples its minibatches from :attr:`ReplaySource.buffer`
(with :attr:`ReplaySource.rng`). Episode statistics and timings as
:class:`reprl.data.rollout.RolloutSource`.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from reprl.data.replay import ReplayBuffer
from reprl.data.rollout import RolloutSource
from reprl.envs.base import VectorEnv
from reprl.errors import CheckpointError
from reprl.types import Batch

if TYPE_CHECKING:
    from reprl.agents.base import Agent


class ReplaySource:
    """Collects ``train_freq`` steps per env per :meth:`next` into ``buffer``.

    Collection itself is a :class:`RolloutSource` of ``train_freq`` steps (one stepping loop,
    one set of episode statistics, one env-state snapshot for every Source); this class adds
    each collected step to the replay buffer and owns the sampling generator.

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
        self.envs, self.buffer, self.train_freq = envs, buffer, train_freq
        self.replay_in_checkpoint = replay_in_checkpoint
        self.rollout = RolloutSource(envs, train_freq, seed, device)
        self.rng = np.random.default_rng(seed)
        """Generator for replay sampling (saved in checkpoints)."""

    def next(self, agent: Agent) -> Batch:
        """Step every env ``train_freq`` times with ``agent.act``; store and return the steps."""
        batch = self.rollout.next(agent)
        b = self.rollout.np  # the CPU buffers the rollout just filled
        self.buffer.add_steps(
            b["obs"],
            b["action"],
            b["reward"],
            b["terminated"],
            b["truncated"],
            b["valid"],
            b["is_first"],
        )
        return batch

    # ------------------------------------------------------------------ bookkeeping
    def pop_metrics(self) -> dict[str, float]:
        """Episode statistics, timings and buffer fill since the last call."""
        return self.rollout.pop_metrics() | {"charts/replay_size": float(len(self.buffer))}

    def state_dict(self) -> dict[str, Any]:
        """The rollout's state (envs, current observations), the sampling generator and the
        number of stored transitions; the buffer itself only with ``replay_in_checkpoint``
        (otherwise a resumed run starts empty). The buffer's arrays are views of the live
        buffer (see :meth:`ReplayBuffer.state_dict`): save them before the next :meth:`next`."""
        state: dict[str, Any] = {
            "rollout": self.rollout.state_dict(),
            "rng": self.rng.bit_generator.state,
            "replay_size": len(self.buffer),
        }
        if self.replay_in_checkpoint:
            state["buffer"] = self.buffer.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (envs reset with a warning where the backend cannot
        restore them, as :class:`reprl.data.rollout.RolloutSource`).

        A saved buffer that does not fit this one raises
        :class:`reprl.errors.CheckpointError` before anything is restored. Without a saved
        buffer the resumed run starts with an empty one, and a warning says the resume is not
        exact (learning waits for ``learning_starts`` new transitions).
        """
        if "buffer" in state:
            try:
                self.buffer.load_state_dict(state["buffer"])
            except CheckpointError as exc:
                raise CheckpointError(
                    f"{exc}; resume with the run's agent.buffer_size, env.num_envs and "
                    "replay options"
                ) from None
        self.rollout.load_state_dict(state["rollout"])
        self.rng.bit_generator.state = state["rng"]
        if "buffer" in state:
            return
        # The buffer starts empty: its first added step must begin an episode.
        self.rollout.next_is_first[:] = True
        lost = int(state.get("replay_size", -1))  # -1: not recorded (older checkpoints)
        if lost != 0:
            had = f"{lost} transitions" if lost > 0 else "its transitions"
            warnings.warn(
                f"the checkpoint holds no replay buffer (agent.replay_in_checkpoint=false): "
                f"the resumed run starts with an empty replay buffer instead of {had}, so it "
                "does not continue the interrupted run exactly (weights, optimizer, counters "
                "and RNG are restored)",
                stacklevel=2,
            )

"""Pieces every replay-based agent shares (DQN, SAC, TD3, DDPG): the replay options, the
replay Source and the sampling of update minibatches.

An off-policy agent on the one loop: :class:`reprl.data.replay_source.ReplaySource` collects
``train_freq`` steps per env into the replay buffer (:meth:`OffPolicyAgent.make_source`), and
:meth:`OffPolicyAgent.minibatches` then yields ``gradient_steps`` windows of ``1 + n_step``
steps sampled from it, once ``learning_starts`` transitions are stored. The agent's
``compute_loss`` learns from step 0 of each window with :func:`reprl.data.nstep.window_targets`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from reprl import dist
from reprl.agents.base import Agent
from reprl.data.nstep import window_targets
from reprl.data.replay import ReplayBuffer
from reprl.errors import ConfigError, choices_hint
from reprl.optim.optimizers import Adam, OptimizerSet, check_max_grad_norm
from reprl.optim.schedules import Schedule
from reprl.optim.target import TargetNetwork
from reprl.types import Batch

AUTOCAST = ("none", "bf16")
_MAX_SAMPLE_BYTES = 64 * 2**20
"""Observation bytes drawn by one replay ``sample()`` call of an update phase."""
AUGMENTS = ("none", "random_shift")


@dataclass
class OffPolicyConfig:
    """Replay and update-rhythm options of every replay-based agent (agents redeclare the
    defaults of their papers)."""

    buffer_size: int = 1_000_000
    """Replay capacity in transitions over all envs (each env gets buffer_size / num_envs)."""
    learning_starts: int = 100
    """Transitions stored before the first gradient step."""
    batch_size: int = 256
    """Transitions per gradient step."""
    train_freq: int = 1
    """Env steps per env collected between update phases."""
    gradient_steps: int = 1
    """Gradient steps per update phase."""
    gamma: float = 0.99
    """Discount factor."""
    n_step: int = 1
    """n-step returns (bootstrapping after n steps, or at the episode's end)."""
    replay_in_checkpoint: bool = False
    """Save the replay buffer in checkpoints (exact resume; can be gigabytes)."""
    autocast: str = "none"
    """Mixed precision for acting and learning: none or bf16."""

    def validate(self, path: str) -> None:
        """Reject sizes below 1, unknown autocast modes and a bad ``max_grad_norm`` (declared
        by the subclasses) at load time."""
        check_max_grad_norm(getattr(self, "max_grad_norm", None), path)
        if self.autocast not in AUTOCAST:
            raise ConfigError(
                f"{path}.autocast: unknown '{self.autocast}'; valid: {', '.join(AUTOCAST)}"
            )
        for name in ("buffer_size", "batch_size", "train_freq", "gradient_steps", "n_step"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{path}.{name}: must be >= 1, got {getattr(self, name)}")
        if self.learning_starts < 0:
            raise ConfigError(f"{path}.learning_starts: must be >= 0")
        if not 0.0 <= self.gamma <= 1.0:
            raise ConfigError(f"{path}.gamma: must be in [0, 1], got {self.gamma}")


class OffPolicyAgent(Agent):
    """An agent that learns from replay: the Source and the sampling of minibatches.

    Subclasses implement ``act``, ``compute_loss`` and ``after_update``; they may set
    :attr:`prioritized` / :attr:`per_alpha` before calling :meth:`make_source` and
    :attr:`beta` for the importance weights.
    """

    target: TargetNetwork
    """The target network every off-policy agent builds in its ``__init__`` (saved here)."""
    prioritized: bool = False
    """Proportional prioritized replay (DQN's switch)."""
    per_alpha: float = 0.6
    """Priority exponent (prioritized only)."""

    def __init__(self, cfg: Any, spec: Any, model: Any, device: torch.device) -> None:
        super().__init__(cfg, spec, model, device)
        self.buffer: ReplayBuffer | None = None  # the source's, for priority updates
        self.env_steps_seen = 0  # env steps of all processes, counted by minibatches()
        self.gradient_steps_done = 0
        self.beta = 1.0

    def make_source(self, envs: Any, seed: int, device: torch.device) -> Any:
        """A :class:`ReplaySource` over a buffer of ``buffer_size`` transitions (frames stored
        once for stacked uint8 observations)."""
        from reprl.data.replay_source import ReplaySource

        cfg = self.cfg
        per_env = max(cfg.buffer_size // envs.num_envs, cfg.n_step + 2)
        buffer = ReplayBuffer.from_spec(
            envs.spec,
            envs.num_envs,
            per_env,
            prioritized=self.prioritized,
            alpha=self.per_alpha,
        )
        return ReplaySource(envs, buffer, cfg.train_freq, seed, device, cfg.replay_in_checkpoint)

    @property
    def learning(self) -> bool:
        """True once ``learning_starts`` env steps have been collected (before that, agents
        with a warm-up act uniformly at random)."""
        return self.env_steps_seen >= self.cfg.learning_starts

    def on_collected(self, num_steps: int) -> None:
        """Called by :meth:`minibatches` after each collection of ``num_steps`` env steps
        (DQN updates its env-step target here)."""

    def minibatches(self, source: Any, batch: Batch) -> Iterator[Batch]:
        """``gradient_steps`` windows ``(B, 1 + n_step)`` from the buffer once
        ``learning_starts`` transitions are stored (nothing before)."""
        cfg = self.cfg
        n, t = batch.shape
        # Global env steps (every rank collects the same number), so env-step target updates,
        # warm-up and learning_starts mean the same under torchrun as in one process.
        self.env_steps_seen += n * t * dist.world_size()
        self.on_collected(n * t)
        buffer = self.buffer = source.buffer
        if len(buffer) < max(cfg.learning_starts, cfg.batch_size):
            return
        if buffer.sampler is not None:  # priorities change after every step: one at a time
            for _ in range(cfg.gradient_steps):
                mb = buffer.sample(cfg.batch_size, source.rng, n_step=cfg.n_step, beta=self.beta)
                yield mb if self.device.type == "cpu" else mb.to(self.device, non_blocking=True)
            return
        # Uniform replay: nothing is stored during an update phase, so its gradient_steps
        # minibatches (i.i.d. uniform draws, as drawn one by one) come from a few sample()
        # calls, each handed out as views: DQN CartPole makes 1 call per phase instead of 128
        # (~30 us of NumPy/Python overhead each). Calls hold at most _MAX_SAMPLE_BYTES of
        # observations (Atari frames: ~35 minibatches of 32).
        size, left = cfg.batch_size, cfg.gradient_steps
        mb_bytes = size * (1 + cfg.n_step) * buffer.obs.itemsize * math.prod(buffer.obs_shape)
        per_call = max(1, _MAX_SAMPLE_BYTES // mb_bytes)
        while left > 0:
            k = min(left, per_call)
            left -= k
            big = buffer.sample(size * k, source.rng, n_step=cfg.n_step)
            if self.device.type != "cpu":
                big = big.to(self.device, non_blocking=True)
            big = self.prepare_phase(big)
            for start in range(0, size * k, size):
                yield big.index(slice(start, start + size))

    def prepare_phase(self, windows: Batch) -> Batch:
        """Called on each uniform sample of several of an update phase's minibatches before
        they are handed out, to compute what stays fixed during the phase in one batched call
        (DQN: the frozen target network's values). Default: nothing."""
        return windows

    def state_dict(self) -> dict[str, Any]:
        """Model, optimizer, the target network and the step counters."""
        return super().state_dict() | {
            "target": self.target.state_dict(),
            "gradient_steps": self.gradient_steps_done,
            "env_steps": self.env_steps_seen,
        }

    def load_state_dict(self, state: dict[str, Any], optimizer: bool = True) -> None:
        """Restore :meth:`state_dict` (counters only with the optimizer: a weights-only load
        starts a new run, its target a copy of the loaded weights)."""
        super().load_state_dict(state, optimizer)
        if optimizer:
            self.gradient_steps_done = int(state.get("gradient_steps", 0))
            self.env_steps_seen = int(state.get("env_steps", 0))
        if optimizer and "target" in state:
            self.target.load_state_dict(state["target"])
        else:
            self.target.sync()


@dataclass
class ContinuousConfig(OffPolicyConfig):
    """Options shared by the actor-critic agents for continuous actions (SAC, TD3, DDPG)."""

    lr: Schedule = field(default_factory=lambda: Schedule("constant", 3e-4))
    """Learning rate of the critics (and of the actor and entropy coefficient unless set)."""
    actor_lr: Schedule | None = None
    """Learning rate of the actor (None: ``lr``)."""
    adam_eps: float = 1e-8
    """Adam epsilon (PyTorch default, as SB3)."""
    tau: float = 0.005
    """Polyak coefficient of the target networks (Lillicrap et al. 2016: 0.001; SAC/TD3:
    0.005)."""
    policy_delay: int = 1
    """Update the actor (and entropy coefficient) every this many critic updates (TD3: 2)."""
    random_warmup: bool = True
    """Act uniformly at random until ``learning_starts`` env steps (SB3, TD3 and SAC's
    reference implementations do)."""
    augment: str = "none"
    """Image augmentation of sampled observations: none or random_shift (DrQ, Kostrikov et
    al. 2020: pad by ``augment_pad`` and crop back; obs and next obs shifted independently)."""
    augment_pad: int = 4
    """Padding (pixels) of the random shift (DrQ: 4 for 84x84)."""
    max_grad_norm: float | None = None
    """Global gradient-norm clipping (None: off, as SB3's SAC/TD3)."""

    def validate(self, path: str) -> None:
        """Reject bad options at load time."""
        super().validate(path)
        if not 0.0 < self.tau <= 1.0:
            raise ConfigError(f"{path}.tau: must be in (0, 1], got {self.tau}")
        if self.policy_delay < 1:
            raise ConfigError(f"{path}.policy_delay: must be >= 1, got {self.policy_delay}")
        if self.augment not in AUGMENTS:
            raise ConfigError(
                f"{path}.augment: unknown '{self.augment}'; {choices_hint(self.augment, AUGMENTS)}"
            )
        if self.augment_pad < 0:
            raise ConfigError(f"{path}.augment_pad: must be >= 0")


class ContinuousAgent(OffPolicyAgent):
    """Plumbing shared by SAC, TD3 and DDPG on the ``actor_q`` policy: a Polyak target of the
    whole model, one optimizer per part, uniform warm-up actions, and the encoding of a
    sampled window's step 0 and bootstrap step (with DrQ's random shift when asked).

    The actor's loss uses *detached* features and critics (:meth:`ActorQPolicy.q` with
    ``detach_params``), so the summed loss's one backward gives the critics (and the shared
    backbone, as in SAC-AE/DrQ) only the critic gradient and the actor only its own: exactly
    separate updates, with the actor judged by the critics from before this step's update.
    """

    def __init__(self, cfg: Any, spec: Any, model: Any, device: torch.device) -> None:
        if not hasattr(model.policy, "critics"):
            raise ConfigError(
                "model.policy: this agent needs the 'actor_q' policy (model/policy=actor_q)"
            )
        self.extra_params = self.make_extra_params(cfg, spec, device)
        super().__init__(cfg, spec, model, device)
        self.policy = model.policy
        self.target = TargetNetwork(model, "polyak", 1, cfg.tau)
        self.actor_updates = 0
        self.shift_pad = cfg.augment_pad if cfg.augment == "random_shift" else 0
        if self.shift_pad and len(spec.obs_shape) != 3:
            raise ConfigError(
                f"agent.augment: random_shift needs image observations (C, H, W); env "
                f"{spec.env_id!r} has {spec.obs_shape}"
            )

    def make_extra_params(self, cfg: Any, spec: Any, device: torch.device) -> dict[str, Any]:
        """Agent-owned parameters outside the model (SAC: the log entropy coefficient)."""
        return {}

    def make_optimizer(self) -> Any:
        """Adam per part: ``critic`` (critics, backbone, neck), ``actor`` and any extra
        parameters (each with its learning rate)."""
        cfg = self.cfg
        actor = self.model.policy.actor_parameters()
        actor_ids = {id(p) for p in actor}
        critic = [p for p in self.model.parameters() if p.requires_grad and id(p) not in actor_ids]
        parts = {
            "critic": Adam(critic, lr=cfg.lr(0.0), eps=cfg.adam_eps),
            "actor": Adam(
                [p for p in actor if p.requires_grad], lr=self.actor_lr(0.0), eps=cfg.adam_eps
            ),
        }
        for name, param in self.extra_params.items():
            parts[name] = Adam([param], lr=self.extra_lr(name)(0.0), eps=cfg.adam_eps)
        return OptimizerSet(**parts)

    @property
    def actor_lr(self) -> Schedule:
        """The actor's learning-rate schedule."""
        return self.cfg.lr if self.cfg.actor_lr is None else self.cfg.actor_lr

    def extra_lr(self, name: str) -> Schedule:
        """Learning-rate schedule of extra parameter ``name`` (default: the actor's)."""
        return self.actor_lr

    def on_iteration_start(self, progress: float) -> None:
        """Each part's learning rate at this training fraction."""
        self.stop_updates = False
        for name, opt in self.optimizer.parts.items():
            if name == "critic":
                lr = self.cfg.lr(progress)
            elif name == "actor":
                lr = self.actor_lr(progress)
            else:
                lr = self.extra_lr(name)(progress)
            opt.param_groups[0]["lr"] = lr
        self.set_aux_lr(progress)

    # ------------------------------------------------------------------ acting
    def warmup_action(self, n: int) -> torch.Tensor:
        """Uniform random env-scale actions ``(n, 1, *action_shape)``."""
        shape = (n, 1, *self.spec.action_shape)
        return self.policy.to_env(torch.rand(shape, device=self.device) * 2.0 - 1.0)

    def encode(self, obs: torch.Tensor, state: Any, is_first: torch.Tensor) -> tuple[Any, Any]:
        """``(features (N, T, D), new state)`` of the online model, for acting (its features
        without infos: :meth:`AgentModel.act_features`)."""
        return self.model.act_features(obs.to(self.device), state, is_first.to(self.device))

    # ------------------------------------------------------------------ learning
    def augment(self, obs: torch.Tensor) -> torch.Tensor:
        """DrQ's random shift when ``augment: random_shift`` (else ``obs`` unchanged)."""
        if not self.shift_pad:
            return obs
        from reprl.models.augment import random_shift

        return random_shift(obs, self.shift_pad)

    def window_features(
        self, mb: Batch, online_boot: bool = True
    ) -> tuple[
        torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor
    ]:
        """n-step targets and features of a window ``(B, 1 + n_step)``.

        Returns ``(returns (B,), discount (B,), action (B, A) normalised, features of step 0
        (B, D), online features of the bootstrap step (B, D; None unless ``online_boot``),
        target features of the bootstrap step (B, D))``. Only step 0's features carry a
        gradient: the bootstrap step's are computed without one, so that a backbone's
        backward pass (a CNN's, from pixels) runs over the ``B`` observations learned from
        and not over the ``2B`` of the window.
        """
        cfg = self.cfg
        returns, discount, boot = window_targets(
            mb.reward, mb.terminated, mb.truncated, mb.valid, cfg.gamma, cfg.n_step
        )
        if cfg.n_step == 1:  # window_targets bootstraps from step 1: a view, no gather
            obs_boot = mb.obs[:, 1:2]
        else:
            rows = torch.arange(mb.reward.shape[0], device=mb.reward.device)
            obs_boot = mb.obs[rows, boot].unsqueeze(1)
        obs0 = self.augment(mb.obs[:, :1])
        obs_boot = self.augment(obs_boot)  # shifted independently of obs0 (DrQ)
        feat_boot = None
        # Features without infos (act_features: for a flatten-only backbone, the observations
        # themselves, three module calls less per step); compiled models keep their forward.
        online, target = self.model, self.target.target
        encode = online.features if online.compiled else online.act_features
        encode_target = target.features if target.compiled else target.act_features
        with self.autocast():
            features = _first(encode(obs0))
            with torch.no_grad():
                if online_boot:
                    feat_boot = _first(encode(obs_boot))
                target_boot = _first(encode_target(obs_boot))
        action = self.policy.from_env(mb.action[:, 0])
        boot_features = None if feat_boot is None else feat_boot[:, 0]
        return returns, discount, action, features[:, 0], boot_features, target_boot[:, 0]

    def actor_step(self) -> bool:
        """Whether this gradient step also updates the actor (every ``policy_delay``-th)."""
        return (self.gradient_steps_done + 1) % self.cfg.policy_delay == 0

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Model, optimizers, target, extra parameters and counters."""
        return super().state_dict() | {
            "extra": {k: v.detach().clone() for k, v in self.extra_params.items()},
            "actor_updates": self.actor_updates,
        }

    def load_state_dict(self, state: dict[str, Any], optimizer: bool = True) -> None:
        """Restore :meth:`state_dict` (a weights-only load syncs the target to the model)."""
        super().load_state_dict(state, optimizer)
        if optimizer and "target" in state:
            self.actor_updates = int(state.get("actor_updates", 0))
            with torch.no_grad():
                for k, v in state.get("extra", {}).items():
                    self.extra_params[k].copy_(v)


def _first(out: tuple[Any, Any]) -> torch.Tensor:
    """The features of :meth:`AgentModel.act_features` ``(features, state)`` or of
    :meth:`AgentModel.features` ``((features, state), info)``."""
    head = out[0]
    return head[0] if isinstance(head, tuple) else head

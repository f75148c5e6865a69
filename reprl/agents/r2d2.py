"""R2D2: recurrent replay distributed DQN (Kapturowski et al. 2019), in one process.

A recurrent Q-network (backbone, LSTM/GRU neck, ``q`` policy) learns from replayed sequences:

- **Stored state** (sec. 3, "stored state"): acting stores the neck's state *before* every
  step as the extra ``state`` ``(N, 1, parts, L, H)``; :class:`SequenceReplayBuffer` keeps one
  per stored step (not one per sequence as the paper), so any valid step can start a window
  and the state replayed at a window's start is exactly the one the actor had there. Cost:
  ``parts * L * H`` floats per step (Atari LSTM 512: 4 KiB, about half an 84x84x4 stack).
- **Burn-in** (sec. 3): a window holds ``burn_in + seq_len + n_step`` steps; the first
  ``burn_in`` are unrolled without gradient from the stored state, for the online and the
  target network each, to refresh it; the loss covers the next ``seq_len`` steps, and the last
  ``n_step`` steps are only bootstrapped from.
- **Value rescaling** (sec. 2, Pohlen et al. 2018): ``y = h(R + discount * h^-1(Q'(s', a*)))``
  with ``h(x) = sign(x)(sqrt(|x| + 1) - 1) + eps x``; ``a*`` from the online net (double Q).
- **Prioritized sequences** (sec. 3): priority ``eta max_t |delta_t| + (1 - eta) mean_t
  |delta_t|`` over the window's learned steps (eta 0.9), on the window's first step.
- **Many actors, one process**: the vector env's ``num_envs`` envs act together, env ``i``
  with Ape-X's epsilon ``epsilon_base ** (1 + epsilon_alpha * i / (N - 1))`` (Horgan et al.
  2018), fixed for the run; evaluation is greedy.

On the one loop as DQN: :class:`SequenceReplaySource` collects ``train_freq`` steps per env,
:meth:`R2D2.minibatches` samples ``gradient_steps`` windows, :meth:`R2D2.compute_loss` and
:meth:`R2D2.after_update` (priorities, target copy every ``target_update_period`` gradient
steps).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from reprl import dist
from reprl.agents.offpolicy import OffPolicyAgent, OffPolicyConfig
from reprl.data.nstep import nstep_targets
from reprl.data.replay import ReplayBuffer
from reprl.data.replay_source import ReplaySource
from reprl.errors import CheckpointError, ConfigError
from reprl.optim.schedules import Schedule
from reprl.optim.target import TargetNetwork
from reprl.registry import AGENTS
from reprl.runs.checkpoint import to_numpy
from reprl.types import Batch


# ---------------------------------------------------------------------------- value rescaling
def value_rescale(x: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """``h(x) = sign(x) (sqrt(|x| + 1) - 1) + eps x`` (Pohlen et al. 2018, eq. 4)."""
    return torch.sign(x) * (torch.sqrt(x.abs() + 1.0) - 1.0) + eps * x


def inverse_value_rescale(x: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """``h^-1(x) = sign(x) (((sqrt(1 + 4 eps (|x| + 1 + eps)) - 1) / (2 eps))^2 - 1)``
    (Pohlen et al. 2018, Proposition A.2)."""
    root = (torch.sqrt(1.0 + 4.0 * eps * (x.abs() + 1.0 + eps)) - 1.0) / (2.0 * eps)
    return torch.sign(x) * (root.square() - 1.0)


def sequence_priority(td_abs: torch.Tensor, mask: torch.Tensor, eta: float) -> torch.Tensor:
    """``eta max_t |delta| + (1 - eta) mean_t |delta|`` over masked steps of ``(B, T)``
    (Kapturowski et al. 2019, sec. 3); 0 for a window without a learned step."""
    masked = torch.where(mask, td_abs, torch.zeros_like(td_abs))
    count = mask.sum(1).clamp(min=1).to(td_abs.dtype)
    return eta * masked.max(1).values + (1.0 - eta) * masked.sum(1) / count


# ---------------------------------------------------------------------------- replay
class SequenceReplayBuffer(ReplayBuffer):
    """A :class:`ReplayBuffer` that also keeps the recurrent state before every stored step
    (``state (num_envs, capacity_per_env, *state_shape)`` float32) and returns it at each
    sampled window's first step as ``extras["state"] (B, 1, *state_shape)``."""

    def __init__(self, *args: Any, state_shape: tuple[int, ...], **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.state_shape = tuple(int(s) for s in state_shape)
        self.state = np.zeros((self.num_envs, self.capacity_per_env, *self.state_shape), np.float32)

    def write_states(self, states: np.ndarray) -> None:
        """States ``(num_envs, T, *state_shape)`` of the last ``T`` added steps."""
        t = states.shape[1]
        pos = (self.count - t + np.arange(t)) % self.capacity_per_env
        self.state[:, pos] = states

    def sample(self, batch_size: int, rng: np.random.Generator, **kw: Any) -> Batch:
        """:meth:`ReplayBuffer.sample` plus ``extras["state"]`` at each window's start."""
        mb = super().sample(batch_size, rng, **kw)
        index = mb.extras["index"][:, 0].numpy()
        flat = self.state.reshape(-1, *self.state_shape)
        mb.extras["state"] = torch.from_numpy(flat.take(index, axis=0)[:, None])
        return mb

    def state_dict(self) -> dict[str, Any]:
        """:meth:`ReplayBuffer.state_dict` plus the stored states (views, as the rest)."""
        return super().state_dict() | {"state": [row[: self.size] for row in self.state]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (a state of another shape raises before writing)."""
        rows = [to_numpy(row) for row in state.get("state", [])]
        if len(rows) != self.num_envs or any(r.shape[1:] != self.state_shape for r in rows):
            raise CheckpointError(
                f"replay buffer: recurrent states missing or not {self.state_shape} per step"
            )
        super().load_state_dict(state)
        for e, row in enumerate(rows):
            self.state[e, : row.shape[0]] = row


class SequenceReplaySource(ReplaySource):
    """:class:`ReplaySource` that also stores acting's ``state`` extra per step."""

    def next(self, agent: Any) -> Batch:
        """Collect and store ``train_freq`` steps per env, with their recurrent states."""
        batch = super().next(agent)
        self.buffer.write_states(batch.extras["state"].cpu().numpy())
        return batch


# ---------------------------------------------------------------------------- agent
@dataclass
class R2D2Config(OffPolicyConfig):
    """R2D2 hyperparameters (defaults: Kapturowski et al. 2019, Table 2, scaled to one
    process where noted)."""

    buffer_size: int = 1_000_000
    """Replay capacity in steps over all envs (paper: 100k sequences of 80 steps)."""
    learning_starts: int = 10_000
    """Steps stored before the first gradient step."""
    batch_size: int = 64
    """Sequences per gradient step."""
    train_freq: int = 4
    """Env steps per env collected between update phases."""
    gamma: float = 0.997
    """Discount factor."""
    n_step: int = 5
    """n-step returns."""
    burn_in: int = 40
    """Steps unrolled without gradient from the stored state before the learned ones."""
    seq_len: int = 80
    """Steps learned from per window (the paper's sequence length minus its burn-in)."""
    lr: Schedule = field(default_factory=lambda: Schedule("constant", 1e-4))
    """Learning rate (a number or a schedule)."""
    adam_eps: float = 1e-3
    """Adam epsilon."""
    target_update_period: int = 2500
    """Copy the online net to the target every this many gradient steps."""
    value_rescale: bool = True
    """Value rescaling h / h^-1 in the targets (off: plain n-step double Q)."""
    rescale_eps: float = 1e-3
    """The ``eps`` of h."""
    prioritized: bool = True
    """Prioritized sequence replay."""
    per_alpha: float = 0.9
    """Priority exponent."""
    per_beta: Schedule = field(default_factory=lambda: Schedule("constant", 0.6))
    """Importance-sampling exponent."""
    priority_eta: float = 0.9
    """Mixture of max and mean |TD| in a sequence's priority."""
    epsilon_base: float = 0.4
    """Ape-X epsilons: env i explores with ``epsilon_base ** (1 + epsilon_alpha * i / (N-1))``
    (one env: ``epsilon_base``)."""
    epsilon_alpha: float = 7.0
    """Spread of the Ape-X epsilons."""
    max_grad_norm: float | None = 40.0
    """Global gradient-norm clipping (None: off)."""

    def validate(self, path: str) -> None:
        """Reject inconsistent options at load time."""
        super().validate(path)
        if self.burn_in < 0 or self.seq_len < 1:
            raise ConfigError(f"{path}: burn_in must be >= 0 and seq_len >= 1")
        if self.target_update_period < 1:
            raise ConfigError(f"{path}.target_update_period: must be >= 1")
        if not 0.0 <= self.priority_eta <= 1.0:
            raise ConfigError(f"{path}.priority_eta: must be in [0, 1]")
        if not 0.0 <= self.epsilon_base <= 1.0:
            raise ConfigError(f"{path}.epsilon_base: must be in [0, 1]")


def ape_x_epsilons(n: int, base: float, alpha: float) -> torch.Tensor:
    """Per-env exploration rates ``base ** (1 + alpha * i / (n - 1))`` (Horgan et al. 2018)."""
    if n == 1:
        return torch.tensor([base])
    return base ** (1.0 + alpha * torch.arange(n, dtype=torch.float64) / (n - 1)).float()


@AGENTS.register("r2d2", R2D2Config)
class R2D2(OffPolicyAgent):
    """Recurrent n-step double Q-learning from stored-state, burned-in replayed sequences."""

    def __init__(self, cfg: R2D2Config, spec: Any, model: Any, device: torch.device) -> None:
        if not spec.discrete:
            raise ConfigError(f"agent: r2d2 needs discrete actions; env {spec.env_id!r} is not")
        if not hasattr(model.policy, "num_atoms") or model.policy.num_atoms > 1:
            raise ConfigError("model.policy: r2d2 needs the 'q' policy with num_atoms 1")
        if model.initial_state(1, device) is None:
            raise ConfigError("model.neck: r2d2 needs a recurrent neck (model/neck=lstm or gru)")
        super().__init__(cfg, spec, model, device)
        self.prioritized, self.per_alpha = cfg.prioritized, cfg.per_alpha
        self.num_actions = spec.num_actions
        self.target = TargetNetwork(model, "hard", cfg.target_update_period, 1.0)
        self.beta = cfg.per_beta(0.0)
        self.window = cfg.burn_in + cfg.seq_len + cfg.n_step

    def make_source(self, envs: Any, seed: int, device: torch.device) -> Any:
        """A :class:`SequenceReplaySource` over a :class:`SequenceReplayBuffer`."""
        cfg = self.cfg
        state = self.model.neck.state_to_batch(self.model.initial_state(1, "cpu"))
        per_env = max(cfg.buffer_size // envs.num_envs, self.window + 2)
        buffer = SequenceReplayBuffer.from_spec(
            envs.spec,
            envs.num_envs,
            per_env,
            prioritized=self.prioritized,
            alpha=self.per_alpha,
            state_shape=tuple(state.shape[2:]),
        )
        return SequenceReplaySource(
            envs, buffer, cfg.train_freq, seed, device, cfg.replay_in_checkpoint
        )

    # ------------------------------------------------------------------ acting
    @torch.inference_mode()
    def act(
        self, obs: torch.Tensor, state: Any, is_first: torch.Tensor, deterministic: bool = False
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], Any]:
        """Epsilon-greedy with the per-env Ape-X epsilons (greedy when ``deterministic``).

        Extras: ``state`` ``(N, 1, ...)``, the neck's state before this step (float32).
        """
        stored = self.model.neck.state_to_batch(state).float()
        with self.autocast():
            (out, state), _ = self.model(obs.to(self.device), state, is_first.to(self.device))
        action = out.q.argmax(-1)
        if not deterministic:
            n = action.shape[0]
            eps = ape_x_epsilons(n, self.cfg.epsilon_base, self.cfg.epsilon_alpha)
            explore = (
                torch.rand(action.shape, device=action.device) < eps.to(action.device)[:, None]
            )
            random = torch.randint(0, self.num_actions, action.shape, device=action.device)
            action = torch.where(explore, random, action)
        return action, {"state": stored}, state

    # ------------------------------------------------------------------ hooks
    def on_iteration_start(self, progress: float) -> None:
        """Learning rate and PER beta at this training fraction."""
        super().on_iteration_start(progress)
        self.beta = self.cfg.per_beta(progress)

    def minibatches(self, source: Any, batch: Batch) -> Iterator[Batch]:
        """``gradient_steps`` windows ``(B, burn_in + seq_len + n_step)`` once
        ``learning_starts`` steps and one whole window per env are stored."""
        cfg = self.cfg
        n, t = batch.shape
        self.env_steps_seen += n * t * dist.world_size()
        self.on_collected(n * t)
        buffer = self.buffer = source.buffer
        if len(buffer) < max(cfg.learning_starts, cfg.batch_size) or buffer.count < self.window:
            return
        for _ in range(cfg.gradient_steps):
            mb = buffer.sample(
                cfg.batch_size,
                source.rng,
                n_step=cfg.n_step,
                seq_len=cfg.burn_in + cfg.seq_len,
                beta=self.beta,
            )
            yield mb if self.device.type == "cpu" else mb.to(self.device, non_blocking=True)

    def unroll(self, mb: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Online (with gradient) and target (without) ``q (B, seq_len + n_step, A)`` after
        the burn-in: both nets start from the stored state and unroll the first ``burn_in``
        steps without gradient (Kapturowski et al. 2019, sec. 3)."""
        k = self.cfg.burn_in
        state = self.model.neck.state_from_batch(mb.extras["state"].to(mb.obs.device))
        obs, first = mb.obs, mb.is_first
        online_state = target_state = state
        with torch.no_grad(), self.autocast():
            if k > 0:
                (_, online_state), _ = self.model(obs[:, :k], state, first[:, :k])
                (_, target_state), _ = self.target(obs[:, :k], state, first[:, :k])
            (target_out, _), _ = self.target(obs[:, k:], target_state, first[:, k:])
        with self.autocast():
            (out, _), _ = self.model(obs[:, k:], online_state, first[:, k:])
        return out.q.float(), target_out.q.float()

    def compute_loss(self, mb: Batch) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """n-step double Q-learning with value rescaling on the ``seq_len`` learned steps."""
        cfg = self.cfg
        k, s = cfg.burn_in, cfg.seq_len
        q, target_q = self.unroll(mb)  # (B, s + n, A)
        part = slice(k, None)
        returns, discount, boot = nstep_targets(
            mb.reward[:, part],
            mb.terminated[:, part],
            mb.truncated[:, part],
            mb.valid[:, part],
            cfg.gamma,
            cfg.n_step,
        )
        returns, discount, boot = returns[:, :s], discount[:, :s], boot[:, :s]  # boot < s + n
        with torch.no_grad():
            # Double Q: the online net chooses at the bootstrap step, the target evaluates.
            next_action = q.detach().argmax(-1).gather(1, boot)
            next_q = target_q.gather(1, boot.unsqueeze(-1).expand(-1, -1, q.shape[-1]))
            next_q = next_q.gather(2, next_action.unsqueeze(-1)).squeeze(-1)
            if cfg.value_rescale:  # y = h(R + discount * h^-1(Q')) (Pohlen et al. 2018)
                eps = cfg.rescale_eps
                target = value_rescale(returns + discount * inverse_value_rescale(next_q, eps), eps)
            else:
                target = returns + discount * next_q
        action = mb.action[:, k : k + s].long()
        q_sa = q[:, :s].gather(2, action.unsqueeze(-1)).squeeze(-1)
        mask = mb.valid[:, k : k + s]
        td = target - q_sa
        per_step = torch.where(mask, 0.5 * td.square(), torch.zeros_like(td))
        per_seq = per_step.sum(1) / mask.sum(1).clamp(min=1)
        weight = mb.extras.get("weight")  # importance sampling (Schaul et al. 2016)
        if weight is not None:
            per_seq = weight[:, 0].to(per_seq.dtype) * per_seq
        self._priority = sequence_priority(td.detach().abs(), mask, cfg.priority_eta)
        info = {
            "stats/q": (q_sa.detach() * mask).sum() / mask.sum().clamp(min=1),
            "stats/td_abs": self._priority.mean(),
        }
        return {"loss_rl_q": per_seq.mean()}, info

    def after_update(self, mb: Batch, info: dict[str, torch.Tensor]) -> None:
        """New sequence priorities; target copy every ``target_update_period`` steps."""
        self.gradient_steps_done += 1
        if self.cfg.prioritized and self.buffer is not None:
            self.buffer.update_priorities(mb.extras["index"][:, 0], self._priority)
        self.target.update(self.gradient_steps_done)

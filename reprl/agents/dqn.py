"""DQN (Mnih et al. 2015) with Rainbow's switches (Hessel et al. 2018): double Q-learning
(van Hasselt et al. 2016), dueling heads (Wang et al. 2016, ``model.policy.dueling``),
n-step returns, prioritized replay (Schaul et al. 2016) and C51 distributional targets
(Bellemare et al. 2017, ``model.policy.num_atoms > 1``) and noisy nets (Fortunato et al.
2018, ``model.policy.noisy``).

With noisy nets the agent acts greedily on the noisy online network and ignores
``epsilon`` (Hessel et al. 2018 set epsilon to 0 with noisy nets): fresh noise is drawn for
every (non-deterministic) :meth:`DQN.act` call, i.e. once per env step, and independently for
the online and the target network before every gradient step (the target's noise is active
although it is kept in eval mode). Deterministic acting (evaluation) uses the mean weights.

The loop: :class:`reprl.data.replay_source.ReplaySource` collects ``train_freq`` steps per env
with epsilon-greedy actions into the replay buffer; :meth:`DQN.minibatches` then samples
``gradient_steps`` windows of ``1 + n_step`` steps (once ``learning_starts`` transitions are
stored); each gets one Adam step on the (IS-weighted) TD or cross-entropy loss.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from reprl.agents.distributional import categorical_projection
from reprl.agents.offpolicy import OffPolicyAgent, OffPolicyConfig
from reprl.data.nstep import window_targets
from reprl.errors import ConfigError
from reprl.optim.optimizers import Adam
from reprl.optim.schedules import Schedule
from reprl.optim.target import TargetNetwork
from reprl.registry import AGENTS
from reprl.types import Batch

TARGET_UNITS = ("env_steps", "gradient_steps")


@dataclass
class DQNConfig(OffPolicyConfig):
    """DQN / Rainbow hyperparameters (defaults: SB3's DQN where it has one)."""

    batch_size: int = 32
    """Transitions per gradient step."""
    train_freq: int = 4
    """Env steps per env collected between update phases."""
    lr: Schedule = field(default_factory=lambda: Schedule("constant", 1e-4))
    """Learning rate (a number or a schedule)."""
    adam_eps: float = 1e-8
    """Adam epsilon (PyTorch default as SB3; Rainbow uses 1.5e-4)."""
    target_update_period: int = 10_000
    """Update the target network every this many ``target_update_unit``."""
    target_update_unit: str = "env_steps"
    """env_steps (SB3's ``target_update_interval``, checked before each update phase) or
    gradient_steps (checked after every gradient step)."""
    tau: float = 1.0
    """Polyak coefficient of the target update (1: hard copy, as DQN)."""
    epsilon: Schedule = field(default_factory=lambda: Schedule("linear", 1.0, 0.05, end_frac=0.1))
    """Exploration rate of epsilon-greedy acting, over the training fraction (ignored with
    noisy nets, ``model.policy.noisy``: the agent acts greedily on the noisy network)."""
    double: bool = False
    """Double Q-learning: the online net picks the bootstrap action, the target evaluates it."""
    prioritized: bool = False
    """Proportional prioritized replay with importance-sampling weights."""
    per_alpha: float = 0.6
    """Priority exponent."""
    per_beta: Schedule = field(default_factory=lambda: Schedule("linear", 0.4, 1.0))
    """Importance-sampling exponent (annealed to 1 in Schaul et al. 2016)."""
    huber: bool = True
    """Huber (smooth L1, delta 1) TD loss instead of squared error (ignored by C51)."""
    max_grad_norm: float | None = 10.0
    """Global gradient-norm clipping (None: off; SB3: 10)."""

    def validate(self, path: str) -> None:
        """Reject inconsistent options at load time."""
        super().validate(path)
        if self.target_update_unit not in TARGET_UNITS:
            raise ConfigError(
                f"{path}.target_update_unit: unknown '{self.target_update_unit}'; "
                f"valid: {', '.join(TARGET_UNITS)}"
            )
        if self.target_update_period < 1:
            raise ConfigError(f"{path}.target_update_period: must be >= 1")
        if not 0.0 < self.tau <= 1.0:
            raise ConfigError(f"{path}.tau: must be in (0, 1], got {self.tau}")


@AGENTS.register("dqn", DQNConfig)
class DQN(OffPolicyAgent):
    """DQN on the shared loop: replay collection -> sampled windows -> TD / C51 updates."""

    def __init__(self, cfg: DQNConfig, spec: Any, model: Any, device: torch.device) -> None:
        if not spec.discrete:
            raise ConfigError(f"agent: dqn needs discrete actions; env {spec.env_id!r} is not")
        if not hasattr(model.policy, "num_atoms"):
            raise ConfigError("model.policy: dqn needs the 'q' policy (model/policy=q)")
        super().__init__(cfg, spec, model, device)
        self.prioritized, self.per_alpha = cfg.prioritized, cfg.per_alpha
        self.num_actions = spec.num_actions
        mode = "hard" if cfg.tau == 1.0 else "polyak"
        self.target = TargetNetwork(model, mode, cfg.target_update_period, cfg.tau)
        self.epsilon = cfg.epsilon(0.0)
        self.beta = cfg.per_beta(0.0)
        self.noisy = bool(getattr(model.policy, "noisy", False))
        if self.noisy:
            self.epsilon = 0.0
            # The target is kept in eval mode; its noise must still apply (Hessel et al. 2018).
            self.target.target.policy.set_noise(in_eval=True)

    def make_optimizer(self) -> Any:
        """Adam (PyTorch default eps unless set) over the model's trainable parameters."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        return Adam(params, lr=self.cfg.lr(0.0), eps=self.cfg.adam_eps)

    # ------------------------------------------------------------------ acting
    @torch.inference_mode()
    def act(
        self, obs: torch.Tensor, state: Any, is_first: torch.Tensor, deterministic: bool = False
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], Any]:
        """Epsilon-greedy on the online Q-values (greedy when ``deterministic``).

        Noisy nets: greedy on the online net with freshly drawn noise (epsilon ignored);
        ``deterministic`` uses the mean weights.
        """
        if self.noisy:
            policy = self.model.policy
            policy.set_noise(enabled=not deterministic)
            if not deterministic:
                policy.reset_noise()
        with self.autocast():
            (out, state), _ = self.model(obs.to(self.device), state, is_first.to(self.device))
        action = out.q.argmax(-1)
        if not deterministic and self.epsilon > 0:
            explore = torch.rand(action.shape, device=action.device) < self.epsilon
            if explore.any():
                random = torch.randint(0, self.num_actions, action.shape, device=action.device)
                action = torch.where(explore, random, action)
        return action, {}, state

    # ------------------------------------------------------------------ hooks
    def on_iteration_start(self, progress: float) -> None:
        """Learning rate, epsilon and PER beta at this training fraction."""
        super().on_iteration_start(progress)
        self.epsilon = 0.0 if self.noisy else self.cfg.epsilon(progress)
        self.beta = self.cfg.per_beta(progress)

    def on_collected(self, num_steps: int) -> None:
        """Env-step target updates: SB3 updates the target during collection, i.e. before
        the next update phase."""
        if self.cfg.target_update_unit == "env_steps":
            self.target.update(self.env_steps_seen)

    def compute_loss(self, mb: Batch) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """n-step (double) Q-learning or C51 loss on windows ``(B, 1 + n_step)``.

        The window's step 0 is learned from; :func:`window_targets` gives its return, discount
        and bootstrap index ``m <= n_step`` (always inside the window, which has ``1 + n_step``
        steps: after a truncation the reset step at ``m`` holds the final observation).
        """
        cfg = self.cfg
        batch_size = mb.reward.shape[0]
        rows = torch.arange(batch_size, device=mb.reward.device)
        returns, discount, boot = window_targets(
            mb.reward, mb.terminated, mb.truncated, mb.valid, cfg.gamma, cfg.n_step
        )
        if self.noisy:  # independent fresh noise for the online and the target network
            self.model.policy.set_noise(enabled=True)
            self.model.policy.reset_noise()
            self.target.target.policy.reset_noise()
        with self.autocast():
            (out, _), _ = self.model(mb.obs, None, mb.is_first)
        action = mb.action[:, 0].long()
        with torch.no_grad():
            (target_out, _), _ = self.target(mb.obs, None, mb.is_first)
            if cfg.double:  # online net chooses, target evaluates (van Hasselt et al. 2016)
                next_action = out.q.detach()[rows, boot].argmax(-1)
            else:
                next_action = target_out.q[rows, boot].argmax(-1)
        distributional = out.logits is not None
        if distributional:
            support = self.model.policy.support
            with torch.no_grad():
                next_probs = target_out.logits[rows, boot, next_action].softmax(-1)
                target_probs = categorical_projection(next_probs, returns, discount, support)
            log_probs = out.logits[rows, 0, action].log_softmax(-1)
            per_sample = -(target_probs * log_probs).sum(-1)  # cross-entropy (Bellemare, eq. 7)
            priority = per_sample.detach()
            q_sa = out.q[rows, 0, action]
        else:
            with torch.no_grad():
                target_q = returns + discount * target_out.q[rows, boot, next_action]
            q_sa = out.q[rows, 0, action]
            if cfg.huber:
                per_sample = F.smooth_l1_loss(q_sa, target_q, reduction="none")
            else:
                per_sample = (q_sa - target_q) ** 2
            priority = (target_q - q_sa).detach().abs()
        if "weight" in mb.extras:  # importance-sampling correction (Schaul et al. 2016)
            loss = (mb.extras["weight"][:, 0].to(per_sample.dtype) * per_sample).mean()
        else:
            loss = per_sample.mean()
        self._priority = priority
        info = {
            "stats/q": q_sa.detach().mean(),
            "stats/epsilon": torch.tensor(self.epsilon),
            "stats/td_abs": priority.mean(),
        }
        return {"loss_rl_q": loss}, info

    def after_update(self, mb: Batch, info: dict[str, torch.Tensor]) -> None:
        """New priorities of the sampled windows; target update (``target_update_unit``)."""
        self.gradient_steps_done += 1
        if self.cfg.prioritized and self.buffer is not None:
            self.buffer.update_priorities(mb.extras["index"][:, 0], self._priority)
        if self.cfg.target_update_unit == "gradient_steps":
            self.target.update(self.gradient_steps_done)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Model, optimizer, target network and counters."""
        return super().state_dict() | {"target": self.target.state_dict()}

    def load_state_dict(self, state: dict[str, Any], optimizer: bool = True) -> None:
        """Restore :meth:`state_dict` (weights-only init also copies them into the target)."""
        super().load_state_dict(state, optimizer)
        if optimizer and "target" in state:
            self.target.load_state_dict(state["target"])
        else:
            self.target.sync()

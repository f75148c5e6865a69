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

from reprl.agents import fused_td
from reprl.agents.distributional import categorical_projection
from reprl.agents.offpolicy import OffPolicyAgent, OffPolicyConfig
from reprl.data.nstep import window_targets
from reprl.errors import ConfigError
from reprl.models import kernels, native
from reprl.models.qpolicy import QOutput
from reprl.optim.optimizers import Adam
from reprl.optim.schedules import Schedule
from reprl.optim.target import TargetNetwork
from reprl.registry import AGENTS
from reprl.types import Batch

TARGET_UNITS = ("env_steps", "gradient_steps")
PHASE_TARGET_ROWS = 512
"""Rows per target forward of :meth:`DQN.prepare_phase`: a phase's 8192 rows (RL Zoo's
CartPole DQN) in one product write 8 MiB activations, past the caches (~55 GFLOP/s on a Zen 3
core, plus fresh pages); 512 rows at a time run at ~84 GFLOP/s."""


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
        # A stateless model (no recurrent neck) is run on the steps a loss needs only.
        self.stateless = model.initial_state(1, device) is None
        self._rows_cache: torch.Tensor | None = None
        # A plain ReLU MLP Q head learned on CPU in float32: the TD loss and its gradients in
        # plain ops, as one autograd node (fused_td.td_loss_node).
        layers = getattr(model.policy, "plain_layers", lambda: None)()
        plain = layers is not None and all(
            p.requires_grad and p.dtype == torch.float32 and p.device.type == "cpu"
            for p in (*layers[0], *layers[1])
        )
        self.td_layers = layers if plain and self.stateless and not self._autocast else None
        # Acting and targets on such a head: one C call where the kernels fit (native.MLP),
        # else its layers' products straight from kept views (kernels.chain: the policy's
        # numbers without its module calls).
        self.act_layers = self.target_layers = None
        self._target_params = None
        if self.td_layers is not None:
            self._target_params = self.target.target.policy.plain_layers()
            self.act_layers = kernels.layer_views(*self.td_layers)
            self.target_layers = kernels.layer_views(*self._target_params)
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
        model, obs, is_first = self.model, obs.to(self.device), is_first.to(self.device)
        with self.autocast():
            if model.compiled:  # the compiled forward (model.compile: true)
                (out, state), _ = model(obs, state, is_first)
                q = out.q
            else:  # only the Q-values, by the model's acting path: the same numbers, less work
                features, state = model.act_features(obs, state, is_first)
                if self.act_layers is not None:  # a plain ReLU MLP head (td_layers)
                    n, t = features.shape[:2]
                    q = self._lean_q(features.reshape(n * t, -1), False).view(n, t, -1)
                else:
                    q = model.policy.q_values(features)
        action = q.argmax(-1)
        if not deterministic and self.epsilon > 0:
            u = torch.rand(action.shape, device=action.device)
            # On CPU the test runs in NumPy (~1 us against ~5 us per tiny torch op): the same
            # float32 comparison (NumPy casts the Python float to float32 as torch does) and
            # the same draws from torch's generator.
            explore = u.numpy() < self.epsilon if u.device.type == "cpu" else u < self.epsilon
            if explore.any():
                random = torch.randint(0, self.num_actions, action.shape, device=action.device)
                action = torch.where(torch.as_tensor(explore, device=u.device), random, action)
        return action, {}, state

    # ------------------------------------------------------------------ hooks
    def on_iteration_start(self, progress: float) -> None:
        """Learning rate, epsilon and PER beta at this training fraction."""
        super().on_iteration_start(progress)
        self.epsilon = 0.0 if self.noisy else self.cfg.epsilon(progress)
        self.beta = self.cfg.per_beta(progress)

    def iteration_metrics(self) -> dict[str, float]:
        """The exploration rate in force this iteration (a constant: logged once, not per
        gradient step) and the base class's coefficients."""
        return {"stats/epsilon": float(self.epsilon)} | super().iteration_metrics()

    def on_collected(self, num_steps: int) -> None:
        """Env-step target updates: SB3 updates the target during collection, i.e. before
        the next update phase."""
        if self.cfg.target_update_unit == "env_steps":
            self.target.update(self.env_steps_seen)

    def phase_target(self) -> bool:
        """True when the target values of a whole update phase can be computed before it:
        the target moves only between phases (``target_update_unit: env_steps``), max over the
        target's own Q-values (no double Q, no C51), no noise drawn per step, and a stateless
        model (uniform replay only: :meth:`OffPolicyAgent.minibatches`)."""
        cfg = self.cfg
        return (
            cfg.target_update_unit == "env_steps"
            and not cfg.double
            and not self.noisy
            and self.stateless
            and getattr(self.model.policy, "num_atoms", 1) == 1
        )

    def _rows(self, n: int, device: torch.device) -> torch.Tensor:
        """``arange(n)`` on ``device``, made once per size (row indices of every step)."""
        rows = self._rows_cache
        if rows is None or rows.shape[0] != n or rows.device != device:
            rows = self._rows_cache = torch.arange(n, device=device)
        return rows

    @torch.no_grad()
    def prepare_phase(self, windows: Batch) -> Batch:
        """With :meth:`phase_target`: ``extras["target_q"]`` ``(B, 1)``, the n-step targets
        ``R + discount * max_a Q'(s', a)`` of all windows in one target forward (the same
        values as per minibatch: the target is frozen during the phase). On RL Zoo's CartPole
        DQN this takes the target's forward out of each of the phase's 128 steps."""
        if self.phase_target():
            rows, size = windows.reward.shape[0], PHASE_TARGET_ROWS
            chunks = [windows.index(slice(s, s + size)) for s in range(0, rows, size)]
            windows.extras["target_q"] = torch.cat([self.td_target(c) for c in chunks])[:, None]
        return windows

    def window_outputs(
        self, mb: Batch, rows: torch.Tensor, boot: torch.Tensor
    ) -> tuple[QOutput, QOutput | None, QOutput]:
        """The online outputs at step 0 of windows ``(B, 1 + n_step)`` and, for double
        Q-learning, at their bootstrap steps ``boot`` ``(B,)``; the target's (no gradient) at
        the bootstrap steps. Each output has no time axis: ``q (B, A)``, ``logits (B, A, K)``.

        A stateless model runs on those steps only, not on the whole window: half the forward
        and backward work for one-step windows (online on ``B`` observations and the target
        on ``B``, as SB3's DQN), less for n-step ones. A recurrent neck runs over the window
        (later steps' features depend on the earlier ones).
        """
        if not self.stateless:
            with self.autocast():
                (out, _), _ = self.model(mb.obs, None, mb.is_first)
            (target_out, _), _ = self.target(mb.obs, None, mb.is_first)
            online_boot = _at(out, rows, boot) if self.cfg.double else None
            return _at(out, None, 0), online_boot, _at(target_out, rows, boot)
        # One-step windows bootstrap from step 1 (window_targets): a view, no gather.
        one_step = self.cfg.n_step == 1
        obs_boot = mb.obs[:, 1:2] if one_step else mb.obs[rows, boot].unsqueeze(1)
        obs = torch.cat([mb.obs[:, :1], obs_boot], dim=1) if self.cfg.double else mb.obs[:, :1]
        with self.autocast():
            (out, _), _ = self.model(obs)
        (target_out, _), _ = self.target(obs_boot)
        online_boot = _at(out, None, 1) if self.cfg.double else None
        return _at(out, None, 0), online_boot, _at(target_out, None, 0)

    def compute_loss(self, mb: Batch) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """n-step (double) Q-learning or C51 loss on windows ``(B, 1 + n_step)``.

        The window's step 0 is learned from; :func:`window_targets` gives its return, discount
        and bootstrap index ``m <= n_step`` (always inside the window, which has ``1 + n_step``
        steps: after a truncation the reset step at ``m`` holds the final observation).
        """
        if self.td_layers is not None and fused_td.FUSED_TD:
            return self.fused_loss(mb)
        cfg = self.cfg
        rows = self._rows(mb.reward.shape[0], mb.reward.device)
        precomputed = mb.extras.get("target_q")  # the phase's targets (prepare_phase)
        if precomputed is not None:
            with self.autocast():
                (online, _), _ = self.model(mb.obs[:, :1])
            out, out_boot, target_out = _at(online, None, 0), None, None
        else:
            returns, discount, boot = window_targets(
                mb.reward, mb.terminated, mb.truncated, mb.valid, cfg.gamma, cfg.n_step
            )
            if self.noisy:  # independent fresh noise for the online and the target network
                self.model.policy.set_noise(enabled=True)
                self.model.policy.reset_noise()
                self.target.target.policy.reset_noise()
            # The networks' outputs at step 0 (online) and at the bootstrap step (target;
            # online too for double Q-learning), each (B, A) / logits (B, A, K).
            out, out_boot, target_out = self.window_outputs(mb, rows, boot)
        action = mb.action[:, 0].long()
        weight = mb.extras.get("weight")  # importance-sampling correction (Schaul et al. 2016)
        distributional = out.logits is not None
        if distributional or out_boot is not None:
            with torch.no_grad():
                # Double: the online net chooses, the target evaluates (van Hasselt et al. 2016).
                chooser = out_boot if out_boot is not None else target_out
                next_action = chooser.q.detach().argmax(-1)
        if distributional:
            support = self.model.policy.support
            with torch.no_grad():
                next_probs = target_out.logits[rows, next_action].softmax(-1)
                target_probs = categorical_projection(next_probs, returns, discount, support)
            log_probs = out.logits[rows, action].log_softmax(-1)
            per_sample = -(target_probs * log_probs).sum(-1)  # cross-entropy (Bellemare, eq. 7)
            priority = per_sample.detach()
            q_sa = out.q[rows, action]
            if weight is not None:
                per_sample = weight[:, 0].to(per_sample.dtype) * per_sample
            loss = per_sample.mean()
        else:
            with torch.no_grad():
                if precomputed is not None:
                    target_q = precomputed[:, 0]
                elif out_boot is None:  # max_a Q'(s', a) in one op (not argmax, then gather)
                    target_q = returns + discount * target_out.q.max(-1).values
                else:
                    target_q = returns + discount * target_out.q[rows, next_action]
            q_sa = out.q[rows, action]
            td_loss = F.smooth_l1_loss if cfg.huber else F.mse_loss
            if weight is None:  # one fused loss-and-mean op
                loss = td_loss(q_sa, target_q)
            else:
                per_sample = td_loss(q_sa, target_q, reduction="none")
                loss = (weight[:, 0].to(per_sample.dtype) * per_sample).mean()
            priority = (target_q - q_sa).detach().abs()
        self._priority = priority
        info = {"stats/q": q_sa.detach().mean(), "stats/td_abs": priority.mean()}
        return {"loss_rl_q": loss}, info

    @torch.no_grad()
    def td_target(self, mb: Batch) -> torch.Tensor:
        """The n-step (double) Q-learning targets ``(B,)`` of windows ``(B, 1 + n_step)`` of a
        stateless model: the phase's precomputed ones (:meth:`prepare_phase`) or ``R +
        discount * Q'(s_m, argmax_a Q(s_m, a))`` (double), ``max_a Q'(s_m, a)`` otherwise."""
        precomputed = mb.extras.get("target_q")
        if precomputed is not None:
            return precomputed[:, 0]
        cfg = self.cfg
        returns, discount, boot = window_targets(
            mb.reward, mb.terminated, mb.truncated, mb.valid, cfg.gamma, cfg.n_step
        )
        rows = self._rows(mb.reward.shape[0], mb.reward.device)
        obs_boot = mb.obs[:, 1:2] if cfg.n_step == 1 else mb.obs[rows, boot].unsqueeze(1)
        if self.target_layers is not None:  # a plain ReLU MLP head: from its kept views
            features, _ = self.target.target.act_features(obs_boot)
            target_q = self._lean_q(features.reshape(rows.shape[0], -1), True)
        else:
            (target_out, _), _ = self.target(obs_boot)
            target_q = target_out.q[:, 0]
        if not cfg.double:
            return returns + discount * target_q.max(-1).values
        (online, _), _ = self.model(obs_boot)
        return returns + discount * target_q[rows, online.q[:, 0].argmax(-1)]

    def _lean_q(self, x: torch.Tensor, target: bool) -> torch.Tensor:
        """Q-values ``(B, A)`` of the online (or target) plain ReLU MLP head on features
        ``x (B, D)``: one C call where it fits (:class:`reprl.models.native.MLP`, float32 to
        rounding), else from the kept layer views (the modules' numbers bit for bit)."""
        params = self._target_params if target else self.td_layers
        assert params is not None
        mlp = native.MLP.of(*params, x)
        if mlp is not None:
            return mlp.forward(x)[0]
        return kernels.chain(x, self.target_layers if target else self.act_layers)

    def fused_loss(self, mb: Batch) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """:meth:`compute_loss` for a plain ReLU MLP Q head (:attr:`td_layers`): the same loss
        and gradients, computed by hand as one autograd node
        (:func:`reprl.agents.fused_td.td_loss_node`); a backbone or neck with parameters
        gets its gradient through the features as usual."""
        assert self.td_layers is not None
        target_q = self.td_target(mb)
        features, _ = self.model.act_features(mb.obs[:, :1])  # features without the infos
        weight = mb.extras.get("weight")  # importance-sampling correction (Schaul et al. 2016)
        weights, biases = self.td_layers
        loss, q_sa = fused_td.td_loss_node(
            features.reshape(features.shape[0], -1),
            weights,
            biases,
            mb.action[:, 0],
            target_q,
            None if weight is None else weight[:, 0],
            self.cfg.huber,
        )
        priority = (target_q - q_sa).abs()
        self._priority = priority
        info = {"stats/q": q_sa.mean(), "stats/td_abs": priority.mean()}
        return {"loss_rl_q": loss}, info

    def after_update(self, mb: Batch, info: dict[str, torch.Tensor]) -> None:
        """New priorities of the sampled windows; target update (``target_update_unit``)."""
        self.gradient_steps_done += 1
        if self.cfg.prioritized and self.buffer is not None:
            self.buffer.update_priorities(mb.extras["index"][:, 0], self._priority)
        if self.cfg.target_update_unit == "gradient_steps":
            self.target.update(self.gradient_steps_done)


def _at(out: QOutput, rows: torch.Tensor | None, step: torch.Tensor | int) -> QOutput:
    """``out`` (``(B, T, ...)`` fields) at one step per window: ``step`` for every window
    (an int; ``rows`` None) or ``step[i]`` for window ``rows[i]``."""
    index: tuple[Any, Any] = (slice(None), step) if rows is None else (rows, step)
    logits = None if out.logits is None else out.logits[index]
    return QOutput(q=out.q[index], logits=logits)

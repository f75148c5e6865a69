"""The agent interface: acting plus the four hooks the one loop calls.

``prepare(batch)`` (no grad: returns, targets), ``compute_loss(mb)`` ->
``({"loss_<group>_<name>": tensor}, {"stats/...": tensor})``, ``update(losses)`` (sum -> one
backward -> all-reduce under torchrun -> clip -> step) and ``after_update(mb, info)``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from reprl import dist
from reprl.agents import given_grads
from reprl.errors import ConfigError
from reprl.models import AgentModel
from reprl.optim.gradproj import projected_backward
from reprl.optim.optimizers import Adam, clip_grad_norm
from reprl.runs.checkpoint import to_numpy as ckpt_numpy
from reprl.types import Batch, EnvSpec


class Agent:
    """Base class with the shared update step; subclasses implement the algorithm."""

    #: Extras this agent needs from ``prepare`` before ``compute_loss`` (checked in tests).
    requires: tuple[str, ...] = ()

    def __init__(self, cfg: Any, spec: EnvSpec, model: AgentModel, device: torch.device) -> None:
        self.cfg, self.spec, self.model, self.device = cfg, spec, model, device
        self.optimizer = self.make_optimizer()
        self.auxiliaries: dict[str, Any] = {}
        """Auxiliary components (``reprl.auxiliaries``) by name; see :meth:`attach_auxiliaries`."""
        self.aux_optimizer: Adam | None = None
        self.stop_updates = False  # set by after_update to end this iteration's updates
        autocast = getattr(cfg, "autocast", "none")
        self._autocast = autocast == "bf16"

    # ------------------------------------------------------------------ construction
    def make_optimizer(self) -> Any:
        """Adam over the model's trainable parameters (torch's fused kernel)."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        return Adam(params, lr=self.cfg.lr(0.0), eps=self.cfg.adam_eps)

    def attach_auxiliaries(self, auxiliaries: dict[str, Any]) -> None:
        """Add auxiliary components: their losses join this agent's summed loss (one
        backward) and their parameters get an Adam of the agent's learning rate and eps."""
        if auxiliaries and not self.supports_auxiliaries:
            raise ConfigError(
                f"aux.{next(iter(auxiliaries))}: agent {type(self).__name__.lower()} does not "
                "train auxiliary losses (use ppo)"
            )
        unsupported = [n for n, a in auxiliaries.items() if a.intrinsic() is not None]
        if unsupported and not self.supports_intrinsic:
            raise ConfigError(
                f"aux.{unsupported[0]}: gives an intrinsic reward, which agent "
                f"{type(self).__name__.lower()} does not learn from (use ppo)"
            )
        value_out = getattr(self.model.policy, "value_out", None)
        if unsupported and (value_out is None or value_out.out_features < 2):
            raise ConfigError(
                f"aux.{unsupported[0]}: an intrinsic reward needs a second value head: set "
                "model.policy.num_values=2"
            )
        self.auxiliaries = dict(auxiliaries)
        params = [p for a in auxiliaries.values() for p in a.parameters() if p.requires_grad]
        if params:
            eps = getattr(self.cfg, "adam_eps", 1e-8)
            self.aux_optimizer = Adam(params, lr=self.cfg.lr(0.0), eps=eps)

    supports_auxiliaries: bool = False
    """Whether ``compute_loss`` adds the auxiliaries' losses (:meth:`aux_losses`)."""
    supports_intrinsic: bool = False
    """Whether the agent learns from auxiliaries' intrinsic rewards (a second value head)."""

    def aux_losses(
        self, mb: Batch, embedding: torch.Tensor | None = None
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Every auxiliary's weighted losses and statistics on a minibatch (``embedding``: the
        backbone's output for ``mb.obs``, with its graph, when the agent computed it)."""
        losses: dict[str, torch.Tensor] = {}
        info: dict[str, torch.Tensor] = {}
        for aux in self.auxiliaries.values():
            aux_loss, aux_info = aux.compute_loss(mb, self, embedding)
            losses |= aux_loss
            info |= aux_info
        return losses, info

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """bfloat16 autocast when ``autocast: bf16`` (CPUs with AVX-512 BF16, and GPUs)."""
        if self._autocast:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def make_source(self, envs: Any, seed: int, device: torch.device) -> Any:
        """The Source this agent learns from (on-policy default: rollouts of ``num_steps``)."""
        from reprl.data.rollout import RolloutSource

        return RolloutSource(envs, self.cfg.num_steps, seed, device)

    # ------------------------------------------------------------------ acting
    def initial_state(self, batch_size: int) -> Any:
        """Initial recurrent state of the model's neck (None when feed-forward)."""
        return self.model.initial_state(batch_size, self.device)

    @torch.inference_mode()
    def act(
        self, obs: torch.Tensor, state: Any, is_first: torch.Tensor, deterministic: bool = False
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], Any]:
        """Choose actions for ``obs`` ``(N, 1, ...)``: ``(action, extras to store, new state)``."""
        with self.autocast():
            (out, state), _ = self.model(
                obs.to(self.device, non_blocking=True), state, is_first.to(self.device)
            )
        action = out.dist.mode() if deterministic else out.dist.sample()
        return action, self.act_extras(out, action), state

    def act_extras(self, out: Any, action: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-step quantities to store in the Batch (e.g. value, log_prob)."""
        return {}

    # ------------------------------------------------------------------ the four hooks
    def on_iteration_start(self, progress: float) -> None:
        """Set scheduled hyperparameters for training fraction ``progress`` in [0, 1]."""
        self.stop_updates = False
        for group in self.optimizer.param_groups:
            group["lr"] = self.cfg.lr(progress)
        self.set_aux_lr(progress)

    def set_aux_lr(self, progress: float) -> None:
        """The auxiliaries' Adam follows the agent's learning-rate schedule."""
        if self.aux_optimizer is not None:
            self.aux_optimizer.param_groups[0]["lr"] = self.cfg.lr(progress)

    def callbacks(self, envs: Any, seed: int) -> list[Any]:
        """Loop callbacks of this agent (:class:`reprl.loop.Callback`), run before logging so
        that the metrics they add are logged (AlphaZero's arena). Default: none."""
        return []

    def iteration_metrics(self) -> dict[str, float]:
        """Logged once per iteration: the loss coefficients in force (``coef/<symbol>``)."""
        coefs: dict[str, float] = {}
        for aux in self.auxiliaries.values():
            coefs |= aux.coefficients()
        return {f"coef/{k}": float(v) for k, v in coefs.items()}

    def prepare(self, batch: Batch) -> Batch:
        """No-grad preparation of targets (returns, advantages, ...)."""
        return batch

    def minibatches(self, source: Any, batch: Batch) -> Iterator[Batch]:
        """The minibatches to update on (on-policy default: the whole batch once)."""
        yield batch

    def compute_loss(self, mb: Batch) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """``({"loss_<group>_<name>": scalar}, {"stats/<name>": scalar})``."""
        raise NotImplementedError

    def update(self, losses: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Sum the losses, one backward, average gradients across ranks, clip, step.

        With ``grad_projection`` (an agent option) and auxiliary losses, the RL losses
        (``loss_rl_*``) and the others get separate gradients on the backbone, and the
        auxiliary one is projected off the RL one where they conflict
        (:func:`reprl.optim.gradproj.projected_backward`; it averages across ranks first).
        """
        self.optimizer.zero_grad(set_to_none=True)
        if self.aux_optimizer is not None:
            self.aux_optimizer.zero_grad(set_to_none=True)
        params = optimizer_params(self.optimizer)
        if self.aux_optimizer is not None:
            params = params + self.aux_optimizer.params
        info: dict[str, torch.Tensor] = {}
        rl = [v for k, v in losses.items() if k.startswith("loss_rl_")]
        if getattr(self.cfg, "grad_projection", False) and 0 < len(rl) < len(losses):
            aux = [v for k, v in losses.items() if not k.startswith("loss_rl_")]
            shared = [p for p in self.model.backbone.parameters() if p.requires_grad]
            info |= projected_backward(
                torch.stack(rl).sum(), torch.stack(aux).sum(), params, shared
            )
        else:
            values = list(losses.values())
            # Losses whose gradients were computed by hand (DQN's TD step, SAC's step):
            # written into .grad directly; otherwise one backward (one loss: its own, without
            # a stack-and-sum node pair).
            if not given_grads.assign(values):
                (values[0] if len(values) == 1 else torch.stack(values).sum()).backward()
            if dist.is_distributed():
                dist.all_reduce_grads(params)
        max_norm = getattr(self.cfg, "max_grad_norm", None)
        if max_norm:
            info["stats/grad_norm"] = clip_grad_norm(params, max_norm)
        self.optimizer.step()
        if self.aux_optimizer is not None:
            self.aux_optimizer.step()
        for aux in self.auxiliaries.values():
            aux.after_update()
        return info

    def after_update(self, mb: Batch, info: dict[str, torch.Tensor]) -> None:
        """After each update: target syncs, priorities, early stopping (default: nothing)."""

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Model and optimizer state (schedules are data: they need only the step), and the
        auxiliaries' weights, optimizer and statistics when any are attached."""
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}
        if self.auxiliaries:
            state["aux"] = {
                name: {"weights": aux.state_dict(), "extra": aux.extra_state()}
                for name, aux in self.auxiliaries.items()
            }
            if self.aux_optimizer is not None:
                state["aux_optimizer"] = self.aux_optimizer.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any], optimizer: bool = True) -> None:
        """Restore :meth:`state_dict`; ``optimizer=False`` loads the weights only."""
        self.model.load_state_dict(state["model"])
        if optimizer and "optimizer" in state:
            self.optimizer.load_state_dict(state["optimizer"])
        saved_aux = state.get("aux", {}) if optimizer else {}
        for name, aux in self.auxiliaries.items():
            if name in saved_aux:
                aux.load_state_dict(saved_aux[name]["weights"])
                aux.load_extra_state(ckpt_numpy(saved_aux[name]["extra"]))
        if self.aux_optimizer is not None and "aux_optimizer" in state and saved_aux:
            self.aux_optimizer.load_state_dict(state["aux_optimizer"])


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over entries where ``mask`` is true (invalid reset steps excluded)."""
    return (x * mean_weights(mask)).sum()


def mean_weights(mask: torch.Tensor) -> torch.Tensor:
    """Weights ``mask / mask.sum()``: ``(x * w).sum()`` is the masked mean of ``x``. Computed
    once per minibatch, it makes each masked mean two kernels."""
    m = mask.to(torch.float32)
    return m / m.sum().clamp(min=1.0)


def optimizer_params(optimizer: Any) -> list[torch.Tensor]:
    """The parameters an optimizer updates: reprl's optimizers list them as ``params``; any
    ``torch.optim`` optimizer (e.g. from ``make_train(make_optimizer=...)``) by its groups."""
    params = getattr(optimizer, "params", None)
    if params is not None:  # every update calls this: no copy
        return params
    return [p for group in optimizer.param_groups for p in group["params"]]

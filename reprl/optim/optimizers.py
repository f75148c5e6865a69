"""Lean optimizers on PyTorch's own functional kernels (``torch.optim.adam.adam``, ...).

Why not ``torch.optim.Adam``: every ``torch.optim.Optimizer`` method is wrapped in
``torch._disable_dynamo``, whose first call imports ``torch._dynamo`` (~1.2 s on this
2-core machine, a large share of a whole CartPole run), and each ``step`` adds profiler and
hook bookkeeping around the kernel. These classes call the same fused/foreach kernels
directly, and their ``state_dict`` has torch's layout (``{"state": {i: {...}},
"param_groups": [...]}``), so it loads into ``torch.optim.Adam``/``RMSprop`` and back.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch.optim.adam import adam as adam_kernel
from torch.optim.rmsprop import rmsprop as rmsprop_kernel

from reprl.errors import ConfigError


class FunctionalOptimizer:
    """Base: one param group, torch-compatible ``param_groups`` and ``state_dict``."""

    state_keys: tuple[str, ...] = ()

    def __init__(self, params: Iterable[torch.Tensor], **defaults: Any) -> None:
        self.params = [p for p in params]
        if not self.params:
            raise ValueError("optimizer got an empty parameter list")
        self.param_groups = [{"params": self.params, **defaults}]
        self.step_count = [torch.zeros((), dtype=torch.float32) for _ in self.params]
        self.buffers = {
            k: [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
            for k in self.state_keys
        }
        devices = {p.device.type for p in self.params}
        dtypes = {p.dtype for p in self.params}
        # Fused kernels exist for CPU and CUDA float tensors.
        self.fused = devices <= {"cpu", "cuda"} and dtypes <= {
            torch.float32,
            torch.float16,
            torch.bfloat16,
            torch.float64,
        }
        # One device and dtype: the fused kernel takes the lists as they are (no grouping).
        self.single_group = self.fused and len(devices) == 1 and len(dtypes) == 1

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop gradients (``set_to_none`` is always true: the cheapest)."""
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """One update of every parameter that has a gradient."""
        idx = [i for i, p in enumerate(self.params) if p.grad is not None]
        if idx:
            self._kernel(
                self.param_groups[0],
                [self.params[i] for i in idx],
                [self.params[i].grad for i in idx],  # type: ignore[misc]
                {k: [v[i] for i in idx] for k, v in self.buffers.items()},
                [self.step_count[i] for i in idx],
            )

    def _kernel(
        self,
        group: dict[str, Any],
        params: list[torch.Tensor],
        grads: list[torch.Tensor],
        buffers: dict[str, list[torch.Tensor]],
        steps: list[torch.Tensor],
    ) -> None:
        """Apply torch's functional update to the parameters that have gradients."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """torch.optim-compatible state dict."""
        state = {
            i: {
                "step": self.step_count[i].clone(),
                **{k: self.buffers[k][i] for k in self.state_keys},
            }
            for i in range(len(self.params))
        }
        group = {k: v for k, v in self.param_groups[0].items() if k != "params"}
        group["params"] = list(range(len(self.params)))
        return {"state": state, "param_groups": [group]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state dict of this class or of the matching ``torch.optim`` optimizer."""
        (group,) = state_dict["param_groups"]
        if len(group["params"]) != len(self.params):
            raise ValueError("optimizer state has a different number of parameters")
        for k, v in group.items():
            if k != "params":
                self.param_groups[0][k] = v
        for i, p in enumerate(self.params):
            s = state_dict["state"].get(i)
            if s is None:
                continue
            self.step_count[i] = torch.as_tensor(s["step"], dtype=torch.float32).clone()
            for k in self.state_keys:
                self.buffers[k][i] = s[k].to(p.device, p.dtype).clone()


class Adam(FunctionalOptimizer):
    """Adam (Kingma & Ba 2015) with torch's fused kernel."""

    state_keys = ("exp_avg", "exp_avg_sq")

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(
            params,
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=False,
            maximize=False,
        )

    def _kernel(
        self,
        group: dict[str, Any],
        params: list[torch.Tensor],
        grads: list[torch.Tensor],
        buffers: dict[str, list[torch.Tensor]],
        steps: list[torch.Tensor],
    ) -> None:
        if self.single_group:  # what torch's _fused_adam does for one group, without the
            # grouping and dispatch around it (~0.1 ms per step on a small MLP here)
            torch._foreach_add_(steps, 1)
            torch._fused_adam_(
                params,
                grads,
                buffers["exp_avg"],
                buffers["exp_avg_sq"],
                [],
                steps,
                amsgrad=False,
                lr=group["lr"],
                beta1=group["betas"][0],
                beta2=group["betas"][1],
                weight_decay=group["weight_decay"],
                eps=group["eps"],
                maximize=False,
                grad_scale=None,
                found_inf=None,
            )
            return
        adam_kernel(
            params,
            grads,
            buffers["exp_avg"],
            buffers["exp_avg_sq"],
            [],
            steps,
            foreach=None if self.fused else True,
            fused=self.fused or None,
            capturable=False,
            differentiable=False,
            grad_scale=None,
            found_inf=None,
            has_complex=False,
            amsgrad=False,
            beta1=group["betas"][0],
            beta2=group["betas"][1],
            lr=group["lr"],
            weight_decay=group["weight_decay"],
            eps=group["eps"],
            maximize=False,
        )


class RMSprop(FunctionalOptimizer):
    """RMSprop as in torch (and A2C's paper settings: alpha 0.99, eps 1e-5)."""

    state_keys = ("square_avg",)

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
    ) -> None:
        super().__init__(
            params, lr=lr, alpha=alpha, eps=eps, weight_decay=0.0, momentum=0.0, centered=False
        )

    def _kernel(
        self,
        group: dict[str, Any],
        params: list[torch.Tensor],
        grads: list[torch.Tensor],
        buffers: dict[str, list[torch.Tensor]],
        steps: list[torch.Tensor],
    ) -> None:
        rmsprop_kernel(
            params,
            grads,
            buffers["square_avg"],
            [],
            [],
            steps,
            foreach=True,
            maximize=False,
            differentiable=False,
            capturable=False,
            has_complex=False,
            lr=group["lr"],
            alpha=group["alpha"],
            eps=group["eps"],
            weight_decay=0.0,
            momentum=0.0,
            centered=False,
        )


class OptimizerSet:
    """Several optimizers used as one, e.g. SAC's actor, critic and entropy coefficient with
    their own learning rates: one ``zero_grad``/``step`` for all, ``params`` concatenated (for
    gradient clipping and all-reduce), state dicts keyed by part name.

    Agents compute one summed loss whose parts touch disjoint parameters, so one backward and
    one :meth:`step` update every part exactly as separate optimizers would.
    """

    def __init__(self, **parts: FunctionalOptimizer) -> None:
        if not parts:
            raise ValueError("OptimizerSet needs at least one optimizer")
        self.parts = parts
        self.params = [p for opt in parts.values() for p in opt.params]

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        """Every part's param group, in part order."""
        return [g for opt in self.parts.values() for g in opt.param_groups]

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop every part's gradients."""
        for opt in self.parts.values():
            opt.zero_grad(set_to_none)

    @torch.no_grad()
    def step(self) -> None:
        """Step every part (parameters without a gradient are left alone).

        Parts that are all single-group :class:`Adam` s with equal hyperparameters (SAC's
        critic, actor and entropy coefficient at one learning rate) take one fused kernel
        over all their parameters: the update is elementwise with a step count per
        parameter, so the result is bitwise that of one kernel per part, with two
        kernel launches and their Python less per step."""
        merged = self._merged_adam()
        if merged is None:
            for opt in self.parts.values():
                opt.step()
            return
        params: list[torch.Tensor] = []
        grads: list[torch.Tensor] = []
        buffers: dict[str, list[torch.Tensor]] = {"exp_avg": [], "exp_avg_sq": []}
        steps: list[torch.Tensor] = []
        for opt in self.parts.values():
            for i, p in enumerate(opt.params):
                if p.grad is not None:
                    params.append(p)
                    grads.append(p.grad)
                    buffers["exp_avg"].append(opt.buffers["exp_avg"][i])
                    buffers["exp_avg_sq"].append(opt.buffers["exp_avg_sq"][i])
                    steps.append(opt.step_count[i])
        if params:
            merged._kernel(merged.param_groups[0], params, grads, buffers, steps)

    def _merged_adam(self) -> Adam | None:
        """The first part, when every part is a single-group :class:`Adam` on one device and
        dtype with the same hyperparameters (their kernel then serves all); else None."""
        opts = list(self.parts.values())
        first = opts[0]
        if not all(type(o) is Adam and o.single_group for o in opts):
            return None
        if len({(p.device, p.dtype) for o in opts for p in o.params[:1]}) != 1:
            return None
        keys = ("lr", "betas", "eps", "weight_decay")
        group = first.param_groups[0]
        if any(o.param_groups[0][k] != group[k] for o in opts[1:] for k in keys):
            return None
        return first  # type: ignore[return-value]

    def state_dict(self) -> dict[str, Any]:
        """``{part name: state dict}``."""
        return {name: opt.state_dict() for name, opt in self.parts.items()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (the same parts)."""
        if set(state_dict) != set(self.parts):
            raise ValueError(
                f"optimizer state has parts {sorted(state_dict)}, expected {sorted(self.parts)}"
            )
        for name, opt in self.parts.items():
            opt.load_state_dict(state_dict[name])


UNCLIPPED_BELOW = 0.999
""":func:`clip_grad_norm` skips the multiply by 1 below this fraction of ``max_norm``."""


@torch.no_grad()
def clip_grad_norm(params: list[torch.Tensor], max_norm: float) -> torch.Tensor:
    """``torch.nn.utils.clip_grad_norm_`` (L2, ``foreach``) in four kernels, without its
    grouping by device and dtype (~0.1 ms per step on a small MLP here): scales the gradients
    by ``min(1, max_norm / (norm + 1e-6))`` and returns the total norm before clipping.
    Parameters without a gradient are skipped; all gradients on one device.

    On CPU a norm clearly below ``max_norm`` (under ``UNCLIPPED_BELOW`` of it, where the
    factor rounds to exactly 1 in any float) leaves the gradients as they are instead of
    multiplying them by 1: the same numbers, ~35 us less per step (DQN CartPole, Zen 3). A
    NaN norm, or any on an accelerator (no host sync), takes the multiply."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    if total.device.type == "cpu" and total.item() < UNCLIPPED_BELOW * max_norm:
        return total
    torch._foreach_mul_(grads, torch.clamp(max_norm / (total + 1e-6), max=1.0))
    return total


def check_max_grad_norm(value: float | None, path: str) -> None:
    """Reject a ``max_grad_norm`` that is not positive at load time (null: no clipping). A
    negative bound would flip the gradients' sign in :func:`clip_grad_norm`, and 0 would
    silently turn clipping off."""
    if value is not None and not value > 0:
        raise ConfigError(f"{path}.max_grad_norm: must be > 0 (null: no clipping), got {value}")

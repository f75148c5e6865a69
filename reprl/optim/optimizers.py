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

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop gradients (``set_to_none`` is always true: the cheapest)."""
        for p in self.params:
            p.grad = None

    def _grads(self) -> tuple[list[torch.Tensor], list[int]]:
        idx = [i for i, p in enumerate(self.params) if p.grad is not None]
        return [self.params[i].grad for i in idx], idx  # type: ignore[misc]

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

    @torch.no_grad()
    def step(self) -> None:
        """One Adam update of every parameter that has a gradient."""
        g = self.param_groups[0]
        grads, idx = self._grads()
        if not grads:
            return
        adam_kernel(
            [self.params[i] for i in idx],
            grads,
            [self.buffers["exp_avg"][i] for i in idx],
            [self.buffers["exp_avg_sq"][i] for i in idx],
            [],
            [self.step_count[i] for i in idx],
            foreach=None if self.fused else True,
            fused=self.fused or None,
            capturable=False,
            differentiable=False,
            grad_scale=None,
            found_inf=None,
            has_complex=False,
            amsgrad=False,
            beta1=g["betas"][0],
            beta2=g["betas"][1],
            lr=g["lr"],
            weight_decay=g["weight_decay"],
            eps=g["eps"],
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

    @torch.no_grad()
    def step(self) -> None:
        """One RMSprop update of every parameter that has a gradient."""
        g = self.param_groups[0]
        grads, idx = self._grads()
        if not grads:
            return
        rmsprop_kernel(
            [self.params[i] for i in idx],
            grads,
            [self.buffers["square_avg"][i] for i in idx],
            [],
            [],
            [self.step_count[i] for i in idx],
            foreach=True,
            maximize=False,
            differentiable=False,
            capturable=False,
            has_complex=False,
            lr=g["lr"],
            alpha=g["alpha"],
            eps=g["eps"],
            weight_decay=0.0,
            momentum=0.0,
            centered=False,
        )

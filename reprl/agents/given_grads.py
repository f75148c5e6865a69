"""Losses whose gradients were computed by hand, as ordinary autograd outputs.

An agent that writes out a loss's gradients itself (DQN's TD step on a ReLU MLP,
:mod:`reprl.agents.fused_td`; SAC's whole step, :mod:`reprl.agents.fused_sac`) returns the
loss through :func:`with_grads`: one autograd node whose backward hands out those gradients.
The loop's ``sum -> backward``, a test's ``loss.backward()``, and back-propagation on into a
backbone through the node's input then work exactly as for a loss built by autograd, at the
cost of one node instead of one per layer, activation and loss term.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, ParamSpec

import torch

P = ParamSpec("P")
Part = tuple[torch.Tensor, Sequence[torch.Tensor], Sequence[Any], Any, Any]
"""``(loss, params, grads, x, x_grad)``: the arguments of :func:`with_grads`."""


class GivenGrads(torch.autograd.Function):
    """``loss`` as an autograd node whose backward returns gradients computed beforehand:
    ``grads[0]`` for the input ``x``, ``grads[1 + i]`` for ``params[i]`` (scaled by the
    incoming gradient; None: no gradient)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        loss: torch.Tensor,
        grads: list[torch.Tensor | None],
        x: torch.Tensor,
        *params: torch.Tensor,
    ) -> torch.Tensor:
        ctx.grads = grads  # type: ignore[attr-defined]
        ctx.params = params  # type: ignore[attr-defined]  # for assign()
        ctx.x_needs_grad = x.requires_grad  # type: ignore[attr-defined]
        return loss.clone()

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        grads = ctx.grads  # type: ignore[attr-defined]
        if grads is None:
            raise RuntimeError("GivenGrads: its gradients were handed out already")
        ctx.grads = None  # type: ignore[attr-defined]  # they may be changed in place (clip, step)
        # loss.backward() passes exactly 1 (checked on CPU only: no device sync elsewhere)
        if not (grad.device.type == "cpu" and grad.item() == 1.0):
            grads = [None if g is None else g * grad for g in grads]
        return (None, None, *grads)


def with_grads(
    loss: torch.Tensor,
    params: Sequence[torch.Tensor],
    grads: Sequence[torch.Tensor | None],
    x: torch.Tensor | None = None,
    x_grad: torch.Tensor | None = None,
) -> torch.Tensor:
    """``loss`` (a value computed without autograd) as a differentiable scalar whose gradient
    is ``grads[i]`` for ``params[i]`` and ``x_grad`` for ``x`` (an input with a graph, e.g. a
    backbone's features). Outside grad mode: ``loss`` itself."""
    if not torch.is_grad_enabled():
        return loss
    if len(params) != len(grads):
        raise ValueError(f"with_grads: {len(params)} parameters but {len(grads)} gradients")
    anchor = loss if x is None else x
    given = [x_grad if x is not None else None, *grads]
    return GivenGrads.apply(loss, given, anchor, *params)


def assign(losses: Sequence[torch.Tensor]) -> bool:
    """Write the gradients of ``sum(losses)`` into the parameters' ``.grad`` directly, without
    the autograd engine, when every loss came from :func:`with_grads` with no input to
    back-propagate into (no backbone with parameters behind it); returns whether it did
    (else nothing is touched and the caller runs ``backward``). What ``sum(losses).backward()``
    would do, minus the engine's graph walk (~0.2 ms per SAC step on this project's CPU,
    three nodes)."""
    nodes = [loss.grad_fn for loss in losses]
    backward_cls = GivenGrads._backward_cls  # type: ignore[attr-defined]
    if not nodes or not all(
        type(node) is backward_cls and node.grads is not None and not node.x_needs_grad
        for node in nodes
    ):
        return False
    for node in nodes:
        grads, node.grads = node.grads, None  # handed out once, as backward() does
        for param, grad in zip(node.params, grads[1:], strict=True):
            if grad is None or not param.requires_grad:
                continue
            if param.grad is None:
                param.grad = grad
            else:
                param.grad += grad
    return True


def hand_written(
    fn: Callable[P, tuple[dict[str, Part], dict[str, torch.Tensor]]],
) -> Callable[P, tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]]:
    """Decorates a loss function that computes its gradients by hand: ``fn`` runs outside
    grad mode and returns ``({name: (loss, params, grads, x, x_grad)}, info)``; the caller
    gets ``({name: with_grads(...)}, info)``, each loss an autograd output."""

    @functools.wraps(fn)
    def losses(*args: P.args, **kwargs: P.kwargs) -> tuple[dict[str, torch.Tensor], Any]:
        with torch.no_grad():
            parts, info = fn(*args, **kwargs)
        return {name: with_grads(*part) for name, part in parts.items()}, info

    return losses

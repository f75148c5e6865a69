"""DQN's TD loss on a ReLU MLP Q head, with its gradients written out by hand (no autograd).

A DQN gradient step on a small network (RL Zoo's CartPole: batch 64, a 4-256-256-2 MLP) is
bound by per-op overhead and by its three 64 x 256 x 256 products. PyTorch's autograd adds a
node per layer, activation, gather and loss, and runs the products through MKL, which on AMD
CPUs uses AVX2 code (see :mod:`reprl.models.kernels`). An autograd Function around the same
hand-written backward costs as much again in Python bookkeeping. :func:`mlp_td_loss` computes
the loss and every parameter's gradient in plain no-grad ops instead, with the large
products by oneDNN where :mod:`reprl.models.kernels` would use it. The loss it returns is
still an ordinary autograd output: one node
(:class:`reprl.agents.given_grads.GivenGrads`) whose backward hands out the gradients
computed beforehand, so ``loss.backward()``, summing with other losses, and
back-propagating into a backbone all work as for any loss.

The maths, for ``q = MLP(x)``, ``d = q[i, a_i] - y_i`` and ``L = mean_i w_i l(d_i)``:
``dL/dq[i, a_i] = w_i l'(d_i) / B`` (Huber: ``l' = clamp(d, -1, 1)``; squared error:
``l' = 2 d``), zero for the other actions; then the usual chain through each linear layer
(``dW = g^T h``, ``db = sum_i g``, ``dh = g W``) and each ReLU (``g * (h > 0)``).
:class:`reprl.agents.dqn.DQN` takes it where it applies (``DQN.td_layers``);
``tests/test_fused_td.py`` checks it against the autograd path.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from reprl.agents.given_grads import with_grads
from reprl.models import kernels

FUSED_TD = True
"""Let DQN use :func:`mlp_td_loss` where it applies (False: always autograd, for A/B)."""


@dataclass
class TDGrads:
    """What :func:`mlp_td_loss` returns."""

    loss: torch.Tensor
    """The (importance-weighted) mean TD loss, a scalar."""
    q_sa: torch.Tensor
    """``Q(s_i, a_i)`` ``(B,)``."""
    grads: list[torch.Tensor]
    """``dL/dparam`` for ``weights[0], biases[0], weights[1], ...``: the parameters' order."""
    input_grad: torch.Tensor | None
    """``dL/dx`` ``(B, D)`` when asked for (a backbone to back-propagate into), else None."""


@torch.no_grad()
def mlp_td_loss(
    x: torch.Tensor,
    weights: list[torch.Tensor],
    biases: list[torch.Tensor],
    action: torch.Tensor,
    target: torch.Tensor,
    is_weight: torch.Tensor | None = None,
    huber: bool = True,
    input_grad: bool = False,
) -> TDGrads:
    """The TD loss of ``Q = MLP(x)`` and its gradients, without autograd.

    Args:
        x: features ``(B, D)``.
        weights: the layers' ``(out, in)`` weights; a ReLU follows every layer but the last
            (the Q head, one output per action).
        biases: the layers' ``(out,)`` biases.
        action: the actions taken ``(B,)`` (integer).
        target: the TD targets ``(B,)`` (no gradient flows into them).
        is_weight: importance-sampling weights ``(B,)`` (prioritized replay) or None.
        huber: Huber loss (``F.smooth_l1_loss``, delta 1) or squared error (``F.mse_loss``).
        input_grad: also return ``dL/dx``.

    Returns:
        :class:`TDGrads`: the same loss, ``Q(s, a)`` and gradients as autograd through
        ``F.linear``/``relu`` layers, ``q.gather`` and ``F.smooth_l1_loss``/``F.mse_loss``
        (up to float rounding: the products may run on other kernels).
    """
    n = len(weights)
    rows = x.shape[0]
    acts = [x]
    h = x
    for i in range(n):
        h = kernels._mlp_forward_layer(h, weights[i], biases[i], i < n - 1)
        acts.append(h)
    index = action.long().view(rows, 1)
    q_sa = h.gather(1, index).view(rows)
    diff = q_sa - target
    if huber:
        slope = diff.clamp(-1.0, 1.0)
        per_sample = None if is_weight is None else F.smooth_l1_loss(q_sa, target, reduction="none")
    else:
        slope = diff * 2.0
        per_sample = None if is_weight is None else diff.square()
    if per_sample is None:
        loss = F.smooth_l1_loss(q_sa, target) if huber else F.mse_loss(q_sa, target)
        slope = slope.mul_(1.0 / rows)
    else:
        weight = is_weight.to(per_sample.dtype)
        loss = (weight * per_sample).mean()
        slope = slope.mul_(weight).mul_(1.0 / rows)
    g = torch.zeros_like(h).scatter_(1, index, slope.view(rows, 1))
    w_grads: list[torch.Tensor] = []
    b_grads: list[torch.Tensor] = []
    for i in reversed(range(n)):
        if i < n - 1:
            g = kernels._relu_backward(g, acts[i + 1])
        w, h = weights[i], acts[i]
        big = kernels._large(w, rows, kernels.FUSED_MIN_MACS)
        # contiguous: a narrow layer's gradient comes back as a transposed view (4 KiB here)
        w_grads.append(kernels._mlp_weight_grad(g, h, big, False).contiguous())
        b_grads.append(g.sum(0))
        if i > 0 or input_grad:
            g = kernels._dnn(g, w.t()) if big else torch.mm(g, w)
    grads = [t for pair in zip(reversed(w_grads), reversed(b_grads), strict=True) for t in pair]
    return TDGrads(loss=loss, q_sa=q_sa, grads=grads, input_grad=g if input_grad else None)


def td_loss_node(
    x: torch.Tensor,
    weights: list[torch.Tensor],
    biases: list[torch.Tensor],
    action: torch.Tensor,
    target: torch.Tensor,
    is_weight: torch.Tensor | None = None,
    huber: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`mlp_td_loss` as a differentiable loss: ``(loss, Q(s, a) (B,))`` where ``loss``
    back-propagates the hand-computed gradients into ``weights``, ``biases`` and (when it
    requires a gradient) ``x``. Without grad mode the loss is a plain value."""
    need_x = x.requires_grad and torch.is_grad_enabled()
    td = mlp_td_loss(x, weights, biases, action, target, is_weight, huber, need_x)
    if not torch.is_grad_enabled():
        return td.loss, td.q_sa
    params = [p for pair in zip(weights, biases, strict=True) for p in pair]
    return with_grads(td.loss, params, td.grads, x, td.input_grad), td.q_sa

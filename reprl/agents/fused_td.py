"""DQN's TD loss on a ReLU MLP Q head, with its gradients written out by hand (no autograd).

A DQN gradient step on a small network (RL Zoo's CartPole: batch 64, a 4-256-256-2 MLP) is
bound by per-op overhead and by its three 64 x 256 x 256 products. PyTorch's autograd adds a
node per layer, activation, gather and loss. :func:`td_loss_node` computes the loss and every
parameter's gradient in plain no-grad ops instead, with the products on the kernels
:mod:`reprl.models.kernels` chooses. The loss it returns is still an ordinary autograd
output: one node
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

import torch
import torch.nn.functional as F

from reprl.agents.given_grads import with_grads
from reprl.models import kernels, native

FUSED_TD = True
"""Let DQN use :func:`td_loss_node` where it applies (False: always autograd, for A/B)."""


def td_loss_node(
    x: torch.Tensor,
    weights: list[torch.Tensor],
    biases: list[torch.Tensor],
    action: torch.Tensor,
    target: torch.Tensor,
    is_weight: torch.Tensor | None = None,
    huber: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The TD loss of ``Q = MLP(x)`` and ``Q(s, a)`` ``(B,)``, the loss carrying gradients
    computed by hand for ``weights``, ``biases`` and (when it requires a gradient) ``x``:
    the same loss and gradients as autograd through ``F.linear``/``relu`` layers,
    ``q.gather`` and ``F.smooth_l1_loss``/``F.mse_loss`` (up to float rounding: the products
    may run on other kernels). Without grad mode the loss is a plain value.

    Args:
        x: features ``(B, D)``.
        weights: the layers' ``(out, in)`` weights; a ReLU follows every layer but the last
            (the Q head, one output per action).
        biases: the layers' ``(out,)`` biases.
        action: the actions taken ``(B,)`` (integer).
        target: the TD targets ``(B,)`` (no gradient flows into them).
        is_weight: importance-sampling weights ``(B,)`` (prioritized replay) or None.
        huber: Huber loss (``F.smooth_l1_loss``, delta 1) or squared error (``F.mse_loss``).
    """
    need_x = x.requires_grad and torch.is_grad_enabled()
    params = tuple(p for pair in zip(weights, biases, strict=True) for p in pair)
    rows = x.shape[0]
    with torch.no_grad():
        mlp = native.MLP.of(weights, biases, x)
        if mlp is not None:  # the whole forward in one C call
            h, ws = mlp.forward(x)
        else:
            acts = kernels._mlp_chain(x, params, False, False)[0]  # [x, h1, ..., q]
            h = acts[-1]
        index = action.long().view(rows, 1)
        q_sa = h.gather(1, index).view(rows)
        diff = q_sa - target
        if huber:
            slope = diff.clamp(-1.0, 1.0)
            per_sample = (
                None if is_weight is None else F.smooth_l1_loss(q_sa, target, reduction="none")
            )
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
        if mlp is not None:  # and the whole backward in another
            w_grads = [torch.empty_like(w) for w in weights]
            b_grads = [torch.empty_like(b) for b in biases]
            dx = torch.zeros_like(x) if need_x else None
            mlp.backward(
                ws, g, x, dw=native.addresses(w_grads), db=native.addresses(b_grads), dx=dx
            )
            grads, g = [p for pair in zip(w_grads, b_grads, strict=True) for p in pair], dx
        else:
            grads, g = _backward(g, acts, weights, need_x)
    if not torch.is_grad_enabled():
        return loss, q_sa
    return with_grads(loss, params, grads, x, g if need_x else None), q_sa


def _backward(
    g: torch.Tensor, acts: list[torch.Tensor], weights: list[torch.Tensor], need_x: bool
) -> tuple[list[torch.Tensor], torch.Tensor | None]:
    """The gradients ``(w0, b0, w1, b1, ...)`` and the input's (``need_x``, else None) from
    ``g = dL/dq``: the usual chain through each linear layer and ReLU."""
    n, rows = len(weights), g.shape[0]
    grads: list[torch.Tensor] = [g] * (2 * n)  # (w0, b0, w1, b1, ...), filled backwards
    for i in reversed(range(n)):
        if i < n - 1:
            g = kernels._relu_backward(g, acts[i + 1])
        w, h = weights[i], acts[i]
        big = kernels._large(w, rows, kernels.FUSED_MIN_MACS)
        # contiguous: a narrow layer's gradient comes back as a transposed view (4 KiB here)
        grads[2 * i] = kernels._mlp_weight_grad(g, h, big, False).contiguous()
        grads[2 * i + 1] = g.sum(0)
        if i > 0 or need_x:
            g = kernels._dnn(g, w.t()) if big else torch.mm(g, w)
    return grads, g if need_x else None

"""Gradient projection: drop the part of an auxiliary gradient that fights the RL gradient.

On the parameters shared by the RL loss and an auxiliary loss (the backbone), let ``b`` be the
RL gradient and ``a`` the auxiliary gradient, each the concatenation of one tensor per
parameter. When they conflict, ``cos(a, b) < 0``, ``a`` is replaced by its component
orthogonal to ``b``::

    a' = a - (a . b / |b|^2) b        (so a' . b = 0)

and otherwise ``a`` is kept. This is PCGrad's projection (Yu et al. 2020, "Gradient Surgery
for Multi-Task Learning", Algorithm 1) applied one-sidedly, as issue 4 specifies: only the
auxiliary gradient is projected, the RL gradient is never changed. (The issue notes that the
original description's ``b - proj_b a`` is a typo for ``a - proj_b a``.) The update then
descends ``b + a'``, which never has a negative component along ``b``: the auxiliary loss
cannot undo the RL step to first order.

Everything runs on lists of tensors (one per parameter) treated as one flattened vector, with
``torch._foreach_*`` kernels and without a host-device synchronisation: whether the projection
fires is decided on the device (the coefficient of ``b`` is 0 when it does not), and the
cosine and the fired flag come back as 0-d tensors for the loop to log.

Under torchrun, both gradients must be averaged over ranks *before* projecting: the
projection is not linear in ``a`` and ``b`` (its coefficient depends on them), so projecting
each rank's local gradients and then averaging would differ from projecting the averaged
gradients, and ranks would also disagree on whether to fire. :func:`all_reduce_mean`
averages a tensor list with one all-reduce, and :func:`projected_backward` does the whole
update's gradient computation (both gradients, all-reduce, projection, ``p.grad``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as tdist
from torch import nn

from reprl import dist


@dataclass
class ProjectionResult:
    """What :func:`project_conflicting` returns."""

    aux: list[torch.Tensor]
    """The (possibly projected) auxiliary gradient, one new tensor per parameter."""
    cosine: torch.Tensor
    """0-d float32 tensor: ``cos(a, b)`` before projection (0 when ``a`` or ``b`` is 0)."""
    fired: torch.Tensor
    """0-d bool tensor: whether ``a`` was projected (``cosine < 0``). ``bool(fired)`` reads
    it on the host (a device synchronisation on GPU); its mean over updates is the fraction
    of updates where projection fired."""


def _dot(xs: Sequence[torch.Tensor], ys: Sequence[torch.Tensor]) -> torch.Tensor:
    """``sum_i <xs[i], ys[i]>`` accumulated in float32 (one dot kernel per tensor: there is no
    foreach dot, and measured on CPU this is faster than concatenating the tensors first)."""
    dots = [torch.dot(x.reshape(-1).float(), y.reshape(-1).float()) for x, y in zip(xs, ys)]
    return torch.stack(dots).sum()


def _sq_norm(xs: Sequence[torch.Tensor]) -> torch.Tensor:
    """``|xs|^2`` of the concatenated vector (one fused ``_foreach_norm`` kernel on CUDA)."""
    norms = torch._foreach_norm(list(xs))
    return torch.stack([n.float() for n in norms]).square().sum()


def project_conflicting(
    aux: Sequence[torch.Tensor], rl: Sequence[torch.Tensor]
) -> ProjectionResult:
    """Project ``aux`` (a) onto the normal plane of ``rl`` (b) when ``cos(a, b) < 0``.

    ``aux[i]`` and ``rl[i]`` are the two gradients of parameter ``i`` (same shapes, one device);
    together they are treated as two flat vectors. Returns ``a' = a - (a.b / |b|^2) b`` if the
    cosine is negative, else ``a`` (see the module docstring for the source).

    - ``b = 0`` (or ``a = 0``): cosine 0, no projection. No epsilon enters the projection
      itself: it fires only when ``a.b < 0``, hence ``|b|^2 > 0``, so the coefficient is exact
      even for tiny gradients (the norms are only clamped at the smallest normal float so
      that ``0 / 0`` never occurs).
    - Not fired, the result is ``a - 0 * b``: equal to ``a`` in every entry, and bitwise
      identical except that a ``-0.0`` entry of ``a`` facing a negative entry of ``b`` becomes
      ``+0.0`` (the price of deciding on the device without a synchronisation).
    - The dot products accumulate in float32; the result keeps each gradient's dtype.
    """
    aux, rl = list(aux), list(rl)
    if len(aux) != len(rl):
        raise ValueError(f"aux and rl gradients differ in length: {len(aux)} != {len(rl)}")
    for i, (a, b) in enumerate(zip(aux, rl)):
        if a.shape != b.shape:
            raise ValueError(f"gradient {i}: aux shape {tuple(a.shape)} != rl {tuple(b.shape)}")
    if not aux:
        zero = torch.zeros(())
        return ProjectionResult([], zero, zero < 0)
    tiny = torch.finfo(torch.float32).tiny
    dot = _dot(aux, rl)
    b_sq = _sq_norm(rl)
    cosine = dot / (_sq_norm(aux).sqrt() * b_sq.sqrt()).clamp_min(tiny)
    fired = (cosine < 0) & (b_sq > 0)
    # coef = a.b / |b|^2 when firing, else 0: a' = a - coef * b either way, no host branch.
    coef = torch.where(fired, dot / b_sq.clamp_min(tiny), torch.zeros_like(dot))
    return ProjectionResult(torch._foreach_sub(aux, torch._foreach_mul(rl, coef)), cosine, fired)


def all_reduce_mean(tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """``tensors`` averaged over the ranks of a torchrun job (``tensors`` itself, as a list,
    on one process).

    One all-reduce of a flat buffer holding every tensor (as DDP's buckets do, and as
    :func:`reprl.dist.all_reduce_grads` does for ``p.grad``), so a list of many small tensors
    costs one collective. Returns views of that buffer shaped like the inputs, which are left
    untouched (``autograd.grad`` may return expanded, overlapping tensors that cannot be
    written in place).
    """
    tensors = list(tensors)
    if not dist.is_distributed() or not tensors:
        return tensors
    flat = torch.cat([t.reshape(-1) for t in tensors])
    tdist.all_reduce(flat, op=tdist.ReduceOp.SUM)
    flat /= dist.world_size()
    parts = flat.split([t.numel() for t in tensors])
    return [part.view(t.shape) for part, t in zip(parts, tensors)]


def _raw_gradients(
    loss: torch.Tensor, params: list[torch.Tensor], retain_graph: bool
) -> list[torch.Tensor | None]:
    """``autograd.grad`` with ``None`` for every parameter ``loss`` does not reach."""
    if not loss.requires_grad:
        return [None] * len(params)
    return list(torch.autograd.grad(loss, params, retain_graph=retain_graph, allow_unused=True))


def loss_gradients(
    loss: torch.Tensor,
    params: Sequence[torch.Tensor],
    retain_graph: bool = False,
) -> list[torch.Tensor]:
    """``d loss / d p`` for each of ``params``; a parameter the loss does not reach (or a loss
    that needs no gradient at all) gets zeros, so the result always aligns with ``params``."""
    params = list(params)
    grads = _raw_gradients(loss, params, retain_graph)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]


def rl_and_aux_gradients(
    rl_loss: torch.Tensor,
    aux_loss: torch.Tensor,
    params: Sequence[torch.Tensor],
    retain_graph: bool = False,
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """``(b, a)``: the gradients of ``rl_loss`` and of ``aux_loss`` with respect to ``params``,
    from the one forward pass that built both losses.

    Two backward passes through the shared part of the graph (the first keeps the graph alive
    with ``retain_graph=True`` for the second); ``retain_graph`` applies to the second. Each
    head's part of the graph is walked once, by the loss that reaches it. ``None`` gradients
    (a parameter one loss does not use) become zeros.
    """
    rl = loss_gradients(rl_loss, params, retain_graph=True)
    aux = loss_gradients(aux_loss, params, retain_graph=retain_graph)
    return rl, aux


def projected_backward(
    rl_loss: torch.Tensor,
    aux_loss: torch.Tensor,
    params: Sequence[nn.Parameter],
    shared: Sequence[nn.Parameter],
) -> dict[str, torch.Tensor]:
    """Set ``p.grad`` for every ``p`` in ``params`` as ``rl + aux``, with ``aux`` projected by
    :func:`project_conflicting` on the ``shared`` parameters; average over ranks under torchrun.

    A drop-in for ``total.backward(); dist.all_reduce_grads(params)`` in an agent's ``update``
    (clip and step follow as usual). ``shared`` (a subset of ``params``, e.g. the backbone's
    parameters) is where ``a`` and ``b`` are both computed and projected; every other parameter
    (a policy head, an SSL projector) gets the plain sum of the two gradients, and keeps
    ``p.grad = None`` if neither loss reaches it (as after ``backward()``). Under torchrun,
    ``b`` and ``a`` on the shared parameters and the sums elsewhere are averaged over ranks in
    one all-reduce *before* the projection, so every rank projects the same averaged vectors
    and applies the same update (like :func:`reprl.dist.all_reduce_grads`, this assumes every
    rank's losses reach the same parameters).

    Returns ``{"stats/grad_cosine": cos(a, b), "stats/projection_fired": 0. or 1.}`` (0-d
    tensors, no synchronisation; both computed after the all-reduce, so equal on all ranks).
    """
    params = list(params)
    shared_ids = {id(p) for p in shared}
    if not shared_ids <= {id(p) for p in params}:
        raise ValueError("every shared parameter must be among params")
    rl = _raw_gradients(rl_loss, params, retain_graph=True)
    aux = _raw_gradients(aux_loss, params, retain_graph=False)
    in_shared = [id(p) in shared_ids for p in params]
    b = [_or_zeros(g, p) for g, p, s in zip(rl, params, in_shared) if s]
    a = [_or_zeros(g, p) for g, p, s in zip(aux, params, in_shared) if s]
    # Elsewhere only the sum matters; a parameter neither loss reaches keeps p.grad = None, as
    # after backward(), so the optimizer skips it (a zero gradient would still move Adam).
    rest = [_sum(r, x) for r, x, s in zip(rl, aux, in_shared) if not s]
    present = [g for g in rest if g is not None]
    reduced = all_reduce_mean([*b, *a, *present])
    b, a = reduced[: len(b)], reduced[len(b) : len(b) + len(a)]
    rest_reduced = iter(reduced[len(b) + len(a) :])
    rest = [None if g is None else next(rest_reduced) for g in rest]
    result = project_conflicting(a, b)
    shared_grads = iter(torch._foreach_add(b, result.aux) if b else [])
    rest_grads = iter(rest)
    for p, s in zip(params, in_shared):
        g = next(shared_grads) if s else next(rest_grads)
        p.grad = None if g is None else _grad_like(p, g)
    return {
        "stats/grad_cosine": result.cosine,
        "stats/projection_fired": result.fired.float(),
    }


def _or_zeros(grad: torch.Tensor | None, param: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(param) if grad is None else grad


def _sum(x: torch.Tensor | None, y: torch.Tensor | None) -> torch.Tensor | None:
    """``x + y`` where ``None`` is a zero that needs no kernel."""
    if x is None or y is None:
        return y if x is None else x
    return x + y


def _grad_like(param: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """``grad`` with ``param``'s strides (copied only when they differ): what ``backward``
    would have stored in ``p.grad``. Keeps gradient clipping's in-place scaling valid on an
    expanded gradient, and the layout the optimizer's fused kernels expect (e.g. a
    channels-last conv weight)."""
    if grad.stride() == param.stride():
        return grad
    return torch.empty_like(param).copy_(grad)

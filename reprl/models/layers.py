"""Small building blocks shared by backbones and policies: activations, MLPs, initialisation."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from reprl.errors import ConfigError, choices_hint
from reprl.models.kernels import linear, mlp, stacked_linear, stacked_mlp

NUMPY_TANH = True
"""Compute :func:`tanh` with NumPy's SIMD kernel on CPU (see there); False: ``torch.tanh``."""
_NUMPY_DTYPES = (torch.float32, torch.float64)
_tanh_backward = torch.ops.aten.tanh_backward.default


def _numpy_tanh(x: torch.Tensor) -> torch.Tensor:
    y = torch.empty_like(x)
    np.tanh(x.detach().numpy(), out=y.numpy())
    return y


class _NumpyTanh(torch.autograd.Function):
    """tanh forward by NumPy; backward is torch's own ``tanh_backward(grad, y)`` (differentiable,
    so double backward works as for ``torch.tanh``)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        y = _numpy_tanh(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (y,) = ctx.saved_tensors
        return _tanh_backward(grad, y)


def tanh(x: torch.Tensor) -> torch.Tensor:
    """``torch.tanh``, computed by NumPy's SIMD ``np.tanh`` for CPU float32/float64 tensors.

    torch's CPU tanh calls MKL's VML, which takes a slow generic path on AMD CPUs: measured
    39 us for a 256x64 float32 tensor against 3.3 us for ``np.tanh`` (AMD EPYC, 1 thread), and
    the four tanh of a 64-64 actor-critic were half of its forward time. Both are accurate to
    about 1 ulp (max relative error vs float64: 0.06e-6 torch, 0.11e-6 NumPy); they differ in
    the last bit on some elements. The gradient is torch's ``tanh_backward`` (``grad * (1 - y^2)``,
    the kernel ``torch.tanh`` uses), behind a Python ``autograd.Function`` that costs 10-20 us per
    call (forward + backward): with autograd the break-even is at 8-16k elements (batch 64-128
    of a 64-64 stacked actor-critic; ~15 us lost per update at batch 64, ~100 us won at 256);
    without autograd (acting) NumPy wins at every size. It is used at every batch size, with or
    without grad, so acting (batch 8) and learning (minibatch) still compute identical
    log-probs and values (bitwise on this CPU, as with ``torch.tanh``). Other devices and
    dtypes (bf16 autocast), tensors NumPy cannot view and ``torch.compile`` tracing use
    ``torch.tanh``; ``NUMPY_TANH = False`` turns it off.
    """
    if not (NUMPY_TANH and x.is_cpu and x.dtype in _NUMPY_DTYPES) or torch.compiler.is_compiling():
        return torch.tanh(x)
    try:
        if x.requires_grad and torch.is_grad_enabled():
            return _NumpyTanh.apply(x)
        return _numpy_tanh(x)
    except (RuntimeError, TypeError):  # e.g. functorch-wrapped or subclass tensors
        return torch.tanh(x)


ACTIVATION_FNS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "tanh": tanh,
    "relu": torch.relu,
    "elu": F.elu,
    "gelu": F.gelu,
    "silu": F.silu,
}
"""Activations accepted by every ``activation`` config field, as functions (no module call
per activation in the hot path)."""

HIDDEN_GAIN = math.sqrt(2.0)
"""Orthogonal gain of hidden layers (CleanRL ``layer_init``; SB3 ``ortho_init``)."""


def check_activation(name: str, path: str = "activation") -> None:
    """Raise a ConfigError naming the valid choices if ``name`` is not an activation."""
    if name not in ACTIVATION_FNS:
        raise ConfigError(
            f"{path}: unknown activation '{name}'; {choices_hint(name, ACTIVATION_FNS)}"
        )


class MLP(nn.Module):
    """``Linear -> [LayerNorm] -> activation`` per hidden size; no hidden sizes: identity.

    Written for the per-step acting path: it calls ``kernels.mlp`` (ReLU without LayerNorm)
    or ``kernels.linear`` and the activation function directly instead of going through
    ``nn.Sequential`` (~2 us of module-call overhead per layer and activation at batch 8 on
    CPU). Linear layers act on the last dim, so inputs may have any leading dims.
    """

    def __init__(
        self, in_dim: int, hidden_sizes: list[int], activation: str, layer_norm: bool = False
    ) -> None:
        super().__init__()
        check_activation(activation)
        sizes = [in_dim, *hidden_sizes]
        self.layers = nn.ModuleList(
            nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(b) for b in hidden_sizes) if layer_norm else None
        self.act = ACTIVATION_FNS[activation]
        self.out_dim = sizes[-1]

    @property
    def fusable(self) -> bool:
        """A ReLU MLP without LayerNorm: one :func:`reprl.models.kernels.mlp` call."""
        return self.norms is None and self.act is torch.relu and len(self.layers) > 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., in_dim) -> (..., out_dim)``."""
        if self.fusable:  # one autograd node, ReLUs fused into the products
            layers = self.layers
            return mlp(x, [la.weight for la in layers], [la.bias for la in layers], True)
        for i, layer in enumerate(self.layers):
            x = linear(x, layer.weight, layer.bias)
            if self.norms is not None:
                norm = self.norms[i]
                x = F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)
            x = self.act(x)
        return x

    def forward_head(
        self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor
    ) -> torch.Tensor:
        """``F.linear(self(x), weight, bias)``: the MLP then a linear head (no activation), as
        one :func:`reprl.models.kernels.mlp` call when :attr:`fusable`."""
        if not self.fusable:
            return linear(self(x), weight, bias)
        layers = self.layers
        return mlp(x, [*(la.weight for la in layers), weight], [*(la.bias for la in layers), bias])


class StackedMLP(nn.Module):
    """``k`` MLPs of the same sizes on the same input, run as one batched matmul per layer.

    ``(B, in_dim) -> (k, B, out_dim)``: slice ``j`` of the output is MLP ``j``'s output. Built
    from ``k`` :class:`MLP` s (taking over their initialised weights): an actor and a critic
    of equal hidden sizes run as two ``torch.baddbmm`` per layer pair instead of four
    ``F.linear``, with half the autograd nodes. No block-diagonal matrix: each net keeps its
    own weights, and gradients are those of the separate MLPs.

    Parameters ``weight{i}`` ``(k, in, out)`` and ``bias{i}`` ``(k, 1, out)``: net ``j``'s layer
    ``i`` is the ``Linear`` with weight ``weight{i}[j].T`` and bias ``bias{i}[j, 0]`` (see
    :meth:`layer`). The ``(in, out)`` layout lets ``baddbmm`` and its backward run without a
    transpose (measured ~3% faster than ``(out, in)`` for a 64-64 actor-critic at batch 256).
    """

    def __init__(self, mlps: Sequence[MLP]) -> None:
        super().__init__()
        first = mlps[0]
        sizes = [(layer.in_features, layer.out_features) for layer in first.layers]
        for net in mlps:
            if [(la.in_features, la.out_features) for la in net.layers] != sizes:
                raise ValueError("StackedMLP needs MLPs of the same layer sizes")
            if net.act is not first.act or net.norms is not None:
                raise ValueError("StackedMLP needs MLPs of one activation, without LayerNorm")
        if not sizes:
            raise ValueError("StackedMLP needs MLPs with at least one layer")
        self.k = len(mlps)
        self.in_dim, self.out_dim = sizes[0][0], sizes[-1][1]
        self.act = first.act
        with torch.no_grad():
            for i in range(len(sizes)):
                weight = torch.stack([mlp.layers[i].weight.T for mlp in mlps]).contiguous()
                bias = torch.stack([mlp.layers[i].bias for mlp in mlps]).unsqueeze(1)
                self.register_parameter(f"weight{i}", nn.Parameter(weight))
                self.register_parameter(f"bias{i}", nn.Parameter(bias))
        self._names = tuple((f"weight{i}", f"bias{i}") for i in range(len(sizes)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_dim) -> (k, B, out_dim)``, every net on the same ``x``."""
        params = self._parameters
        h = x.expand(self.k, *x.shape)
        for weight, bias in self._names:
            h = self.apply_layer(params[bias], h, params[weight])  # type: ignore[arg-type]
        return h

    def apply_layer(
        self, bias: torch.Tensor, h: torch.Tensor, weight: torch.Tensor
    ) -> torch.Tensor:
        """One stacked layer and the activation: ``act(baddbmm(bias, h, weight))`` (a ReLU is
        fused into the product, see :func:`reprl.models.kernels.stacked_linear`)."""
        if self.act is torch.relu:
            return stacked_linear(bias, h, weight, relu=True)
        return self.act(stacked_linear(bias, h, weight))

    def forward_head(
        self,
        x: torch.Tensor,
        out_weight: torch.Tensor,
        out_bias: torch.Tensor,
        detach_params: bool = False,
    ) -> torch.Tensor:
        """``(B, in_dim) -> (k, B, out)``: every net, then its linear head ``out_weight[j] (in,
        out)``, ``out_bias[j] (1, out)`` (no activation), as one
        :func:`reprl.models.kernels.stacked_mlp` call for ReLU nets. ``detach_params``: the
        nets as constants (gradients flow to ``x`` only)."""
        params = self._parameters
        weights = [params[w] for w, _ in self._names] + [out_weight]
        biases = [params[b] for _, b in self._names] + [out_bias]
        if detach_params:
            weights = [w.detach() for w in weights]  # type: ignore[union-attr]
            biases = [b.detach() for b in biases]  # type: ignore[union-attr]
        if self.act is torch.relu:
            return stacked_mlp(x, weights, biases)  # type: ignore[arg-type]
        h = x.expand(self.k, *x.shape)
        for w, b in zip(weights[:-1], biases[:-1], strict=True):
            h = self.apply_layer(b, h, w)  # type: ignore[arg-type]
        return stacked_linear(biases[-1], h, weights[-1])  # type: ignore[arg-type]

    def forward_one(self, x: torch.Tensor, j: int) -> torch.Tensor:
        """Net ``j`` alone: ``(B, in_dim) -> (B, out_dim)`` (e.g. the critic for bootstrap
        values), by the same batched kernel on a batch of one."""
        params = self._parameters
        h = x.unsqueeze(0)
        for weight, bias in self._names:
            w, b = params[weight], params[bias]
            h = self.apply_layer(b[j : j + 1], h, w[j : j + 1])  # type: ignore[index]
        return h[0]

    def layer(self, i: int, j: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Net ``j``'s layer ``i`` as ``nn.Linear``-layout views ``(weight (out, in), bias
        (out,))`` of the stacked parameters (copying into them writes the parameters)."""
        weight, bias = self._names[i]
        return self._parameters[weight][j].T, self._parameters[bias][j, 0]  # type: ignore[index]

    @torch.no_grad()
    def orthogonal_(self, gain: float) -> None:
        """Orthogonal init of every net's layers as separate ``Linear`` s (net by net, layer by
        layer, the order :func:`orthogonal_init_` visits separate MLPs); biases 0."""
        for j in range(self.k):
            for i in range(len(self._names)):
                weight, bias = self.layer(i, j)
                weight.copy_(orthogonal_matrix(weight.shape, gain, weight.dtype))
                bias.zero_()


def orthogonal_matrix(
    shape: Sequence[int], gain: float, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """A fresh orthogonal matrix (``nn.init.orthogonal_``) of ``shape``, scaled by ``gain``."""
    weight = torch.empty(tuple(shape), dtype=dtype)
    nn.init.orthogonal_(weight, gain)
    return weight


@torch.no_grad()
def orthogonal_(layer: nn.Linear | nn.Conv2d, gain: float, bias: float = 0.0) -> None:
    """Orthogonal weights scaled by ``gain`` and a constant bias (Saxe et al. 2014).

    The matrix is drawn into a fresh tensor and copied, because ``nn.init.orthogonal_`` views
    the weight as 2-D in place, which fails on ``channels_last`` conv weights; ``copy_`` keeps
    the destination's memory format.
    """
    layer.weight.copy_(orthogonal_matrix(layer.weight.shape, gain, layer.weight.dtype))
    if layer.bias is not None:
        layer.bias.fill_(bias)


def orthogonal_init_(model: nn.Module) -> None:
    """Orthogonal initialisation as CleanRL and SB3 do it.

    Every ``Linear`` and ``Conv2d`` (and every layer of a :class:`StackedMLP`) first gets gain
    sqrt(2) and bias 0. Then every submodule defining ``orthogonal_init_overrides_()``
    re-initialises its special layers (policy output 0.01, value output 1.0, ...). See
    Andrychowicz et al. 2021, "What matters in on-policy RL", and Huang et al. 2022, "The 37
    implementation details of PPO" (detail 2).
    """
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            orthogonal_(module, HIDDEN_GAIN)
        elif isinstance(module, StackedMLP):
            module.orthogonal_(HIDDEN_GAIN)
    for module in model.modules():
        hook = getattr(module, "orthogonal_init_overrides_", None)
        if hook is not None:
            hook()

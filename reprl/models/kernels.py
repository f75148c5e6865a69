"""Matrix-product kernels for linear layers on CPU: PyTorch's default (MKL) or oneDNN.

PyTorch multiplies float32 matrices on CPU with MKL. MKL picks its code path by CPU vendor,
and on AMD CPUs it runs its AVX2 kernels even where the CPU has AVX-512: on this project's
machine (AMD EPYC, Zen 5) a ``(256, 256) @ (256, 256)`` product takes ~370 us single-threaded
through MKL (~90 GFLOP/s) and ~175 us through oneDNN (also inside PyTorch, used for its
convolutions), which dispatches by instruction set. oneDNN costs ~15 us more per call and, in
a training step (caches shared with the optimizer, the replay buffer ...), measured no faster
than MKL on a 256-wide layer at batch 64, so only products of at least 8M multiply-adds take
it (a 256-wide layer at batch 128 and up, a Nature-CNN's 3136 -> 512 layer at batch 8 and up).

:func:`linear` and :func:`stacked_linear` are ``F.linear`` and ``torch.baddbmm`` with that
choice: large float32 products on CPU go through oneDNN (forward and both backward products,
with a hand-written backward), everything else (small products, other dtypes, autocast, GPU)
through PyTorch's usual kernels. :func:`set_cpu_matmul` sets the policy for the process
(the config's ``cpu_matmul``): ``auto`` uses oneDNN on x86 CPUs that have AVX-512 but are
not Intel's (where MKL's fast path is off), ``onednn`` always, ``default`` never. The choice
is deterministic (no timing), so two runs on one machine take the same kernels.
"""

from __future__ import annotations

import functools
import platform
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from reprl.errors import ConfigError

CPU_MATMUL = ("auto", "onednn", "default")
"""Valid values of :func:`set_cpu_matmul`."""

MIN_MACS = 1 << 23
"""Products of a single layer (:func:`linear`, :func:`stacked_linear`) with fewer
multiply-adds than this stay on the default kernel (measured in whole training steps: DQN
CartPole's 64 x 256 x 256 products were no faster by oneDNN through a per-layer autograd
Function, SAC Pendulum's 256 x 256 x 256 ones ~1.9x)."""

FUSED_MIN_MACS = 1 << 22
"""The same threshold for the other layers of an MLP fused into one autograd node
(:func:`mlp`), where a product's kernel costs no Python overhead of its own: 64 x 256 x 256
products take oneDNN there (~60 us against MKL's ~95 us each, measured alone)."""

SLICED_STACKS = True
"""Run stacked layers on CPU as one 2-D product per net instead of ``torch.baddbmm`` where
that is faster (see ``_use_sliced``)."""

_linear_pointwise = getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)


@functools.cache
def onednn_preferred() -> bool:
    """True on x86 CPUs with AVX-512 whose vendor is not Intel (MKL runs AVX2 code there)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return False
    vendor = next((line for line in lines if line.startswith("vendor_id")), "")
    flags = next((line for line in lines if line.startswith("flags")), "").split()
    return "GenuineIntel" not in vendor and "avx512f" in flags


def onednn_available() -> bool:
    """Whether this PyTorch build has the oneDNN linear kernel."""
    return _linear_pointwise is not None and torch.backends.mkldnn.is_available()


_enabled = onednn_available() and onednn_preferred()
"""Whether large float32 CPU products go through oneDNN (``auto`` from import on)."""


def check_cpu_matmul(mode: str) -> None:
    """Raise a ConfigError naming the valid choices if ``mode`` is not one."""
    if mode not in CPU_MATMUL:
        raise ConfigError(f"cpu_matmul: unknown '{mode}'; valid: {', '.join(CPU_MATMUL)}")


def set_cpu_matmul(mode: str) -> bool:
    """Choose the kernel of large float32 CPU products (``auto``, ``onednn`` or ``default``);
    returns whether oneDNN is now used."""
    global _enabled
    check_cpu_matmul(mode)
    if mode == "onednn" and not onednn_available():
        raise ConfigError("cpu_matmul: onednn needs a PyTorch build with oneDNN (mkldnn)")
    _enabled = mode == "onednn" or (mode == "auto" and onednn_available() and onednn_preferred())
    return _enabled


def cpu_matmul_enabled() -> bool:
    """Whether large float32 CPU products currently go through oneDNN."""
    return _enabled


def _dnn(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, relu: bool = False
) -> torch.Tensor:
    """``x (M, K) @ weight (N, K)^T [+ bias]`` [then ReLU] by oneDNN; any strides."""
    return _linear_pointwise(x, weight, bias, "relu" if relu else "none", [], "")  # type: ignore[misc]


def _plain_cpu_float32(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """float32 on CPU outside autocast and ``torch.compile`` tracing (which chooses its own
    kernels): where these kernels apply."""
    return (
        x.dtype == torch.float32
        and weight.dtype == torch.float32
        and x.device.type == "cpu"
        and not torch.is_autocast_enabled("cpu")
        and not torch.compiler.is_compiling()
    )


def _large(weight: torch.Tensor, rows: int, min_macs: int | None = None) -> bool:
    """oneDNN is on and ``rows`` rows through ``weight`` make a product it takes (at least
    ``min_macs`` multiply-adds; default :data:`MIN_MACS`)."""
    macs = rows * weight.shape[-1] * weight.shape[-2]
    return _enabled and macs >= (MIN_MACS if min_macs is None else min_macs)


def _use_dnn(x: torch.Tensor, weight: torch.Tensor, rows: int) -> bool:
    return _large(weight, rows) and _plain_cpu_float32(x, weight)


def _relu_backward(
    grad: torch.Tensor, y: torch.Tensor, out: torch.Tensor | None = None
) -> torch.Tensor:
    """Gradient through ``y = relu(z)``: ``grad`` where ``y > 0``, else 0 (written into
    ``out`` when given, which may be ``grad`` itself)."""
    if out is not None:
        return torch.ops.aten.threshold_backward.grad_input(grad, y, 0, grad_input=out)
    return torch.ops.aten.threshold_backward(grad, y, 0)


def _use_sliced(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether a stacked layer runs net by net: where oneDNN takes its products, and for
    outputs of width 1 from 128 inputs and up (a critic's Q), where ``baddbmm`` is several
    times slower than a 2-D product per net (measured 257 us against 74 us forward and
    backward for two 256 -> 1 layers at batch 256)."""
    return SLICED_STACKS and _per_net(weight, x.shape[1]) and _plain_cpu_float32(x, weight)


def _per_net(weight: torch.Tensor, rows: int) -> bool:
    """Whether a stacked layer ``weight (k, in, out)`` on ``rows`` rows is faster net by net:
    oneDNN takes its products, or its output is 1 wide from 128 inputs and up."""
    fan_in, fan_out = weight.shape[1], weight.shape[2]
    return _large(weight, rows) or (fan_out == 1 and fan_in >= 128)


class _DnnLinear(torch.autograd.Function):
    """``F.linear`` (then ReLU, fused, with ``relu``) on 2-D inputs by oneDNN, forward and
    backward."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        relu: bool,
    ) -> torch.Tensor:
        y = _dnn(x, weight, bias, relu)
        ctx.save_for_backward(x, weight, y if relu else None)
        ctx.has_bias = bias is not None  # type: ignore[attr-defined]
        return y

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        x, weight, y = ctx.saved_tensors  # type: ignore[attr-defined]
        if y is not None:
            grad = _relu_backward(grad, y)
        need_x, need_w, need_b, _ = ctx.needs_input_grad  # type: ignore[attr-defined]
        grad_x = _dnn(grad, weight.t()) if need_x else None
        grad_w = _dnn(grad.t(), x.t()) if need_w else None
        grad_b = grad.sum(0) if need_b and ctx.has_bias else None  # type: ignore[attr-defined]
        return grad_x, grad_w, grad_b, None


def linear(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, relu: bool = False
) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` (then ``torch.relu`` with ``relu``) for ``x (..., in)``,
    ``weight (out, in)``; large float32 CPU products by oneDNN when enabled
    (:func:`set_cpu_matmul`), with the ReLU fused into the product."""
    rows = x.numel() // x.shape[-1] if x.shape[-1] else 0
    if not _use_dnn(x, weight, rows):
        y = F.linear(x, weight, bias)
        return torch.relu(y) if relu else y
    out = _DnnLinear.apply(x.reshape(rows, x.shape[-1]), weight, bias, relu)
    return out.view(*x.shape[:-1], weight.shape[0])


class _SlicedStackedLinear(torch.autograd.Function):
    """``baddbmm(bias, x, weight)`` (then ReLU with ``relu``) for ``x (k, B, in)``, ``weight
    (k, in, out)``, ``bias (k, 1, out)`` as one 2-D product per net, forward and backward,
    each written into its slice of the result (oneDNN for large products when enabled, else
    ``torch.mm``)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        bias: torch.Tensor,
        x: torch.Tensor,
        weight: torch.Tensor,
        relu: bool,
    ) -> torch.Tensor:
        k, rows = x.shape[0], x.shape[1]
        y = x.new_empty(k, rows, weight.shape[2])
        for j in range(k):
            _product(x[j], weight[j], y[j], bias[j], relu)
        ctx.save_for_backward(x, weight, y if relu else None)
        return y

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        x, weight, y = ctx.saved_tensors  # type: ignore[attr-defined]
        if y is not None:
            grad = _relu_backward(grad, y)
        need_b, need_x, need_w, _ = ctx.needs_input_grad  # type: ignore[attr-defined]
        k = x.shape[0]
        grad_b = grad.sum(1, keepdim=True) if need_b else None
        grad_x = grad_w = None
        if need_x:
            grad_x = torch.empty_like(x, memory_format=torch.contiguous_format)
            for j in range(k):
                _product(grad[j], weight[j].t(), grad_x[j])
        if need_w:
            grad_w = torch.empty_like(weight, memory_format=torch.contiguous_format)
            for j in range(k):
                _product(x[j].t(), grad[j], grad_w[j])
        return grad_b, grad_x, grad_w, None


def _product(
    a: torch.Tensor,
    b: torch.Tensor,
    out: torch.Tensor,
    bias: torch.Tensor | None = None,
    relu: bool = False,
) -> None:
    """``out = a @ b [+ bias]`` [then ReLU] for 2-D ``a (M, K)``, ``b (K, N)``: oneDNN for large
    products when enabled, else MKL writing straight into ``out``."""
    if _large(b, a.shape[0]):
        out.copy_(_dnn(a, b.t(), None if bias is None else bias.view(-1), relu))
        return
    if bias is None:
        torch.mm(a, b, out=out)
    else:
        torch.addmm(bias, a, b, out=out)
    if relu:
        out.relu_()


def stacked_linear(
    bias: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, relu: bool = False
) -> torch.Tensor:
    """``torch.baddbmm(bias, x, weight)`` (``k`` linear layers on ``(k, B, in)``; then
    ``torch.relu`` with ``relu``); large float32 CPU products by oneDNN when enabled
    (:func:`set_cpu_matmul`), with the ReLU fused into the product."""
    if not _use_sliced(x, weight):
        y = torch.baddbmm(bias, x, weight)
        return torch.relu(y) if relu else y
    return _SlicedStackedLinear.apply(bias, x, weight, relu)


class Linear(nn.Linear):
    """``nn.Linear`` whose product goes through :func:`linear` (oneDNN for large float32 CPU
    products when enabled): the same parameters, names and initialisation."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., in_features) -> (..., out_features)``."""
        return linear(x, self.weight, self.bias)


# ---------------------------------------------------------------------------- whole MLPs
# A ReLU MLP as ONE autograd node: the forward runs every layer, the backward every layer's
# products, in one Python autograd Function instead of one per layer. :func:`mlp` and
# :func:`stacked_mlp` take it where the per-layer path would itself run Python Functions (a
# product that oneDNN takes, a stacked 1-wide Q layer); where every layer stays on PyTorch's
# C++ autograd (DQN CartPole's batch-64 MLP) the Function's overhead outweighs what it saves
# and they go layer by layer. Measured in whole SAC Pendulum gradient steps (in-process A/B,
# thread CPU time): ~5-8% faster than per-layer Functions; in DQN CartPole's steps a fused
# node was ~8-14% slower than C++ autograd even with oneDNN's faster products.


def _mlp_layer(
    params: tuple[torch.Tensor, ...], i: int, j: int, stacked: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Net ``j``'s layer ``i`` as ``(weight (in, out), bias (out,))`` views: stacked parameters
    are ``weight (k, in, out)``, ``bias (k, 1, out)``; plain ones ``(out, in)``, ``(out,)``."""
    weight, bias = params[2 * i], params[2 * i + 1]
    if stacked:
        return weight[j], bias[j, 0]
    return weight.t(), bias


def _mlp_forward_layer(
    h: torch.Tensor, w: torch.Tensor, b: torch.Tensor, relu: bool
) -> torch.Tensor:
    """``h (M, in) @ w (in, out) + b`` [then ReLU]: oneDNN for large products when enabled."""
    if _large(w, h.shape[0], FUSED_MIN_MACS):
        return _dnn(h, w.t(), b, relu)
    y = torch.addmm(b, h, w)
    return y.relu_() if relu else y


def _chain_forward(
    h: torch.Tensor, layers: list[tuple[torch.Tensor, torch.Tensor]], relu_last: bool
) -> list[torch.Tensor]:
    """One net's layer inputs and outputs ``[h, h1, ..., out]`` through ``layers`` given as
    :func:`_mlp_layer` views (a ReLU after each layer but the last, after the last too with
    ``relu_last``); callers that run a net every step keep its views (``fused_sac.Nets``)."""
    acts = [h]
    last = len(layers) - 1
    for i, (w, b) in enumerate(layers):
        h = _mlp_forward_layer(h, w, b, relu_last or i < last)
        acts.append(h)
    return acts


def layer_views(
    weights: list[torch.Tensor], biases: list[torch.Tensor]
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Plain layers ``weights[i] (out, in)``, ``biases[i]`` as :func:`_mlp_layer` views
    ``(weight (in, out), bias)``, to keep and run with :func:`chain` or :func:`_chain_forward`.
    They stay valid while the parameters change in place only (optimizer steps, target syncs
    and Polyak averaging, ``load_state_dict``)."""
    return [(w.t(), b) for w, b in zip(weights, biases, strict=True)]


def chain(h: torch.Tensor, layers: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """A ReLU MLP's output (no ReLU after the last layer) on ``h (M, in)`` from kept
    :func:`layer_views`, without autograd: the numbers of the MLP's own forward without
    grad mode (the same products and in-place ReLUs), without its module calls and checks.
    For acting and targets (DQN's and SAC's on plain ReLU MLP heads). Kernels as :func:`mlp`
    picks them: oneDNN's where a layer is large enough for it (and oneDNN is on), else
    PyTorch's ``addmm`` (what ``F.linear`` runs) for every layer."""
    if any(_large(w, h.shape[0]) for w, _ in layers) and _plain_cpu_float32(h, layers[0][0]):
        return _chain_forward(h, layers, False)[-1]
    last = len(layers) - 1
    for i, (w, b) in enumerate(layers):
        h = torch.addmm(b, h, w)
        if i < last:
            h = h.relu_()
    return h


def _mlp_weight_grad(g: torch.Tensor, h: torch.Tensor, big: bool, in_out: bool) -> torch.Tensor:
    """A layer's weight gradient from its output gradient ``g (M, out)`` and input ``h (M,
    in)``: ``(out, in)``, or ``(in, out)`` with ``in_out`` (stacked layout)."""
    if in_out:
        return _dnn(h.t(), g.t()) if big else torch.mm(h.t(), g)
    if big:
        return _dnn(g.t(), h.t())
    if g.shape[1] > 4 * h.shape[1]:
        # A wide layer on a narrow input (e.g. 4 -> 256): MKL's (K=M, N=in) product is ~4x
        # faster than (out, M) @ (M, in); the transposed view is copied once into .grad.
        return torch.mm(h.t(), g).t()
    return torch.mm(g.t(), h)


def _mlp_inputs(x: torch.Tensor, stacked: bool, k: int) -> list[torch.Tensor]:
    """Each net's 2-D input: plain ``x``; stacked ``x (M, in)`` shared or ``x[j]`` of ``(k, M,
    in)``."""
    if stacked and x.dim() == 3:
        return [x[j] for j in range(k)]
    return [x] * k


def _mlp_chain(
    x: torch.Tensor, params: tuple[torch.Tensor, ...], stacked: bool, relu_last: bool
) -> list[list[torch.Tensor]]:
    """Every net's layer inputs and outputs ``[x, h1, ..., out]``."""
    n = len(params) // 2
    k = params[0].shape[0] if stacked else 1
    return [
        _chain_forward(h, [_mlp_layer(params, i, j, stacked) for i in range(n)], relu_last)
        for j, h in enumerate(_mlp_inputs(x, stacked, k))
    ]


class _MLP(torch.autograd.Function):
    """A ReLU MLP (ReLU after every layer but the last; after the last too with
    ``relu_last``), or ``k`` stacked ones, forward and backward in one node."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        stacked: bool,
        relu_last: bool,
        x: torch.Tensor,
        *params: torch.Tensor,
    ) -> torch.Tensor:
        acts = _mlp_chain(x, params, stacked, relu_last)
        ctx.save_for_backward(*(a for net in acts for a in net), *params[0::2])
        ctx.meta = (stacked, relu_last, len(params) // 2, len(acts), x.dim())  # type: ignore[attr-defined]
        return torch.stack([net[-1] for net in acts]) if stacked else acts[0][-1]

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        stacked, relu_last, n, k, x_dim = ctx.meta  # type: ignore[attr-defined]
        saved = ctx.saved_tensors  # type: ignore[attr-defined]
        weights = saved[k * (n + 1) :]
        need = ctx.needs_input_grad[2:]  # type: ignore[attr-defined]
        w_grads: list[list[torch.Tensor]] = [[] for _ in range(n)]
        b_grads: list[list[torch.Tensor]] = [[] for _ in range(n)]
        x_grads = []
        for j in range(k):
            acts = saved[j * (n + 1) : (j + 1) * (n + 1)]
            g = grad[j] if stacked else grad
            for i in reversed(range(n)):
                if relu_last or i < n - 1:
                    g = _relu_backward(g, acts[i + 1])
                h = acts[i]
                w = weights[i][j].t() if stacked else weights[i]
                big = _large(w, h.shape[0], FUSED_MIN_MACS)
                if need[1 + 2 * i]:
                    w_grads[i].append(_mlp_weight_grad(g, h, big, stacked))
                if need[2 + 2 * i]:
                    b_grads[i].append(g.sum(0))
                if i > 0 or need[0]:
                    g = _dnn(g, w.t()) if big else torch.mm(g, w)
            if need[0]:
                x_grads.append(g)
        grad_x = None
        if need[0]:
            if not stacked:
                grad_x = x_grads[0]
            elif x_dim == 3:
                grad_x = torch.stack(x_grads)
            else:  # one input shared by the k nets
                grad_x = functools.reduce(torch.add, x_grads)
        out: list[torch.Tensor | None] = [None, None, grad_x]
        for i in range(n):
            for grads in (w_grads[i], b_grads[i]):
                if not grads:
                    out.append(None)
                elif stacked:
                    stack = torch.stack(grads)
                    out.append(stack.unsqueeze(1) if stack.dim() == 2 else stack)
                else:
                    out.append(grads[0])
        return tuple(out)


FUSED_MLPS = True
"""Run ReLU MLPs as one autograd node (:func:`mlp`, :func:`stacked_mlp`); False: layer by
layer (for comparisons)."""


def _needs_graph(x: torch.Tensor, params: tuple[torch.Tensor, ...]) -> bool:
    return torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in params))


def mlp(
    x: torch.Tensor,
    weights: list[torch.Tensor],
    biases: list[torch.Tensor],
    relu_last: bool = False,
) -> torch.Tensor:
    """``x (..., in)`` through linear layers ``weights[i] (out, in)``, ``biases[i] (out,)`` with
    a ReLU after each but the last (after the last too with ``relu_last``).

    float32 on CPU (outside autocast and ``torch.compile`` tracing) with a layer large
    enough for oneDNN (:data:`MIN_MACS`): one autograd node for the whole MLP, its products
    of :data:`FUSED_MIN_MACS` and up by oneDNN. Otherwise layer by layer through
    ``F.linear`` (no product there would take oneDNN). The same function and gradients
    either way."""
    rows = x.numel() // x.shape[-1] if x.shape[-1] else 0
    last = len(weights) - 1
    if not (any(_large(w, rows) for w in weights) and _plain_cpu_float32(x, weights[0])):
        # No product for oneDNN (e.g. acting on one observation): PyTorch's kernels directly,
        # without linear()'s per-layer checks (~20 us of a 3-layer MLP's ~40 us at batch 1).
        # Without grad mode the ReLU runs in place on the layer's fresh output (one tensor
        # less to write: DQN's batched phase targets, 8192 x 256 activations).
        relu = torch.relu if torch.is_grad_enabled() else torch.relu_
        for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
            x = F.linear(x, w, b)
            if relu_last or i < last:
                x = relu(x)
        return x
    if not FUSED_MLPS:
        for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
            x = linear(x, w, b, relu=relu_last or i < last)
        return x
    params = tuple(p for pair in zip(weights, biases, strict=True) for p in pair)
    h = x.reshape(rows, x.shape[-1])
    if _needs_graph(h, params):
        out = _MLP.apply(False, relu_last, h, *params)
    else:
        out = _mlp_chain(h, params, False, relu_last)[0][-1]
    return out.view(*x.shape[:-1], out.shape[-1])


def stacked_mlp(
    x: torch.Tensor,
    weights: list[torch.Tensor],
    biases: list[torch.Tensor],
    relu_last: bool = False,
) -> torch.Tensor:
    """``k`` MLPs (layer ``i``: ``weights[i] (k, in, out)``, ``biases[i] (k, 1, out)``, a ReLU
    after each layer but the last, after the last too with ``relu_last``) on ``x (B, in)``
    shared by all or ``x (k, B, in)``; returns ``(k, B, out)``.

    float32 on CPU where the per-layer path would run net by net (a layer for oneDNN, or a
    1-wide output from 128 inputs and up, see :func:`stacked_linear`): one autograd node for
    all nets and layers (see :func:`mlp`); otherwise one :func:`stacked_linear` per layer."""
    rows = x.shape[-2]
    if not (
        FUSED_MLPS and _plain_cpu_float32(x, weights[0]) and any(_per_net(w, rows) for w in weights)
    ):
        k = weights[0].shape[0]
        h = x.expand(k, *x.shape) if x.dim() == 2 else x
        for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
            h = stacked_linear(b, h, w, relu=relu_last or i < len(weights) - 1)
        return h
    params = tuple(p for pair in zip(weights, biases, strict=True) for p in pair)
    if _needs_graph(x, params):
        return _MLP.apply(True, relu_last, x, *params)
    return torch.stack([net[-1] for net in _mlp_chain(x, params, True, relu_last)])

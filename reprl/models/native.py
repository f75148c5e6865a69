"""C kernels for CPU hot paths, compiled at first use (``reprl/csrc/kernels.c``).

A small ReLU MLP learned on a CPU (SAC's actor and critics, DQN's Q head) spends much of its
step outside the large matrix products: narrow first layers, ReLUs, bias copies and sums,
1- or 2-wide heads, each a PyTorch op with its own pass over the activations and its own
Python. :class:`MLP` runs a whole forward or backward pass as one C call: those parts as
vectorised loops, one pass each, and the products between by the BLAS ``sgemm_`` PyTorch's
own CPU library carries (MKL on x86 builds; its address is handed to the C side at load),
so the products are the ones ``torch.mm`` runs. SAC's tanh-Gaussian sample and its backward
are one C pass each. The single-pass kernels are also callable alone (:func:`narrow_forward`,
:func:`relu_head`, :func:`head_backward`, :func:`relu_narrow_backward`), and tested so.

The source is compiled once per machine with the C compiler found (``$CC``, ``cc`` or
``gcc``; -O3 -march=native) into ``$REPRL_CACHE`` (default ``~/.cache/reprl``), keyed by the
source, the flags and the CPU's feature flags, and loaded with ``ctypes`` (which releases the
GIL: ``SACConfig.parallel_actor``'s two threads run kernels at once). Without a compiler, or
with ``REPRL_NATIVE=0``, :func:`library` returns None and callers keep their PyTorch ops;
without a BLAS in the PyTorch build :class:`MLP` does not fit. The results agree with
PyTorch's to float32 rounding (the C loops sum in another order).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shlex
import shutil
import subprocess
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from reprl.models import kernels

log = logging.getLogger(__name__)

FLAGS = ["-O3", "-march=native", "-fno-trapping-math", "-shared", "-fPIC"]
"""Compiler flags (``-fno-trapping-math`` lets the ReLU's select vectorize)."""

ENABLED = os.environ.get("REPRL_NATIVE", "1") != "0"
"""Use the kernels where they apply (False: PyTorch ops only, for A/B comparisons)."""


def _cpu_flags() -> str:
    """The CPU's feature flags (what ``-march=native`` compiles for)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor()


_P, _I, _F = ctypes.c_void_p, ctypes.c_int, ctypes.c_float
_SIGNATURES: dict[str, tuple[list[Any], Any]] = {
    "reprl_narrow_forward": ([_P, _I, _I, _P, _I, _I, _P, _I, _P, _P, _I, _I, _I], _I),
    "reprl_relu_head": ([_P, _P, _I, _I, _P, _P, _P, _I, _I], None),
    "reprl_head_backward": ([_P, _I, _I, _P, _P, _P, _P, _I, _I, _P, _P, _P], None),
    "reprl_relu_narrow_backward": (
        [_P, _I, _P, _P, _I, _I, _P, _I, _I, _P, _I, _I, _P, _I, _P, _P, _I, _I, _P, _I],
        _I,
    ),
    "reprl_squashed_gaussian": ([_P, _I, _P, _F, _F, _P, _P, _P, _I, _I], None),
    "reprl_set_sgemm": ([_P], None),
    "reprl_sac_target": ([_P, _I, _I, _P, _P, _P, _F, _P, _I], None),
    "reprl_sac_critic_grad": ([_P, _I, _P, _P, _P, _I], _F),
    "reprl_sac_actor_loss": ([_P, _I, _I, _P, _F, _P, _P, _P, _I], _F),
    "reprl_mlp_forward": ([_P, _P, _I, _I, _P, _I, _I, _I, _P, _P, _I], _I),
    "reprl_mlp_backward": (
        [_P, _P, _I, _P, _I, _P, _I, _P, _I, _I, _P, _I, _I, _P, _P, _P, _I, _I, _I],
        _I,
    ),
    "reprl_squashed_gaussian_backward": ([_P] * 5 + [_I, _F, _F, _F, _P, _I, _I], None),
}
"""Each kernel's argument and result types (``ctypes``)."""


def _declare(lib: ctypes.CDLL) -> None:
    """Give the library's functions their :data:`_SIGNATURES`, and the MLP kernels the BLAS
    ``sgemm_`` that PyTorch's CPU products call (:func:`_torch_sgemm`)."""
    for name, (args, result) in _SIGNATURES.items():
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = args, result
    lib.reprl_set_sgemm(_torch_sgemm())


@functools.cache
def _torch_sgemm() -> int | None:
    """The address of the Fortran BLAS ``sgemm_`` inside PyTorch's CPU library (MKL's on x86
    builds), or None where this build has none."""
    for name in ("libtorch_cpu.so", "libtorch_cpu.dylib"):
        path = Path(torch.__file__).parent / "lib" / name
        if path.exists():
            try:
                return ctypes.cast(ctypes.CDLL(str(path)).sgemm_, ctypes.c_void_p).value
            except (OSError, AttributeError):
                return None
    return None


def has_sgemm() -> bool:
    """Whether the whole-MLP kernels (:class:`MLP`) can run: compiled, with a BLAS."""
    return available() and _torch_sgemm() is not None


@functools.cache
def library() -> ctypes.CDLL | None:
    """The compiled kernels (compiled on first use), or None where no compiler works."""
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not compiler or platform.system() == "Windows":
        return None
    source = (resources.files("reprl") / "csrc" / "kernels.c").read_bytes()
    key = hashlib.sha256(b"\0".join([source, " ".join(FLAGS).encode(), _cpu_flags().encode()]))
    cache = Path(os.environ.get("REPRL_CACHE") or Path.home() / ".cache" / "reprl")
    path = cache / f"kernels-{key.hexdigest()[:16]}.so"
    if not path.exists():
        try:
            cache.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=cache) as tmp:
                src = Path(tmp) / "kernels.c"
                src.write_bytes(source)
                out = Path(tmp) / path.name
                subprocess.run(
                    [*shlex.split(compiler), *FLAGS, "-o", str(out), str(src), "-lm"],
                    check=True,
                    capture_output=True,
                    timeout=120,
                )
                os.replace(out, path)  # atomic: parallel runs never load half a file
        except (OSError, subprocess.SubprocessError) as exc:
            log.warning("reprl: C kernels not compiled (%s); using PyTorch ops", exc)
            return None
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as exc:  # e.g. a cache shared with another machine kind
        log.warning("reprl: C kernels not loaded (%s); using PyTorch ops", exc)
        return None
    _declare(lib)
    return lib


def available() -> bool:
    """Whether the kernels are enabled and compiled."""
    return ENABLED and library() is not None


def squashed_gaussian(
    out: torch.Tensor, eps: torch.Tensor, log_std_min: float, log_std_max: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """SAC's tanh-Gaussian sample ``(tanh(u), log pi, std)`` from the actor's output
    ``out (B, 2A)`` (means, then raw log-stds clamped to the bounds) and noise ``eps (B, A)``,
    as :func:`reprl.models.actor_q.squashed_gaussian` computes it, in one pass. Contiguous
    float32 CPU tensors only (callers check); :func:`library` must not be None."""
    lib = library()
    assert lib is not None
    rows, dim = eps.shape
    action, std = torch.empty_like(eps), torch.empty_like(eps)
    log_prob = eps.new_empty(rows)
    lib.reprl_squashed_gaussian(
        out.data_ptr(), out.shape[1], eps.data_ptr(), log_std_min, log_std_max,
        action.data_ptr(), std.data_ptr(), log_prob.data_ptr(), rows, dim,
    )  # fmt: skip
    return action, log_prob, std


NARROW = 16
"""The widest input :func:`narrow_forward` and :func:`relu_narrow_backward` take."""


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _cols(x: torch.Tensor | None) -> torch.Tensor | None:
    """A 2-D input with contiguous columns (itself, or a copy)."""
    return x if x is None or x.shape[1] <= 1 or x.stride(1) == 1 else x.contiguous()


def _rows(x: torch.Tensor | None) -> tuple[int | None, int, int]:
    """``(pointer, row stride, columns)`` of a 2-D input whose columns are contiguous
    (:func:`_cols`)."""
    if x is None:
        return None, 0, 0
    return x.data_ptr(), x.stride(0), x.shape[1]


def _check(status: int) -> None:
    if status == -1:
        raise MemoryError("reprl: a C kernel could not allocate its scratch memory")
    if status != 0:
        raise RuntimeError(f"reprl: a C kernel failed (status {status})")


def narrow_forward(
    x1: torch.Tensor,
    x2: torch.Tensor | None,
    w: torch.Tensor,
    b: torch.Tensor,
    relu: bool,
) -> torch.Tensor:
    """A dense layer on a narrow input, ``[relu](cat([x1, x2], -1) @ w + b)`` in one pass
    without the concatenation: ``x1 (B, K1)``, ``x2 (B, K2)`` (or None) with contiguous
    columns, ``K1 + K2 <= NARROW``; ``w (K, H)`` as a contiguous tensor or as the transposed
    view of a contiguous ``(H, K)`` one (``nn.Linear``'s layout); ``b (H,)`` contiguous."""
    lib = library()
    assert lib is not None
    out = x1.new_empty(x1.shape[0], w.shape[1])
    x1, x2 = _cols(x1), _cols(x2)
    p1, ld1, k1 = _rows(x1)
    p2, ld2, k2 = _rows(x2)
    _check(
        lib.reprl_narrow_forward(
            p1, ld1, k1, p2, ld2, k2, w.data_ptr(), int(not w.is_contiguous()),
            b.data_ptr(), out.data_ptr(), out.shape[0], out.shape[1], int(relu),
        )
    )  # fmt: skip
    return out


def relu_head(
    h: torch.Tensor, w: torch.Tensor, b: torch.Tensor, hidden_bias: torch.Tensor | None = None
) -> torch.Tensor:
    """``h = relu(h [+ hidden_bias])`` in place on ``h (B, H)`` (contiguous), then a narrow
    output layer on it: returns ``h @ w^T + b`` ``(B, M)`` for ``w (M, H)``, ``b (M,)``,
    ``hidden_bias (H,)`` contiguous, ``M <= 8``."""
    lib = library()
    assert lib is not None
    rows, width = h.shape
    outs = w.shape[0]
    out = h.new_empty(rows, outs)
    lib.reprl_relu_head(
        h.data_ptr(), _ptr(hidden_bias), rows, width, w.data_ptr(), b.data_ptr(),
        out.data_ptr(), outs, outs,
    )  # fmt: skip
    return out


def head_backward(
    g: torch.Tensor,
    w: torch.Tensor,
    h: torch.Tensor,
    idx: torch.Tensor | None = None,
    dw: torch.Tensor | None = None,
    db_h: torch.Tensor | None = None,
    db_out: torch.Tensor | None = None,
) -> torch.Tensor:
    """The backward of a narrow output layer ``y = h @ w^T + b`` (``w (M, H)``, ``M <= 8``) and
    of the ReLU that made ``h``, from ``g = dL/dy (R, M)`` (contiguous columns; rows of ``h``
    are ``h[idx]`` with an int64 ``idx (R,)``): returns ``dL/d(pre-ReLU) (R, H)`` and writes,
    where given, ``dw (M, H)`` = dL/dw, ``db_h (H,)`` = the hidden layer's bias gradient and
    ``db_out (M,)`` = dL/db. Contiguous float32 CPU tensors otherwise (callers check)."""
    lib = library()
    assert lib is not None
    rows, outs = g.shape
    gh = h.new_empty(rows, h.shape[1])
    lib.reprl_head_backward(
        g.data_ptr(), g.stride(0), outs, w.data_ptr(), h.data_ptr(), _ptr(idx), gh.data_ptr(),
        rows, h.shape[1], _ptr(dw), _ptr(db_h), _ptr(db_out),
    )  # fmt: skip
    return gh


def relu_narrow_backward(
    g: torch.Tensor,
    h: torch.Tensor,
    x1: torch.Tensor,
    x2: torch.Tensor | None,
    idx: torch.Tensor | None = None,
    dw: torch.Tensor | None = None,
    db: torch.Tensor | None = None,
    w: torch.Tensor | None = None,
    kfrom: int = 0,
    dx: torch.Tensor | None = None,
) -> None:
    """The backward of a narrow first layer ``y = cat([x1, x2], -1) @ W + b`` and of the ReLU
    after it (``h = relu(y)``), from ``g = dL/dh (R, H)`` (contiguous columns; rows of ``h``,
    ``x1`` and ``x2`` are those of an int64 ``idx (R,)`` where given). Writes, where given:
    ``dw`` = dL/dW ``(K, H)`` (a contiguous tensor, or the transposed view of a contiguous
    ``(H, K)`` one, ``nn.Linear``'s layout, filled as such); ``db (H,)`` = dL/db; and adds to
    ``dx (B, C)`` (row ``idx[r]`` or ``r``) the gradient of input columns
    ``[kfrom, kfrom + C)`` through ``w (K, H)`` (contiguous)."""
    lib = library()
    assert lib is not None
    x1, x2 = _cols(x1), _cols(x2)
    p1, ld1, k1 = _rows(x1)
    p2, ld2, k2 = _rows(x2)
    dw_t = dw is not None and not dw.is_contiguous()
    _check(
        lib.reprl_relu_narrow_backward(
            g.data_ptr(), g.stride(0), h.data_ptr(), _ptr(idx), g.shape[0], h.shape[1],
            p1, ld1, k1, p2, ld2, k2, _ptr(dw), int(dw_t), _ptr(db),
            _ptr(w), kfrom, 0 if dx is None else dx.shape[1], _ptr(dx),
            0 if dx is None else dx.stride(0),
        )
    )  # fmt: skip


def _outputs(qs: list[torch.Tensor]) -> tuple[Any, int]:
    """A C array of the first columns' addresses of outputs ``(B, M)`` (contiguous, one
    shape), and their row stride."""
    return (ctypes.c_void_p * len(qs))(*(q.data_ptr() for q in qs)), qs[0].stride(0)


def sac_target(
    next_q: list[torch.Tensor],
    next_log_prob: torch.Tensor,
    returns: torch.Tensor,
    discount: torch.Tensor,
    alpha: float,
) -> torch.Tensor:
    """SAC's critic target ``returns + discount (min_j next_q_j[:, 0] - alpha next_log_prob)``
    ``(B,)`` from the target critics' outputs ``(B, 1)`` (contiguous float32 CPU tensors)."""
    lib = library()
    assert lib is not None
    y = returns.new_empty(returns.shape[0])
    returns, discount = returns.contiguous(), discount.contiguous()
    next_log_prob = next_log_prob.contiguous()
    qs, ld = _outputs(next_q)
    lib.reprl_sac_target(
        qs, len(next_q), ld, next_log_prob.data_ptr(), returns.data_ptr(), discount.data_ptr(),
        alpha, y.data_ptr(), y.shape[0],
    )  # fmt: skip
    return y


def sac_critic_grad(q: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, float, float]:
    """One critic's part of SAC's critic loss from its outputs ``q (B, 1)`` and the target
    ``y (B,)``: ``(dL/dq (B,) of 0.5 mean (q - y)^2, mean (q - y)^2, mean q)``."""
    lib = library()
    assert lib is not None and y.is_contiguous()
    g = y.new_empty(y.shape[0])
    q_mean = ctypes.c_float()
    mse = lib.reprl_sac_critic_grad(
        q.data_ptr(), q.stride(0), y.data_ptr(), g.data_ptr(), ctypes.byref(q_mean), y.shape[0]
    )
    return g, mse, q_mean.value


def sac_actor_loss(
    q: list[torch.Tensor], log_prob: torch.Tensor, alpha: float
) -> tuple[float, list[torch.Tensor], float]:
    """SAC's actor loss ``mean(alpha log_prob - min_j q_j[:, 0])`` from the critics' outputs
    ``(B, 1)`` on the actor's actions: ``(loss, each critic's rows where it is the minimum
    (int64, the first on ties as torch.min), mean log_prob)``."""
    lib = library()
    assert lib is not None and len(q) <= 64
    log_prob = log_prob.contiguous()
    rows = log_prob.shape[0]
    rows_of = torch.empty(rows, dtype=torch.int64)
    count = torch.empty(len(q), dtype=torch.int64)
    mean_lp = ctypes.c_float()
    qs, ld = _outputs(q)
    loss = lib.reprl_sac_actor_loss(
        qs, len(q), ld, log_prob.data_ptr(), alpha, rows_of.data_ptr(), count.data_ptr(),
        ctypes.byref(mean_lp), rows,
    )  # fmt: skip
    return loss, list(rows_of.split(count.tolist())), mean_lp.value


def squashed_gaussian_backward(
    grad_a: torch.Tensor,
    action: torch.Tensor,
    std: torch.Tensor,
    eps: torch.Tensor,
    out: torch.Tensor,
    log_std_min: float,
    log_std_max: float,
    c: float,
) -> torch.Tensor:
    """The gradient ``(B, 2A)`` into the actor's output ``out`` (means, raw log-stds) of
    ``L = mean_i (alpha log pi_i - Q_i)`` through :func:`squashed_gaussian`'s sample, from
    ``grad_a = dL/da~ (B, A)`` (the critics' part) and ``c = alpha / B``: ``du = grad_a (1 -
    a~^2) + 2 c a~`` for the means, ``du std eps - c`` for the log-stds where their clamp is
    not active (else 0). Contiguous float32 CPU tensors (callers check)."""
    lib = library()
    assert lib is not None
    rows, dim = grad_a.shape
    g = grad_a.new_empty(rows, 2 * dim)
    lib.reprl_squashed_gaussian_backward(
        grad_a.data_ptr(), action.data_ptr(), std.data_ptr(), eps.data_ptr(), out.data_ptr(),
        out.stride(0), log_std_min, log_std_max, c, g.data_ptr(), rows, dim,
    )  # fmt: skip
    return g


MAX_LAYERS = 8
"""The deepest MLP :class:`MLP` takes (``REPRL_MAX_LAYERS`` in the C source)."""


_KEPT = 16
"""How many :meth:`MLP.of` keeps (the oldest made goes first)."""
_kept: dict[tuple, MLP] = {}


class _MLPStruct(ctypes.Structure):
    _fields_ = [
        ("layers", ctypes.c_int),
        ("width", ctypes.c_int * (MAX_LAYERS + 1)),
        ("w", ctypes.c_void_p * MAX_LAYERS),
        ("w_t", ctypes.c_int * MAX_LAYERS),
        ("b", ctypes.c_void_p * MAX_LAYERS),
    ]


class MLP:
    """A ReLU MLP's forward and backward as one C call each (``reprl_mlp_forward`` and
    ``reprl_mlp_backward``): the narrow first layer and the head by the kernels above, the
    products between by the BLAS ``sgemm_`` PyTorch calls. Built once from a net's kept
    :func:`reprl.models.kernels.layer_views` (the parameters' addresses: valid while they
    change in place only); :meth:`MLP.fits` must hold."""

    def __init__(self, layers: list[tuple[torch.Tensor, torch.Tensor]]):
        self.widths = [layers[0][0].shape[0]] + [w.shape[1] for w, _ in layers]
        self.hidden = sum(self.widths[1:-1])
        self.outputs = self.widths[-1]
        net = _MLPStruct()
        net.layers = len(layers)
        for i, width in enumerate(self.widths):
            net.width[i] = width
        for i, (w, b) in enumerate(layers):
            net.w_t[i] = int(not w.is_contiguous())  # (in, out) views of (out, in) weights
            net.w[i] = w.data_ptr()
            net.b[i] = b.data_ptr()
        self._net = net
        self._ref = ctypes.byref(net)

    @classmethod
    def of(
        cls, weights: list[torch.Tensor], biases: list[torch.Tensor], x: torch.Tensor
    ) -> MLP | None:
        """The MLP of ``nn.Linear``-layout ``weights (out, in)`` and ``biases`` to run on
        ``x (B, D)``, made once per parameter set (keyed by address and shape; up to
        :data:`_KEPT` kept); None where the kernels are off, ``x`` is not 2-D float32 or the
        net does not fit (PyTorch ops then)."""
        if not (available() and x.dtype == torch.float32 and x.dim() == 2):
            return None
        key = tuple((t.data_ptr(), t.shape) for t in (*weights, *biases))
        mlp = _kept.get(key)
        if mlp is None:
            layers = kernels.layer_views(weights, biases)
            if not cls.fits(layers):
                return None
            if len(_kept) >= _KEPT:
                _kept.pop(next(iter(_kept)))
            mlp = _kept[key] = cls(layers)
        return mlp

    @staticmethod
    def fits(layers: list[tuple[torch.Tensor, torch.Tensor]]) -> bool:
        """Whether :class:`MLP` takes a ReLU MLP given as
        :func:`reprl.models.kernels.layer_views`: 2 to :data:`MAX_LAYERS` layers, a first
        layer of at most :data:`NARROW` inputs, at most 8 outputs with the last weight
        readable as ``(M, H)``, contiguous weights (either layout) and biases, a BLAS found."""
        return (
            1 < len(layers) <= MAX_LAYERS
            and layers[0][0].shape[0] <= NARROW
            and layers[-1][0].shape[1] <= 8
            and layers[-1][0].t().is_contiguous()
            and all(w.is_contiguous() or w.t().is_contiguous() for w, _ in layers)
            and all(b.is_contiguous() for _, b in layers)
            and has_sgemm()
        )

    def forward(
        self, x1: torch.Tensor, x2: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(outputs (B, M), workspace)`` on ``cat([x1, x2], -1)`` (float32, contiguous
        columns): the workspace keeps the hidden layers' outputs for :meth:`backward`."""
        lib = library()
        assert lib is not None
        x1, x2 = _cols(x1), _cols(x2)
        p1, ld1, k1 = _rows(x1)
        p2, ld2, k2 = _rows(x2)
        rows = x1.shape[0]
        ws = x1.new_empty(rows * self.hidden)
        out = x1.new_empty(rows, self.outputs)
        _check(
            lib.reprl_mlp_forward(
                self._ref, p1, ld1, k1, p2, ld2, k2, rows, ws.data_ptr(), out.data_ptr(),
                self.outputs,
            )
        )  # fmt: skip
        return out, ws

    def backward(
        self,
        ws: torch.Tensor,
        g: torch.Tensor,
        x1: torch.Tensor,
        x2: torch.Tensor | None = None,
        idx: torch.Tensor | None = None,
        dw: list[int] | None = None,
        db: list[int] | None = None,
        dx: torch.Tensor | None = None,
        kfrom: int = 0,
    ) -> None:
        """The backward of :meth:`forward` (its inputs ``x1``, ``x2`` and workspace ``ws``)
        from ``g = dL/doutputs (R, M)`` (contiguous columns; rows of the forward's batch
        picked by an int64 ``idx (R,)`` where given). ``dw``, ``db``: the addresses to write
        each layer's weight gradient (in the weight's layout) and bias gradient to (None: not
        computed; not with ``idx``); ``dx (B, C)``: gets the gradient of input columns
        ``[kfrom, kfrom + C)`` added (row ``idx[r]`` or ``r``)."""
        lib = library()
        assert lib is not None
        x1, x2 = _cols(x1), _cols(x2)
        p1, ld1, k1 = _rows(x1)
        p2, ld2, k2 = _rows(x2)
        arrays = [None if a is None else (ctypes.c_void_p * len(a))(*a) for a in (dw, db)]
        _check(
            lib.reprl_mlp_backward(
                self._ref, g.data_ptr(), g.stride(0), _ptr(idx), g.shape[0], ws.data_ptr(),
                x1.shape[0], p1, ld1, k1, p2, ld2, k2, arrays[0], arrays[1], _ptr(dx),
                0 if dx is None else dx.stride(0), kfrom, 0 if dx is None else dx.shape[1],
            )
        )  # fmt: skip


def addresses(tensors: list[torch.Tensor], j: int | None = None) -> list[int]:
    """Each tensor's address, or that of its slice ``[j]`` (stacked nets' gradients)."""
    if j is None:
        return [t.data_ptr() for t in tensors]
    return [t.data_ptr() + j * t.stride(0) * t.element_size() for t in tensors]

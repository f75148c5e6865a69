"""C kernels for CPU hot paths, compiled at first use (``reprl/csrc/kernels.c``).

Where PyTorch needs several passes over the same activations (SAC's critic heads: a product,
a broadcast multiply, the ReLU's backward and two sums), one C loop does them in one pass:
~20-30 us instead of ~110-160 us for a 256 x 256 activation on a Zen 3 core; SAC's
tanh-Gaussian sample and log-probability are one C loop instead of ~17 small ops. The source is
compiled once per machine with the C compiler found (``$CC``, ``cc`` or ``gcc``; -O3
-march=native) into ``$REPRL_CACHE`` (default ``~/.cache/reprl``), keyed by the source, the
flags and the CPU's feature flags, and loaded with ``ctypes``. Without a compiler, or with
``REPRL_NATIVE=0``, :func:`library` returns None and callers keep their PyTorch ops (the
results agree to float32 rounding: the sums run in another order).
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

import torch

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
    fn = lib.reprl_q_head_backward
    fn.argtypes = [ctypes.c_void_p] * 6 + [ctypes.c_int] * 2
    fn.restype = ctypes.c_float
    fn = lib.reprl_squashed_gaussian
    fn.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_float, ctypes.c_float]
    fn.argtypes += [ctypes.c_void_p] * 3 + [ctypes.c_int] * 2
    fn.restype = None
    return lib


def available() -> bool:
    """Whether the kernels are enabled and compiled."""
    return ENABLED and library() is not None


def q_head_backward(
    g: torch.Tensor, w: torch.Tensor, h: torch.Tensor, dw: torch.Tensor, db: torch.Tensor
) -> tuple[torch.Tensor, float]:
    """The backward of a 1-wide output layer ``q = h @ w + b`` and of the ReLU that made
    ``h (B, H)``, from ``g = dL/dq (B,)``: returns ``(dL/d(pre-ReLU) (B, H), dL/db)`` and
    writes ``dL/dw`` into ``dw`` (``H`` elements) and the hidden layer's bias gradient (the
    column sums of the first result) into ``db``. Contiguous float32 CPU tensors only
    (callers check); :func:`library` must not be None."""
    lib = library()
    assert lib is not None
    gh = torch.empty_like(h)
    rows, width = h.shape
    ptrs = (t.data_ptr() for t in (g, w, h, gh, dw, db))
    return gh, lib.reprl_q_head_backward(*ptrs, rows, width)


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

"""The C kernels (reprl.models.native): each against the PyTorch ops it replaces, SAC's step
with and without them against autograd, compiled once into the cache, and PyTorch ops when
no compiler works."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch

from reprl.agents import fused_sac
from reprl.models import native
from reprl.models.actor_q import squashed_gaussian
from tests.test_fused_sac import losses_and_grads, perturb_target, sac, windows

needs_native = pytest.mark.skipif(native.library() is None, reason="no C compiler here")


@pytest.fixture
def fresh_library(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """An empty kernel cache; the usual library again afterwards."""
    monkeypatch.setenv("REPRL_CACHE", str(tmp_path))
    native.library.cache_clear()
    yield tmp_path
    native.library.cache_clear()


@needs_native
@pytest.mark.parametrize("rows, width", [(256, 256), (7, 33), (1, 1)])
def test_q_head_backward_equals_torch(rows: int, width: int) -> None:
    gen = torch.Generator().manual_seed(rows)
    g = torch.randn(rows, generator=gen)
    w = torch.randn(width, 1, generator=gen)
    h = torch.randn(rows, width, generator=gen).relu_()  # a ReLU's output: zeros included
    dw, db = torch.empty(width, 1), torch.empty(1, width)
    gh, db_out = native.q_head_backward(g, w, h, dw, db)
    ref = (g[:, None] * w.view(1, -1)) * (h > 0)
    torch.testing.assert_close(gh, ref)
    torch.testing.assert_close(dw, h.t() @ g[:, None], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(db, ref.sum(0, keepdim=True), rtol=1e-5, atol=1e-5)
    assert db_out == pytest.approx(g.sum().item(), rel=1e-5, abs=1e-5)


@needs_native
@pytest.mark.parametrize("dim", [1, 3])
def test_squashed_gaussian_equals_torch(dim: int) -> None:
    gen = torch.Generator().manual_seed(dim)
    out = torch.randn(64, 2 * dim, generator=gen) * 4  # log-stds beyond both bounds
    out[0, 0] = 30.0  # |u| large: softplus(-2u) in its linear part, tanh saturated
    out[1, 0] = -30.0
    eps = torch.randn(64, dim, generator=gen)
    action, log_prob, std = native.squashed_gaussian(out, eps, -5.0, 2.0)
    mean, raw = out.chunk(2, dim=-1)
    ref = squashed_gaussian(mean, raw.clamp(-5.0, 2.0), eps)
    torch.testing.assert_close(action, ref[0])
    torch.testing.assert_close(log_prob, ref[1], rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(std, ref[2])


@needs_native
@pytest.mark.parametrize("enabled", [True, False])
def test_sac_step_with_and_without_kernels_equals_autograd(enabled: bool, monkeypatch) -> None:
    monkeypatch.setattr(native, "ENABLED", enabled)
    agent = sac([])
    perturb_target(agent)
    mb = windows(agent)
    losses, _, grads = losses_and_grads(agent, mb, True, None)
    ref_losses, _, ref_grads = losses_and_grads(agent, mb, False, None)
    for k in ref_losses:
        torch.testing.assert_close(losses[k], ref_losses[k], rtol=1e-5, atol=1e-6)
    for a, b in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@needs_native
def test_compiled_once_then_loaded_from_the_cache(fresh_library: Path, monkeypatch) -> None:
    assert native.library() is not None
    (built,) = fresh_library.glob("kernels-*.so")
    native.library.cache_clear()

    def no_compiler(*args, **kwargs):
        raise AssertionError("compiled again")

    monkeypatch.setattr(subprocess, "run", no_compiler)
    assert native.library() is not None
    assert list(fresh_library.glob("kernels-*.so")) == [built]


def test_without_a_compiler_sac_uses_pytorch_ops(fresh_library: Path, monkeypatch, caplog) -> None:
    monkeypatch.setenv("CC", str(fresh_library / "no-such-compiler"))
    assert native.library() is None and not native.available()
    assert "C kernels not compiled" in caplog.text
    agent = sac([])
    losses, _, grads = losses_and_grads(agent, windows(agent), True, None)
    ref_losses, _, ref_grads = losses_and_grads(agent, windows(agent), False, None)
    for a, b in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    assert fused_sac.FUSED_SAC

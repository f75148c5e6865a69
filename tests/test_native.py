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


SHAPES = [(256, 256), (7, 33), (1, 1), (5, 40)]
"""(rows, width): full 32-column blocks, 8-column blocks with a scalar tail, one column."""


def _relu_out(rows: int, width: int, gen: torch.Generator) -> torch.Tensor:
    """A ReLU's output: zeros included."""
    return torch.randn(rows, width, generator=gen).relu_()


def close(a: torch.Tensor, b: torch.Tensor) -> None:
    """Equal up to float32 rounding (the C loops sum in another order than PyTorch's)."""
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@needs_native
@pytest.mark.parametrize("rows, width", SHAPES)
@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("k2", [0, 1])
def test_narrow_forward_equals_torch(rows: int, width: int, relu: bool, k2: int) -> None:
    gen = torch.Generator().manual_seed(rows * width)
    x1 = torch.randn(rows, 5, generator=gen)[:, 1:4]  # a column slice: row stride 5
    x2 = torch.randn(rows, k2, generator=gen) if k2 else None
    x = x1 if x2 is None else torch.cat([x1, x2], -1)
    b = torch.randn(width, generator=gen)
    w = torch.randn(x.shape[1], width, generator=gen)  # (K, H)
    w_linear = torch.randn(width, x.shape[1], generator=gen)  # nn.Linear's (H, K)
    for weight in (w, w_linear.t()):
        ref = torch.addmm(b, x, weight)
        ref = ref.relu() if relu else ref
        close(native.narrow_forward(x1, x2, weight, b, relu), ref)


@needs_native
@pytest.mark.parametrize("rows, width", SHAPES)
@pytest.mark.parametrize("outs", [1, 2, 3])
@pytest.mark.parametrize("with_bias", [False, True])
def test_relu_head_equals_torch(rows: int, width: int, outs: int, with_bias: bool) -> None:
    gen = torch.Generator().manual_seed(rows + outs)
    pre = torch.randn(rows, width, generator=gen)
    pre[0, 0] = float("nan")  # kept, as torch.relu keeps it
    w, b = torch.randn(outs, width, generator=gen), torch.randn(outs, generator=gen)
    bias = torch.randn(width, generator=gen) if with_bias else None
    hidden = (pre + bias if with_bias else pre).relu()
    h = pre.clone()
    out = native.relu_head(h, w, b, bias)
    torch.testing.assert_close(h, hidden, equal_nan=True)
    close(out[1:], torch.addmm(b, hidden, w.t())[1:])
    assert out[0].isnan().all()


@needs_native
@pytest.mark.parametrize("rows, width", SHAPES)
@pytest.mark.parametrize("outs", [1, 2, 3])
@pytest.mark.parametrize("select", [False, True])
def test_head_backward_equals_torch(rows: int, width: int, outs: int, select: bool) -> None:
    gen = torch.Generator().manual_seed(rows * outs)
    g_all = torch.randn(rows, outs + 1, generator=gen)[:, :outs]  # row stride outs + 1
    w = torch.randn(outs, width, generator=gen)
    h_all = _relu_out(rows + 3, width, gen)
    idx = torch.randperm(rows + 3, generator=gen)[:rows] if select else None
    h = h_all[idx] if select else h_all[:rows]
    dw, db_h, db_out = torch.empty(outs, width), torch.empty(width), torch.empty(outs)
    gh = native.head_backward(
        g_all, w, h_all if select else h, idx, dw=dw, db_h=db_h, db_out=db_out
    )
    ref = torch.ops.aten.threshold_backward(g_all @ w, h, 0)
    close(gh, ref)
    close(dw, g_all.t() @ h)
    close(db_h, ref.sum(0))
    close(db_out, g_all.sum(0))
    # the outputs not asked for are skipped
    close(native.head_backward(g_all, w, h_all if select else h, idx), ref)


@needs_native
@pytest.mark.parametrize("rows, width", SHAPES)
@pytest.mark.parametrize("select", [False, True])
@pytest.mark.parametrize("linear_layout", [False, True])
def test_relu_narrow_backward_equals_torch(
    rows: int, width: int, select: bool, linear_layout: bool
) -> None:
    gen = torch.Generator().manual_seed(rows * width + select)
    total = rows + 2
    x1 = torch.randn(total, 3, generator=gen)
    x2 = torch.randn(total, 1, generator=gen)
    h = _relu_out(total, width, gen)
    g = torch.randn(rows, width, generator=gen)
    w = torch.randn(4, width, generator=gen)
    idx = torch.randperm(total, generator=gen)[:rows] if select else None
    rows_of = (lambda t: t[idx]) if select else (lambda t: t[:rows])
    gm = torch.ops.aten.threshold_backward(g, rows_of(h), 0)
    x = torch.cat([rows_of(x1), rows_of(x2)], -1)
    dw = torch.empty(width, 4).t() if linear_layout else torch.empty(4, width)
    db = torch.empty(width)
    dx = torch.full((total, 1), 0.5)  # added to
    native.relu_narrow_backward(
        g, h if select else h[:rows], x1 if select else x1[:rows], x2 if select else x2[:rows],
        idx, dw=dw, db=db, w=w, kfrom=3, dx=dx,
    )  # fmt: skip
    close(dw, x.t() @ gm)
    close(db, gm.sum(0))
    ref_dx = torch.full((total, 1), 0.5)
    ref_dx[idx if select else slice(0, rows)] += gm @ w[3:].t()
    close(dx, ref_dx)


@needs_native
def test_squashed_gaussian_backward_equals_autograd() -> None:
    gen = torch.Generator().manual_seed(0)
    rows, dim, lo, hi, alpha = 64, 2, -5.0, 2.0, 0.3
    out = (torch.randn(rows, 2 * dim, generator=gen) * 4).requires_grad_()
    eps = torch.randn(rows, dim, generator=gen)
    q_grad = torch.randn(rows, dim, generator=gen)  # dL/da~ from the critics
    mean, raw = out.chunk(2, dim=-1)
    action, log_prob, _ = squashed_gaussian(mean, raw.clamp(lo, hi), eps)
    ((alpha * log_prob).mean() + (action * q_grad).sum()).backward()
    with torch.no_grad():
        action, _, std = native.squashed_gaussian(out.detach(), eps, lo, hi)
        g = native.squashed_gaussian_backward(q_grad, action, std, eps, out, lo, hi, alpha / rows)
    close(g, out.grad)


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


def _mlp_params(widths: list[int], linear_layout: bool, gen: torch.Generator):
    """Layers as kept views ``(weight (in, out), bias)``: of ``(out, in)`` weights with
    ``linear_layout`` (nn.Linear's), else of ``(in, out)`` ones (stacked critics'); leaves
    that require gradients."""
    params, layers = [], []
    for i, o in zip(widths[:-1], widths[1:], strict=True):
        w = torch.randn(o, i, generator=gen) if linear_layout else torch.randn(i, o, generator=gen)
        w = (w / i**0.5).requires_grad_()
        b = (0.1 * torch.randn(o, generator=gen)).requires_grad_()
        params += [w, b]
        layers.append((w.t() if linear_layout else w, b))
    return params, layers


@needs_native
@pytest.mark.skipif(not native.has_sgemm(), reason="no BLAS sgemm_ in this PyTorch build")
@pytest.mark.parametrize("widths", [[4, 32, 1], [4, 64, 48, 2], [3, 24, 16, 40, 3]])
@pytest.mark.parametrize("linear_layout", [False, True])
@pytest.mark.parametrize("select", [False, True])
def test_mlp_forward_and_backward_equal_autograd(
    widths: list[int], linear_layout: bool, select: bool
) -> None:
    gen = torch.Generator().manual_seed(len(widths) * 10 + select)
    rows = 37
    params, layers = _mlp_params(widths, linear_layout, gen)
    if not native.MLP.fits(layers):
        pytest.skip("a multi-output head must be in nn.Linear's layout")
    x1 = torch.randn(rows, widths[0] - 1, generator=gen).requires_grad_()
    x2 = torch.randn(rows, 1, generator=gen).requires_grad_()
    net = native.MLP(layers)
    with torch.no_grad():
        out, ws = net.forward(x1, x2)
    # reference: autograd through the same layers
    h = torch.cat([x1, x2], -1)
    for i, (w, b) in enumerate(layers):
        h = h @ w + b
        if i < len(layers) - 1:
            h = h.relu()
    close(out, h.detach())
    idx = torch.randperm(rows, generator=gen)[: rows // 2] if select else None
    g = torch.randn(rows if idx is None else idx.shape[0], widths[-1], generator=gen)
    ref_out = h if idx is None else h[idx]
    ref = torch.autograd.grad(ref_out, [*params, x1, x2], g)
    dx = torch.zeros(rows, widths[0])
    with torch.no_grad():
        if select:  # input gradients only (the actor loss's critics)
            net.backward(ws, g, x1, x2, idx, dx=dx[:, 1:], kfrom=1)
            expect = torch.cat([ref[-2], ref[-1]], -1)
            close(dx[:, 1:], expect[:, 1:])
            assert (dx[:, 0] == 0).all()
            return
        dw = [torch.empty_like(p) for p in params[0::2]]
        db = [torch.empty_like(p) for p in params[1::2]]
        net.backward(ws, g, x1, x2, dw=native.addresses(dw), db=native.addresses(db), dx=dx)
    for mine, theirs in zip([*dw, *db], [*ref[0:-2:2], *ref[1:-2:2]], strict=True):
        close(mine, theirs)
    close(dx, torch.cat([ref[-2], ref[-1]], -1))


@needs_native
def test_sac_loss_glue_equals_torch() -> None:
    """The C passes of SAC's loss glue: the target, a critic's loss terms, and the actor loss
    with each critic's rows (ties to the first critic, as torch.min), against torch ops on
    strided inputs."""
    gen = torch.Generator().manual_seed(3)
    rows = 50
    q = [torch.randn(rows, 1, generator=gen) for _ in range(2)]
    q[1][:5] = q[0][:5]  # ties
    log_prob = torch.randn(rows, generator=gen)
    returns = torch.randn(rows, 2, generator=gen)[:, 0]  # strided, as window slices are
    discount = torch.rand(rows, 2, generator=gen)[:, 1]
    q_min, which = torch.stack([x[:, 0] for x in q]).min(0)
    y = native.sac_target(q, log_prob, returns, discount, 0.2)
    close(y, returns + discount * (q_min - 0.2 * log_prob))
    g, mse, q_mean = native.sac_critic_grad(q[0], y)
    close(g, (q[0][:, 0] - y) / rows)
    assert mse == pytest.approx((q[0][:, 0] - y).square().mean().item(), rel=1e-5)
    assert q_mean == pytest.approx(q[0].mean().item(), rel=1e-5, abs=1e-6)
    loss, picked, mean_lp = native.sac_actor_loss(q, log_prob, 0.2)
    assert loss == pytest.approx((0.2 * log_prob - q_min).mean().item(), rel=1e-5, abs=1e-6)
    assert mean_lp == pytest.approx(log_prob.mean().item(), rel=1e-5, abs=1e-6)
    for j, rows_j in enumerate(picked):
        assert torch.equal(rows_j, (which == j).nonzero()[:, 0])

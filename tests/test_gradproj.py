"""Gradient projection (issue 4): orthogonal to the RL gradient after firing, unchanged when
aligned, equal to a slow flattened float64 reference, zero and unused-parameter cases, the
agent-level ``projected_backward``, and identical projected gradients on two torchrun ranks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from reprl.optim.gradproj import (
    _grad_like,
    all_reduce_mean,
    loss_gradients,
    project_conflicting,
    projected_backward,
    rl_and_aux_gradients,
)

SHAPES = [(3, 4), (5,), (2, 3, 2), (1,), (7, 1)]


def flat64(tensors: list[torch.Tensor]) -> np.ndarray:
    return np.concatenate([t.detach().double().reshape(-1).numpy() for t in tensors])


def reference(aux: list[torch.Tensor], rl: list[torch.Tensor]) -> tuple[np.ndarray, float]:
    """The issue's formula on the flattened float64 vectors: ``(a', cos(a, b))``."""
    a, b = flat64(aux), flat64(rl)
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    cos = float(a @ b / (na * nb)) if na > 0 and nb > 0 else 0.0
    if cos < 0:
        a = a - (a @ b) / (b @ b) * b
    return a, cos


def pair(seed: int, mix: float, scale: float = 1.0) -> tuple[list[torch.Tensor], ...]:
    """Random ``(a, b)`` over SHAPES with ``a = mix * b + noise``."""
    g = torch.Generator().manual_seed(seed)
    b = [torch.randn(s, generator=g) * scale for s in SHAPES]
    a = [mix * x + 0.5 * torch.randn(x.shape, generator=g) * scale for x in b]
    return a, b


def test_conflicting_aux_becomes_orthogonal_to_rl() -> None:
    a, b = pair(0, mix=-1.0)
    result = project_conflicting(a, b)
    assert bool(result.fired)
    assert result.cosine.item() < 0
    out, rl = flat64(result.aux), flat64(b)
    assert abs(out @ rl) <= 1e-6 * np.linalg.norm(out) * np.linalg.norm(rl)
    assert [t.shape for t in result.aux] == [t.shape for t in a]


def test_aligned_aux_is_unchanged_bitwise() -> None:
    a, b = pair(1, mix=1.0)
    result = project_conflicting(a, b)
    assert not bool(result.fired)
    assert result.cosine.item() > 0
    for x, y in zip(result.aux, a):
        assert torch.equal(x.view(torch.int32), y.view(torch.int32))


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("mix", [-2.0, -0.3, 0.0, 0.3])
def test_matches_flattened_reference(seed: int, mix: float) -> None:
    a, b = pair(seed, mix)
    result = project_conflicting(a, b)
    want, cos = reference(a, b)
    np.testing.assert_allclose(flat64(result.aux), want, rtol=1e-5, atol=1e-6)
    assert result.cosine.item() == pytest.approx(cos, abs=1e-6)
    assert bool(result.fired) == (cos < 0)
    assert result.fired.dtype == torch.bool and result.fired.dim() == 0


def test_tiny_gradients_are_still_projected_exactly() -> None:
    """No epsilon biases the coefficient: gradients of norm ~1e-8 project as well as big ones."""
    a, b = pair(3, mix=-1.0, scale=1e-9)
    result = project_conflicting(a, b)
    assert bool(result.fired)
    want, cos = reference(a, b)
    np.testing.assert_allclose(flat64(result.aux), want, rtol=1e-4, atol=1e-15)
    assert result.cosine.item() == pytest.approx(cos, abs=1e-5)


def test_zero_gradients_never_project() -> None:
    a, b = pair(4, mix=-1.0)
    zeros = [torch.zeros_like(x) for x in b]
    for aux, rl in ((a, zeros), (zeros, b), (zeros, zeros)):
        result = project_conflicting(aux, rl)
        assert result.cosine.item() == 0.0
        assert not bool(result.fired)
        for x, y in zip(result.aux, aux):
            assert torch.equal(x, y)
            assert torch.isfinite(x).all()


def test_bfloat16_gradients_keep_their_dtype() -> None:
    a, b = pair(5, mix=-1.0)
    result = project_conflicting([x.bfloat16() for x in a], [x.bfloat16() for x in b])
    assert all(t.dtype == torch.bfloat16 for t in result.aux)
    assert bool(result.fired)
    out, rl = flat64(result.aux), flat64([x.bfloat16() for x in b])
    assert abs(out @ rl) <= 1e-2 * np.linalg.norm(out) * np.linalg.norm(rl)


def test_mismatched_gradients_are_rejected() -> None:
    a, b = pair(6, mix=1.0)
    with pytest.raises(ValueError, match="length"):
        project_conflicting(a[:-1], b)
    with pytest.raises(ValueError, match="shape"):
        project_conflicting([a[0].T, *a[1:]], b)
    empty = project_conflicting([], [])
    assert empty.aux == [] and not bool(empty.fired)


def test_unused_parameters_get_zero_gradients() -> None:
    used, unused = nn.Parameter(torch.randn(3)), nn.Parameter(torch.randn(2))
    loss = (used * 2).sum()
    grads = loss_gradients(loss, [used, unused])
    assert torch.equal(grads[0], torch.full((3,), 2.0))
    assert torch.equal(grads[1], torch.zeros(2))
    constant = loss_gradients(torch.tensor(1.0), [used])
    assert torch.equal(constant[0], torch.zeros(3))


class TwoHeads(nn.Module):
    """A backbone shared by an RL head and an auxiliary head."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Linear(4, 6)
        self.rl_head = nn.Linear(6, 2)
        self.aux_head = nn.Linear(6, 3)

    def losses(self, x: torch.Tensor, sign: float) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.tanh(self.backbone(x))
        rl = self.rl_head(h).square().mean()
        aux = self.aux_head(h).square().mean() + sign * rl
        return rl, aux


@pytest.mark.parametrize("sign", [-4.0, 4.0])
def test_projected_backward_sets_grads_from_one_forward(sign: float) -> None:
    torch.manual_seed(0)
    model = TwoHeads()
    params = list(model.parameters())
    shared = list(model.backbone.parameters())
    x = torch.randn(32, 4)
    rl_loss, aux_loss = model.losses(x, sign)
    b, a = rl_and_aux_gradients(rl_loss, aux_loss, params, retain_graph=True)
    info = projected_backward(rl_loss, aux_loss, params, shared)

    n = len(shared)
    expected = project_conflicting(a[:n], b[:n])
    assert bool(expected.fired) == (sign < 0)
    for p, bi, ai in zip(params[:n], b, expected.aux):
        torch.testing.assert_close(p.grad, bi + ai)
    for p, bi, ai in zip(params[n:], b[n:], a[n:]):  # heads: plain sum, never projected
        torch.testing.assert_close(p.grad, bi + ai)
    assert info["stats/projection_fired"].item() == float(sign < 0)
    assert info["stats/grad_cosine"].item() == pytest.approx(expected.cosine.item())

    if sign > 0:  # aligned: the same gradient as one backward of the summed loss
        grads = [p.grad.clone() for p in params]
        model.zero_grad()
        rl_loss, aux_loss = model.losses(x, sign)
        (rl_loss + aux_loss).backward()
        for p, g in zip(params, grads):
            torch.testing.assert_close(p.grad, g)


def test_parameters_no_loss_reaches_keep_no_gradient() -> None:
    """As after ``backward()``: ``p.grad`` stays None, so Adam skips the parameter."""
    model = TwoHeads()
    unused = nn.Parameter(torch.randn(3))
    rl_loss, aux_loss = model.losses(torch.randn(8, 4), -1.0)
    projected_backward(
        rl_loss, aux_loss, [*model.parameters(), unused], model.backbone.parameters()
    )
    assert unused.grad is None
    assert all(p.grad is not None for p in model.parameters())


def test_projected_backward_rejects_foreign_shared_parameters() -> None:
    model = TwoHeads()
    rl_loss, aux_loss = model.losses(torch.randn(4, 4), 1.0)
    with pytest.raises(ValueError, match="shared"):
        projected_backward(
            rl_loss, aux_loss, list(model.rl_head.parameters()), [model.backbone.weight]
        )


def test_all_reduce_is_a_noop_on_one_process() -> None:
    t = [torch.randn(3), torch.randn(2, 2)]
    assert all(x is y for x, y in zip(all_reduce_mean(t), t))


def test_grads_get_the_parameters_layout() -> None:
    """``p.grad`` has the parameter's strides (channels-last conv weights included), as
    ``backward`` would store it, so clipping can scale it in place and fused optimizers see
    one layout; the all-reduced gradients (contiguous views of one buffer) and expanded
    gradients (``loss = p.sum()``) are copied into that layout."""
    conv = nn.Conv2d(3, 4, 3).to(memory_format=torch.channels_last)
    bias = nn.Parameter(torch.zeros(5))
    params = [conv.weight, conv.bias, bias]
    x = torch.randn(2, 3, 6, 6).to(memory_format=torch.channels_last)
    rl_loss = conv(x).square().mean() + bias.sum()
    projected_backward(rl_loss, -conv(x).mean(), params, params[:2])
    for p in params:
        assert p.grad.stride() == p.stride()
    assert torch.equal(bias.grad, torch.ones(5))
    nn.utils.clip_grad_norm_(params, 1e-3, foreach=True)

    contiguous = conv.weight.detach().contiguous()
    assert _grad_like(conv.weight, contiguous).stride() == conv.weight.stride()
    expanded = torch.ones(()).expand(5)
    fixed = _grad_like(bias, expanded)
    assert fixed.stride() == (1,) and torch.equal(fixed, expanded)
    dense = torch.randn(5)
    assert _grad_like(bias, dense) is dense


def test_torchrun_ranks_apply_identical_projected_gradients(tmp_path: Path) -> None:
    """Two ranks with different local gradients hold bitwise identical ``p.grad`` after
    ``projected_backward``, equal to projecting the rank-averaged gradients."""
    script = Path(__file__).parent / "scripts" / "gradproj_torchrun.py"
    root = str(Path(__file__).resolve().parents[1])  # the script imports reprl from this tree
    path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    proc = subprocess.run(
        [*cmd, str(script), str(tmp_path)], capture_output=True, text=True, timeout=120, env=env
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert r0["world_size"] == r1["world_size"] == 2
    n = r0["num_shared"]
    # the local gradients differ between ranks ...
    assert not all(torch.equal(x, y) for x, y in zip(r0["local_rl"], r1["local_rl"]))
    # ... but every rank applies the same update
    for g0, g1 in zip(r0["grads"], r1["grads"]):
        assert torch.equal(g0, g1)
    for key in r0["info"]:
        assert torch.equal(r0["info"][key], r1["info"][key])
    # and it is the projection of the averaged gradients, not the average of projections
    b = [(x + y) / 2 for x, y in zip(r0["local_rl"], r1["local_rl"])]
    a = [(x + y) / 2 for x, y in zip(r0["local_aux"], r1["local_aux"])]
    want, cos = reference(a[:n], b[:n])
    assert cos < 0 and r0["info"]["stats/projection_fired"].item() == 1.0
    np.testing.assert_allclose(flat64(r0["grads"][:n]), flat64(b[:n]) + want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        flat64(r0["grads"][n:]), flat64(b[n:]) + flat64(a[n:]), rtol=1e-5, atol=1e-6
    )
    local = [project_conflicting(r["local_aux"][:n], r["local_rl"][:n]).aux for r in (r0, r1)]
    averaged_projections = [(x + y) / 2 for x, y in zip(*local)]
    assert not np.allclose(flat64(averaged_projections), want, rtol=1e-3, atol=1e-5)

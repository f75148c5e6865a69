"""reprl's functional optimizers take exactly torch.optim's steps and share its state dicts."""

from __future__ import annotations

import sys

import pytest
import torch

from reprl.optim.optimizers import Adam, RMSprop, clip_grad_norm


def make_params(seed: int) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(s, generator=g)) for s in [(5, 3), (3,), (7,)]]


@pytest.mark.parametrize(
    "ours,theirs,kw",
    [
        (Adam, torch.optim.Adam, {"lr": 1e-2, "eps": 1e-5}),
        (Adam, torch.optim.Adam, {"lr": 1e-2, "weight_decay": 1e-2, "betas": (0.8, 0.9)}),
        (RMSprop, torch.optim.RMSprop, {"lr": 1e-2, "alpha": 0.99, "eps": 1e-5}),
    ],
)
def test_same_trajectory_and_state_dict(ours, theirs, kw) -> None:
    a, b = make_params(0), make_params(0)
    opt_a, opt_b = ours(a, **kw), theirs(b, **kw)
    for step in range(5):
        for params, opt in ((a, opt_a), (b, opt_b)):
            opt.zero_grad()
            loss = sum((p**2).sum() * (step + 1) for p in params[:2])  # params[2] gets no grad
            loss.backward()
            opt.step()
    for pa, pb in zip(a, b):
        torch.testing.assert_close(pa, pb)
    # state dicts are interchangeable both ways
    opt_b2 = theirs(make_params(1), **kw)
    opt_b2.load_state_dict(opt_a.state_dict())
    opt_a2 = ours(make_params(1), **kw)
    opt_a2.load_state_dict(opt_b.state_dict())
    for k in ours.state_keys:
        for i in range(2):
            torch.testing.assert_close(opt_a2.buffers[k][i], opt_b.state[b[i]][k])


def test_does_not_import_dynamo() -> None:
    import subprocess

    code = (
        "import sys, torch; from reprl.optim.optimizers import Adam;"
        "p=[torch.nn.Parameter(torch.ones(3))]; o=Adam(p); p[0].sum().backward(); o.step();"
        "print('torch._dynamo' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("max_norm", [0.1, 1e6])  # clipping, and a norm under the bound
def test_clip_grad_norm_equals_torch(max_norm: float) -> None:
    a, b = make_params(0), make_params(0)
    for params in (a, b):
        sum((p**3).sum() for p in params[:2]).backward()  # params[2] has no gradient
    ours = clip_grad_norm(a, max_norm)
    theirs = torch.nn.utils.clip_grad_norm_(b, max_norm, foreach=True)
    torch.testing.assert_close(ours, theirs)
    for pa, pb in zip(a[:2], b[:2]):
        torch.testing.assert_close(pa.grad, pb.grad)
    assert a[2].grad is None
    assert clip_grad_norm(make_params(2), 1.0).item() == 0.0  # no gradients at all


@pytest.mark.parametrize("ratio", [0.5, 0.998, 0.9995, 1.0, 1.0000001, 2.0, float("nan")])
def test_clip_grad_norm_bit_for_bit_around_the_bound(ratio: float) -> None:
    """Unclipped norms skip the multiply by 1 (CPU): the gradients are still torch's bit for
    bit, also just under, at and just over the bound, and NaN gradients stay NaN."""
    a, b = make_params(0), make_params(0)
    for params in (a, b):
        sum((p**3).sum() for p in params[:2]).backward()
        if ratio != ratio:  # NaN
            params[0].grad[0] = float("nan")
    norm = torch.nn.utils.get_total_norm([p.grad for p in a[:2]]).item()
    max_norm = 1.0 if ratio != ratio else norm / ratio  # ratio = norm / max_norm
    ours = clip_grad_norm(a, max_norm)
    theirs = torch.nn.utils.clip_grad_norm_(b, max_norm, foreach=True)
    assert torch.equal(ours, theirs) or (ours.isnan() and theirs.isnan())
    for pa, pb in zip(a[:2], b[:2]):
        assert torch.equal(pa.grad.nan_to_num(7.0), pb.grad.nan_to_num(7.0))

"""OptimizerSet: parts that are Adams of equal hyperparameters step through one fused kernel,
with bitwise the result of stepping each part on its own."""

from __future__ import annotations

import torch

from reprl.optim.optimizers import Adam, OptimizerSet


def make(lrs: tuple[float, float, float]) -> tuple[OptimizerSet, list[torch.Tensor]]:
    torch.manual_seed(0)
    params = [torch.randn(5, 3, requires_grad=True), torch.randn(4, requires_grad=True)]
    params += [torch.randn((), requires_grad=True)]
    opt = OptimizerSet(
        critic=Adam(params[:1], lr=lrs[0]),
        actor=Adam(params[1:2], lr=lrs[1]),
        alpha=Adam(params[2:], lr=lrs[2]),
    )
    return opt, params


def run(opt: OptimizerSet, params: list[torch.Tensor], separately: bool) -> None:
    gen = torch.Generator().manual_seed(1)
    for step in range(6):
        opt.zero_grad()
        for i, p in enumerate(params):
            if i == 1 and step % 2:  # the actor sits out every other step (policy_delay 2)
                continue
            p.grad = torch.randn(p.shape, generator=gen)
        if separately:
            for part in opt.parts.values():
                part.step()
        else:
            opt.step()


def test_one_kernel_equals_one_per_part() -> None:
    a, pa = make((1e-3, 1e-3, 1e-3))
    assert a._merged_adam() is not None
    b, pb = make((1e-3, 1e-3, 1e-3))
    run(a, pa, separately=False)
    run(b, pb, separately=True)
    for x, y in zip(pa, pb, strict=True):
        assert torch.equal(x, y)
    assert str(a.state_dict()) == str(b.state_dict())
    assert a.parts["actor"].step_count[0].item() == 3  # only the steps it had a gradient


def test_different_learning_rates_step_each_part() -> None:
    a, pa = make((1e-3, 3e-4, 1e-3))
    assert a._merged_adam() is None
    b, pb = make((1e-3, 3e-4, 1e-3))
    run(a, pa, separately=False)
    run(b, pb, separately=True)
    for x, y in zip(pa, pb, strict=True):
        assert torch.equal(x, y)

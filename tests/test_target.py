"""Target networks: hard copies every ``period`` steps, Polyak averaging against a slow
per-parameter formula, no gradients into the target, checkpoint round trip, config errors."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from reprl.errors import ConfigError
from reprl.optim.target import TargetConfig, TargetNetwork


def make_online(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))


def perturb(module: nn.Module) -> None:
    """A stand-in for an optimiser step (and a change of the batch-norm statistics)."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p))
        for b in module.buffers():
            if b.is_floating_point():
                b.add_(1.0)


def same(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("period", [1, 3, 5])
def test_hard_copy_exactly_every_period(period):
    online = make_online()
    target = TargetNetwork(online, mode="hard", period=period)
    assert same(online, target.target)
    for step in range(1, 4 * period + 1):
        perturb(online)
        updated = target.update(step)
        assert updated == (step % period == 0)
        assert same(online, target.target) == updated
        assert not target.update(step)  # calling again on the same step is a no-op


def test_hard_copy_with_strided_steps():
    """Steps that advance by the number of envs still update once per period bucket."""
    online = make_online()
    target = TargetNetwork(online, mode="hard", period=10)
    updates = [step for step in range(4, 60, 4) if target.update(step)]
    assert updates == [12, 20, 32, 40, 52]


def test_polyak_matches_slow_formula():
    online = make_online()
    tau, period = 0.1, 2
    target = TargetNetwork(online, mode="polyak", period=period, tau=tau)
    ref = copy.deepcopy(online)
    for step in range(1, 12):
        perturb(online)
        if target.update(step):
            with torch.no_grad():
                for p_ref, p in zip(ref.parameters(), online.parameters()):
                    p_ref.copy_(tau * p + (1 - tau) * p_ref)
                for b_ref, b in zip(ref.buffers(), online.buffers()):
                    b_ref.copy_(b)
        for (name, p_tgt), p_ref in zip(target.target.named_parameters(), ref.parameters()):
            torch.testing.assert_close(p_tgt, p_ref, msg=name)
        for b_tgt, b_ref in zip(target.target.buffers(), ref.buffers()):
            assert torch.equal(b_tgt, b_ref)
    assert not same(online, target.target)


def test_no_gradient_into_target_and_mode_fixed():
    online = make_online()
    target = TargetNetwork(online, mode="polyak", tau=0.5)
    assert all(not p.requires_grad for p in target.target.parameters())
    assert all(p.requires_grad for p in online.parameters())
    online.train()
    x = torch.randn(5, 4)
    out = target(x)
    assert not out.requires_grad and out.grad_fn is None
    # The target's output does not depend on the online module's train/eval mode.
    online.eval()
    torch.testing.assert_close(target.forward(x), out)
    assert not target.target.training
    # A loss on the online network against target values only updates the online network.
    loss = (online(x) - target(x)).pow(2).mean()
    loss.backward()
    assert all(p.grad is not None for p in online.parameters())
    assert all(p.grad is None for p in target.target.parameters())


def test_state_dict_round_trip():
    online = make_online()
    target = TargetNetwork(online, mode="polyak", period=1, tau=0.3)
    for step in range(1, 4):
        perturb(online)
        target.update(step)
    state = target.state_dict()
    restored = TargetNetwork(make_online(seed=1), mode="polyak", period=1, tau=0.3)
    restored.load_state_dict(state)
    assert restored.last_update == 3
    assert same(restored.target, target.target)
    assert not restored.update(3)
    # The restored one keeps updating in place from the online module it wraps.
    assert restored.update(4)


def test_from_config_and_validation():
    online = make_online()
    target = TargetNetwork.from_config(online, TargetConfig(mode="polyak", tau=0.005))
    assert target.cfg == TargetConfig(mode="polyak", period=1, tau=0.005)
    TargetConfig().validate("agent.target")
    with pytest.raises(ConfigError, match=r"agent\.target\.mode: unknown 'polyac'.*hard, polyak"):
        TargetConfig(mode="polyac").validate("agent.target")
    for tau in (0.0, -0.1, 1.5):
        with pytest.raises(ConfigError, match=r"agent\.target\.tau: must be in \(0, 1\]"):
            TargetConfig(mode="polyak", tau=tau).validate("agent.target")
    with pytest.raises(ConfigError, match=r"agent\.target\.period: must be >= 1"):
        TargetConfig(period=0).validate("agent.target")
    with pytest.raises(ConfigError):
        TargetNetwork(online, mode="soft")

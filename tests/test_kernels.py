"""The oneDNN matrix-product path (reprl.models.kernels) against PyTorch's own kernels."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from reprl.config import load_config
from reprl.errors import ConfigError
from reprl.models import kernels
from reprl.models.actor_q import ActorQConfig, ActorQPolicy
from reprl.models.layers import MLP
from reprl.types import EnvSpec

pytestmark = pytest.mark.skipif(not kernels.onednn_available(), reason="no oneDNN in torch")


@pytest.fixture
def onednn() -> Iterator[None]:
    """oneDNN on for the test, the process's choice restored after."""
    before = kernels.cpu_matmul_enabled()
    kernels.set_cpu_matmul("onednn")
    yield
    kernels._enabled = before


def grads(out: torch.Tensor, inputs: list[torch.Tensor], seed: int = 0) -> list[torch.Tensor]:
    """Gradients of ``<out, g>`` for a fixed random ``g``."""
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed))
    return list(torch.autograd.grad(out, inputs, g))


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    a, b = a.detach(), b.detach()
    return torch.allclose(a, b, rtol=1e-4, atol=1e-4 * float(b.abs().max()))


def via_onednn(out: torch.Tensor) -> bool:
    """Whether ``out`` came from a oneDNN product (its node, or the node under a view)."""
    node = out.grad_fn
    names = [type(node).__name__]
    if node is not None and node.next_functions:
        names.append(type(node.next_functions[0][0]).__name__)
    return any(name.startswith(("_Dnn", "_Sliced")) for name in names)


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("shape", [(256, 200), (3, 100, 200)])
def test_linear_matches_f_linear(onednn: None, relu: bool, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    x = torch.randn(*shape, requires_grad=True)
    weight = torch.randn(300, 200, requires_grad=True)
    bias = torch.randn(300, requires_grad=True)
    out = kernels.linear(x, weight, bias, relu=relu)
    assert via_onednn(out)
    ref = F.linear(x, weight, bias)
    ref = torch.relu(ref) if relu else ref
    assert out.shape == ref.shape and close(out, ref)
    if relu:
        assert (out == 0).any()  # the mask matters in the backward
    for a, b in zip(grads(out, [x, weight, bias]), grads(ref, [x, weight, bias]), strict=True):
        assert close(a, b)


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("sizes", [(192, 256), (256, 1)])  # oneDNN; a critic's 2-D products
def test_stacked_linear_matches_baddbmm(onednn: None, relu: bool, sizes: tuple[int, int]) -> None:
    torch.manual_seed(1)
    fan_in, fan_out = sizes
    x = torch.randn(256, fan_in, requires_grad=True)
    weight = torch.randn(2, fan_in, fan_out, requires_grad=True)
    bias = torch.randn(2, 1, fan_out, requires_grad=True)
    h = x.expand(2, *x.shape)  # the critics' shared input: its gradient sums over the nets
    out = kernels.stacked_linear(bias, h, weight, relu=relu)
    assert via_onednn(out)
    ref = torch.baddbmm(bias, h, weight)
    ref = torch.relu(ref) if relu else ref
    assert close(out, ref)
    for a, b in zip(grads(out, [x, weight, bias]), grads(ref, [x, weight, bias]), strict=True):
        assert close(a, b)


def test_weights_changed_in_place_are_seen(onednn: None) -> None:
    """An optimizer writes parameters in place: no packed copy of old weights may be reused."""
    x = torch.randn(256, 256)
    weight = torch.randn(256, 256)
    first = kernels.linear(x, weight)
    weight.mul_(-2.0)
    second = kernels.linear(x, weight)
    assert close(second, F.linear(x, weight)) and close(second, -2.0 * first)


def test_small_other_dtype_and_autocast_take_the_default_kernels(onednn: None) -> None:
    weight = torch.randn(256, 256, requires_grad=True)
    small = kernels.linear(torch.randn(8, 256), weight)  # 0.5M multiply-adds
    assert not via_onednn(small)
    double = kernels.linear(torch.randn(256, 256, dtype=torch.float64), weight.double())
    assert not via_onednn(double)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cast = kernels.linear(torch.randn(256, 256), weight)
    assert cast.dtype == torch.bfloat16


def test_models_agree_across_kernels() -> None:
    """An MLP and SAC's actor and stacked critics (with the detached-critics path) give the
    same outputs and gradients through oneDNN as through the default kernels."""
    torch.manual_seed(2)
    spec = EnvSpec(
        env_id="test",
        obs_shape=(17,),
        obs_dtype=np.dtype(np.float32),
        action_type="continuous",
        action_shape=(6,),
        action_low=-np.ones(6, np.float32),
        action_high=np.ones(6, np.float32),
    )
    policy = ActorQPolicy(ActorQConfig(), 17, spec)
    mlp = MLP(17, [256, 256], "relu")
    feats = torch.randn(256, 17)
    action = torch.rand(256, 6) * 2 - 1
    params = [*policy.parameters(), *mlp.parameters()]

    def run() -> tuple[torch.Tensor, list[torch.Tensor]]:
        q = policy.q(feats, action)
        q_pi = policy.q(feats, policy.actor(feats).mean.tanh(), detach_params=True)
        out = q.sum() + q_pi.square().sum() + mlp(feats).square().sum()
        return out, grads(out, params)

    before = kernels.cpu_matmul_enabled()
    try:
        kernels.set_cpu_matmul("default")
        ref, ref_grads = run()
        kernels.set_cpu_matmul("onednn")
        out, out_grads = run()
    finally:
        kernels._enabled = before
    assert close(out, ref)
    assert all(close(a, b) for a, b in zip(out_grads, ref_grads, strict=True))


def test_cpu_matmul_choices() -> None:
    before = kernels.cpu_matmul_enabled()
    try:
        assert kernels.set_cpu_matmul("default") is False
        assert kernels.set_cpu_matmul("auto") is kernels.onednn_preferred()
        with pytest.raises(ConfigError, match="valid: auto, onednn, default"):
            kernels.set_cpu_matmul("mkl")
    finally:
        kernels._enabled = before
    with pytest.raises(ConfigError, match="cpu_matmul: unknown 'fast'"):
        load_config(["experiment=sac_pendulum", "cpu_matmul=fast"])


def test_linear_module_is_an_nn_linear_through_onednn(onednn: None) -> None:
    """The backbones' ``kernels.Linear`` (e.g. the Nature CNN's 3136 -> 512 head) keeps
    ``nn.Linear``'s parameters and names and computes the same function by oneDNN."""
    torch.manual_seed(3)
    layer = kernels.Linear(3136, 512)
    reference = torch.nn.Linear(3136, 512)
    reference.load_state_dict(layer.state_dict())
    assert isinstance(layer, torch.nn.Linear) and list(layer.state_dict()) == ["weight", "bias"]
    x = torch.randn(32, 3136, requires_grad=True)
    out, ref = layer(x), reference(x)
    assert via_onednn(out) and close(out, ref)
    params = [x, layer.weight, layer.bias]
    ref_params = [x, reference.weight, reference.bias]
    for a, b in zip(grads(out, params), grads(ref, ref_params), strict=True):
        assert close(a, b)

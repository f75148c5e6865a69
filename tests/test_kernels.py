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


def continuous_spec(obs_dim: int, action_dim: int) -> EnvSpec:
    """A continuous-control env spec with actions in [-1, 1]."""
    return EnvSpec(
        env_id="test",
        obs_shape=(obs_dim,),
        obs_dtype=np.dtype(np.float32),
        action_type="continuous",
        action_shape=(action_dim,),
        action_low=-np.ones(action_dim, np.float32),
        action_high=np.ones(action_dim, np.float32),
    )


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
    spec = continuous_spec(17, 6)
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


def chain(
    x: torch.Tensor, weights: list[torch.Tensor], biases: list[torch.Tensor], relu_last: bool
):
    """Reference MLP: ``F.linear`` and ReLU layer by layer."""
    for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
        x = F.linear(x, w, b)
        if relu_last or i < len(weights) - 1:
            x = torch.relu(x)
    return x


def fused(out: torch.Tensor) -> bool:
    """Whether ``out`` came from the one-node MLP (its node, or the node under a view)."""
    node = out.grad_fn
    names = [type(node).__name__]
    if node is not None and node.next_functions:
        names.append(type(node.next_functions[0][0]).__name__)
    return "_MLPBackward" in names


@pytest.mark.parametrize("relu_last", [False, True])
@pytest.mark.parametrize("shape", [(256, 5), (4, 64, 5)])
@pytest.mark.parametrize("input_grad", [False, True])
def test_mlp_matches_layer_by_layer(
    onednn: None, relu_last: bool, shape: tuple[int, ...], input_grad: bool
) -> None:
    """``kernels.mlp`` (one node, oneDNN for its large products) gives F.linear's values and
    gradients for the input, every weight and every bias."""
    torch.manual_seed(3)
    sizes = [5, 256, 256, 3]
    weights = [(torch.randn(o, i) / i**0.5).requires_grad_() for i, o in zip(sizes, sizes[1:])]
    biases = [torch.randn(o, requires_grad=True) for o in sizes[1:]]
    x = torch.randn(*shape, requires_grad=input_grad)
    out = kernels.mlp(x, weights, biases, relu_last)
    assert fused(out)
    ref = chain(x, weights, biases, relu_last)
    assert out.shape == ref.shape and close(out, ref)
    inputs = [*weights, *biases] + ([x] if input_grad else [])
    assert all(close(a, b) for a, b in zip(grads(out, inputs), grads(ref, inputs), strict=True))
    with torch.no_grad():
        assert close(kernels.mlp(x, weights, biases, relu_last), ref)


def test_mlp_small_or_other_dtype_goes_layer_by_layer(onednn: None) -> None:
    """Without a product large enough for oneDNN (DQN CartPole's batch-64 MLP), or in
    float64, the MLP runs on PyTorch's per-layer autograd, with the same values."""
    torch.manual_seed(4)
    weights = [torch.randn(256, 4, requires_grad=True), torch.randn(2, 256, requires_grad=True)]
    biases = [torch.randn(256, requires_grad=True), torch.randn(2, requires_grad=True)]
    small = torch.randn(64, 4)
    out = kernels.mlp(small, weights, biases)
    assert not fused(out) and close(out, chain(small, weights, biases, False))
    w64 = [w.double() for w in weights]
    b64 = [b.double() for b in biases]
    out = kernels.mlp(small.double().repeat(64, 1), w64, b64)
    assert not fused(out) and out.dtype == torch.float64


@pytest.mark.parametrize("relu_last", [False, True])
@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("detach", [False, True])
def test_stacked_mlp_matches_baddbmm(
    onednn: None, relu_last: bool, shared: bool, detach: bool
) -> None:
    """``kernels.stacked_mlp`` (twin critics as one node) against a ``baddbmm`` chain, with one
    input shared by the nets or one per net; with detached weights (an actor loss through
    constant critics) only the input gets a gradient."""
    torch.manual_seed(5)
    k, sizes = 2, [7, 256, 256, 1]
    weights = [(torch.randn(k, i, o) / i**0.5).requires_grad_() for i, o in zip(sizes, sizes[1:])]
    biases = [torch.randn(k, 1, o, requires_grad=True) for o in sizes[1:]]
    x = torch.randn(256, 7) if shared else torch.randn(k, 256, 7)
    x.requires_grad_(True)
    ws = [w.detach() for w in weights] if detach else weights
    bs = [b.detach() for b in biases] if detach else biases
    out = kernels.stacked_mlp(x, ws, bs, relu_last)
    assert fused(out)
    h = x.expand(k, *x.shape) if shared else x
    for i, (w, b) in enumerate(zip(ws, bs, strict=True)):
        h = torch.baddbmm(b, h, w)
        h = torch.relu(h) if relu_last or i < len(ws) - 1 else h
    assert out.shape == h.shape == (k, 256, 1) and close(out, h)
    inputs = [x] if detach else [x, *weights, *biases]
    assert all(close(a, b) for a, b in zip(grads(out, inputs), grads(h, inputs), strict=True))
    if detach:  # nothing reaches the parameters
        kernels.stacked_mlp(x, ws, bs, relu_last).sum().backward()
        assert all(p.grad is None for p in [*weights, *biases])


def test_fused_mlps_agree_with_per_layer_functions(onednn: None) -> None:
    """SAC's actor and critics (critic loss and detached actor loss) give the same outputs
    and gradients with ``FUSED_MLPS`` on as with per-layer autograd Functions."""
    torch.manual_seed(6)
    spec = continuous_spec(3, 1)
    policy = ActorQPolicy(ActorQConfig(), 3, spec)
    feats, action = torch.randn(256, 3), torch.rand(256, 1) * 2 - 1
    params = list(policy.parameters())

    def run() -> tuple[torch.Tensor, list[torch.Tensor]]:
        q = policy.q(feats, action)
        q_pi = policy.q(feats, policy.actor(feats).mean.tanh(), detach_params=True)
        out = q.square().sum() + q_pi.sum()
        return out, grads(out, params)

    try:
        kernels.FUSED_MLPS = False
        ref, ref_grads = run()
        kernels.FUSED_MLPS = True
        out, out_grads = run()
    finally:
        kernels.FUSED_MLPS = True
    assert close(out, ref)
    assert all(close(a, b) for a, b in zip(out_grads, ref_grads, strict=True))


@pytest.mark.parametrize("rows", [64, 256])
def test_chain_takes_the_kernels_mlp_takes(onednn: None, rows: int) -> None:
    """``kernels.chain`` (acting and targets from kept layer views) gives ``kernels.mlp``'s
    no-grad values bit for bit, with oneDNN for a batch that has a layer large enough for it
    (256 rows of a 256-wide layer) and PyTorch's ``addmm`` below that (64 rows)."""
    torch.manual_seed(5)
    sizes = [4, 256, 256, 2]
    weights = [torch.randn(o, i) / i**0.5 for i, o in zip(sizes[:-1], sizes[1:], strict=True)]
    biases = [0.1 * torch.randn(o) for o in sizes[1:]]
    layers = kernels.layer_views(weights, biases)
    x = torch.randn(rows, 4)
    with torch.no_grad():
        assert torch.equal(kernels.chain(x, layers), kernels.mlp(x, weights, biases))

"""The fused actor-critic MLP (``StackedMLP``) and the NumPy-backed ``tanh``.

Fusion is a layout change only: with the same weights the fused policy must compute the same
outputs and gradients as separate actor and critic MLPs, start from the same initial weights
for the same seed, and load state dicts of either layout.
"""

from __future__ import annotations

import math

import pytest
import torch
from model_specs import NT_SHAPES, VECTOR_CONTINUOUS, VECTOR_DISCRETE

from reprl.models import ModelConfig, build_model
from reprl.models import layers as layers_mod
from reprl.models.layers import MLP, StackedMLP
from reprl.types import EnvSpec

EXACT = {"rtol": 1e-6, "atol": 1e-6}
"""Same computation, possibly another matmul kernel: equal up to float32 rounding."""


def _cfg(
    fuse: bool = True, backbone_hidden: list[int] | None = None, **policy: object
) -> ModelConfig:
    options = {"actor_hidden": [64, 64], "critic_hidden": [64, 64], "fuse": fuse, **policy}
    return ModelConfig(
        backbone={"name": "mlp", "hidden_sizes": backbone_hidden or []},
        policy={"name": "actor_critic", **options},
    )


def _pair(spec: EnvSpec, **kwargs: object) -> tuple[torch.nn.Module, torch.nn.Module]:
    """A fused and an unfused model with the same weights (the unfused one's, loaded)."""
    unfused = build_model(_cfg(fuse=False, **kwargs), spec)
    fused = build_model(_cfg(fuse=True, **kwargs), spec)
    fused.load_state_dict(unfused.state_dict())  # separate layout -> fused layout
    assert fused.policy.fused_mlp is not None and unfused.policy.fused_mlp is None
    return fused, unfused


def _grads(model: torch.nn.Module) -> dict[str, torch.Tensor | None]:
    """Parameter gradients, named as in the separate layout (fused ones split per net)."""
    grads = {n: p.grad for n, p in model.named_parameters() if ".fused_mlp." not in n}
    fused = model.policy.fused_mlp
    if fused is not None:
        for i, (weight, bias) in enumerate(fused._names):
            gw, gb = getattr(fused, weight).grad, getattr(fused, bias).grad
            for j, net in enumerate(("actor_mlp", "critic_mlp")):
                grads[f"policy.{net}.layers.{i}.weight"] = gw[j].T
                grads[f"policy.{net}.layers.{i}.bias"] = gb[j, 0]
    return grads


SPECS = pytest.mark.parametrize("spec", [VECTOR_DISCRETE, VECTOR_CONTINUOUS], ids=["disc", "cont"])


@SPECS
@pytest.mark.parametrize(
    "options",
    [{}, {"num_values": 2}, {"backbone_hidden": [16]}, {"activation": "relu"}],
    ids=["sb3", "two_values", "backbone_mlp", "relu"],
)
def test_fused_equals_unfused_outputs_and_gradients(spec: EnvSpec, options: dict) -> None:
    if options.get("num_values") and not spec.discrete:
        options = {**options, "state_dependent_std": True}
    fused, unfused = _pair(spec, **options)
    for n, t in [*NT_SHAPES, (256, 1)]:
        obs = torch.randn(n, t, *spec.obs_shape)
        outs = []
        for model in (fused, unfused):
            model.zero_grad(set_to_none=True)
            (out, _), _ = model(obs)
            outs.append(out)
        action = outs[1].dist.sample()
        results = []
        for model, out in zip((fused, unfused), outs, strict=True):
            log_prob, entropy = out.dist.log_prob(action), out.dist.entropy()
            (value_only, _), _ = model.value_only(obs)
            # A PPO-like loss touching every output, weighted so no gradient cancels.
            loss = (log_prob * 1.3).mean() - 0.1 * entropy.mean() + out.value.square().mean()
            loss.backward()
            results.append((log_prob, entropy, out.value, value_only, _grads(model)))
        (lp_f, ent_f, v_f, vo_f, g_f), (lp_u, ent_u, v_u, vo_u, g_u) = results
        torch.testing.assert_close(lp_f, lp_u, **EXACT)
        torch.testing.assert_close(ent_f, ent_u, **EXACT)
        torch.testing.assert_close(v_f, v_u, **EXACT)
        torch.testing.assert_close(vo_f, vo_u, **EXACT)
        torch.testing.assert_close(vo_f, v_f, **EXACT)  # critic alone == critic slice
        assert g_f.keys() == g_u.keys()
        for name in g_u:
            assert g_f[name] is not None, name
            torch.testing.assert_close(g_f[name], g_u[name], **EXACT, msg=name)


@pytest.mark.parametrize("orthogonal_init", [True, False])
def test_fused_starts_from_the_same_weights_for_a_seed(orthogonal_init: bool) -> None:
    """Same initialisation: fused weights are the separate layout's, draw for draw."""
    models = []
    for fuse in (True, False):
        torch.manual_seed(7)
        cfg = _cfg(fuse=fuse)
        cfg.orthogonal_init = orthogonal_init
        models.append(build_model(cfg, VECTOR_DISCRETE))
    fused, unfused = models
    split = build_model(_cfg(fuse=False), VECTOR_DISCRETE)
    split.load_state_dict(fused.state_dict())  # fused layout -> separate layout
    for name, value in unfused.state_dict().items():
        assert torch.equal(split.state_dict()[name], value), name
    if orthogonal_init:  # gain sqrt(2) per net and layer, as separate Linear layers
        for i in range(2):
            for j in range(2):
                w = fused.policy.fused_mlp.layer(i, j)[0]
                gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
                eye = torch.eye(gram.shape[0])
                torch.testing.assert_close(gram, 2.0 * eye, atol=1e-4, rtol=1e-4)


def test_fused_state_dict_round_trip_and_layouts() -> None:
    fused, unfused = _pair(VECTOR_DISCRETE)
    keys = set(fused.state_dict())
    assert {"policy.fused_mlp.weight0", "policy.fused_mlp.bias1"} <= keys
    assert not any("actor_mlp" in k or "critic_mlp" in k for k in keys)
    assert fused.policy.fused_mlp.weight1.shape == (2, 64, 64)
    assert fused.policy.fused_mlp.bias0.shape == (2, 1, 64)
    # Fused -> fused: exact round trip (strict: no missing or unexpected keys).
    other = build_model(_cfg(), VECTOR_DISCRETE)
    other.load_state_dict(fused.state_dict())
    for name, value in fused.state_dict().items():
        assert torch.equal(other.state_dict()[name], value), name
    # Separate -> fused -> separate gives back the separate weights.
    back = build_model(_cfg(fuse=False), VECTOR_DISCRETE)
    back.load_state_dict(fused.state_dict())
    for name, value in unfused.state_dict().items():
        assert torch.equal(back.state_dict()[name], value), name
    # The caller's state dict is not modified by the conversion.
    state = unfused.state_dict()
    names = list(state)
    fused.load_state_dict(state)
    assert list(state) == names
    # Actor and critic of other sizes do not fuse: strict loading names the keys left over.
    for critic_hidden in ([32, 32], [64]):
        other = build_model(_cfg(fuse=False, critic_hidden=critic_hidden), VECTOR_DISCRETE)
        with pytest.raises(RuntimeError, match=r"Unexpected key.*actor_mlp"):
            fused.load_state_dict(other.state_dict())
    # A fused checkpoint does not fit a policy without a separate critic MLP.
    shared = build_model(_cfg(fuse=False, critic_hidden=[], share_hidden=True), VECTOR_DISCRETE)
    with pytest.raises(RuntimeError, match="fused_mlp"):
        shared.load_state_dict(fused.state_dict())


@pytest.mark.parametrize(
    "options",
    [
        {"fuse": False},
        {"critic_hidden": [64]},
        {"critic_hidden": [], "share_hidden": True},
        {"actor_hidden": [], "critic_hidden": []},
    ],
    ids=["off", "unequal", "shared", "no_hidden"],
)
def test_unfused_layouts_kept(options: dict) -> None:
    model = build_model(_cfg(**options), VECTOR_CONTINUOUS)
    policy = model.policy
    assert policy.fused_mlp is None and policy.actor_mlp is not None
    obs = torch.randn(3, 2, *VECTOR_CONTINUOUS.obs_shape)
    (out, _), _ = model(obs)
    (value, _), _ = model.value_only(obs)
    torch.testing.assert_close(value, out.value)


def test_stacked_mlp_checks_and_layer_views() -> None:
    a, b = MLP(4, [8, 8], "tanh"), MLP(4, [8, 8], "tanh")
    stacked = StackedMLP([a, b])
    x = torch.randn(5, 4)
    h = stacked(x)
    assert h.shape == (2, 5, 8)
    torch.testing.assert_close(h[0], a(x), **EXACT)
    torch.testing.assert_close(h[1], b(x), **EXACT)
    torch.testing.assert_close(stacked.forward_one(x, 1), b(x), **EXACT)
    weight, bias = stacked.layer(1, 0)
    assert torch.equal(weight, a.layers[1].weight) and torch.equal(bias, a.layers[1].bias)
    with torch.no_grad():
        weight.zero_()  # the views write the stacked parameters
    assert not stacked.weight1[0].any() and stacked.weight1[1].any()
    with pytest.raises(ValueError, match="same layer sizes"):
        StackedMLP([a, MLP(4, [8, 16], "tanh")])
    with pytest.raises(ValueError, match="one activation"):
        StackedMLP([a, MLP(4, [8, 8], "relu")])
    with pytest.raises(ValueError, match="at least one layer"):
        StackedMLP([MLP(4, [], "tanh"), MLP(4, [], "tanh")])


# ---------------------------------------------------------------------------------------------
# tanh
# ---------------------------------------------------------------------------------------------
def test_tanh_matches_torch_to_float32_rounding() -> None:
    x = torch.cat([torch.randn(100_000) * 3, torch.randn(10_000) * 1e-4, torch.randn(100) * 30])
    special = torch.tensor([0.0, -0.0, math.inf, -math.inf, 1e-45, 9.0, -20.0])
    y = layers_mod.tanh(torch.cat([x, special]))
    y, y_special = y[: x.numel()], y[x.numel() :]
    exact = torch.tanh(x.double())
    rel = ((y.double() - exact).abs() / exact.abs().clamp(min=1e-30)).max()
    assert rel < 2 * torch.finfo(torch.float32).eps  # within ~1 ulp, as torch.tanh
    assert torch.equal(y_special, torch.tanh(special))
    assert torch.equal(torch.signbit(y_special), torch.signbit(torch.tanh(special)))
    assert layers_mod.tanh(torch.tensor([math.nan])).isnan().all()


def test_tanh_gradients_and_fallbacks() -> None:
    x = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    y = layers_mod.tanh(x)
    assert y.grad_fn is not None
    (grad,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(grad, 1 - torch.tanh(x.detach()) ** 2)
    assert torch.autograd.gradcheck(layers_mod.tanh, (x,))
    assert torch.autograd.gradgradcheck(layers_mod.tanh, (x,))
    # No grad, inference mode, non-contiguous input: values of torch.tanh, input untouched.
    base = torch.randn(8, 6)
    before = base.clone()
    for x in (base, base.t(), base[:, ::2]):
        with torch.inference_mode():
            torch.testing.assert_close(layers_mod.tanh(x), torch.tanh(x))
        with torch.no_grad():
            torch.testing.assert_close(layers_mod.tanh(x), torch.tanh(x))
    assert torch.equal(base, before)
    # bf16 (autocast) goes to torch.tanh, as does everything with NUMPY_TANH off.
    half = torch.randn(4, 4, dtype=torch.bfloat16)
    assert torch.equal(layers_mod.tanh(half), torch.tanh(half))
    x = torch.randn(64, 64)
    layers_mod.NUMPY_TANH = False
    try:
        assert torch.equal(layers_mod.tanh(x), torch.tanh(x))
    finally:
        layers_mod.NUMPY_TANH = True

"""Every registered backbone, neck and policy against the (N, T) module contract."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from model_specs import (
    IMAGE_CONTINUOUS,
    IMAGE_DISCRETE,
    NT_SHAPES,
    VECTOR_CONTINUOUS,
    VECTOR_DISCRETE,
)

from reprl.errors import ConfigError
from reprl.models import ModelConfig, PolicyOutput, QOutput, build_model
from reprl.models.build import zero_obs
from reprl.registry import BACKBONES, NECKS, POLICIES
from reprl.types import EnvSpec


def _spec_for(backbone_cls: type) -> EnvSpec:
    return IMAGE_DISCRETE if backbone_cls.obs_ndim == 3 else VECTOR_DISCRETE


def _random_obs(spec: EnvSpec, n: int, t: int) -> torch.Tensor:
    if spec.obs_dtype == "uint8":
        return torch.randint(0, 256, (n, t, *spec.obs_shape), dtype=torch.uint8)
    return torch.randn(n, t, *spec.obs_shape)


def _backbone(name: str, **options: object) -> tuple[torch.nn.Module, EnvSpec]:
    entry = BACKBONES.get(name)
    spec = _spec_for(entry.obj)
    return entry.obj(entry.config_cls(**options), spec), spec


# ---------------------------------------------------------------------------------------------
# backbones
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", BACKBONES.names())
def test_backbone_contract(name: str) -> None:
    backbone, spec = _backbone(name)
    for n, t in NT_SHAPES:
        obs = _random_obs(spec, n, t)
        features, info = backbone(obs)
        assert features.shape == (n, t, backbone.out_dim)
        assert isinstance(info, dict)
        # T is folded into N: each step alone gives the same features as the sequence.
        steps = torch.cat([backbone(obs[:, i : i + 1])[0] for i in range(t)], dim=1)
        torch.testing.assert_close(steps, features)
    with pytest.raises(ValueError, match=r"\(N, T"):
        backbone(_random_obs(spec, 2, 1)[:, 0])


@pytest.mark.parametrize("name", BACKBONES.names())
def test_backbone_uint8_scaling(name: str) -> None:
    entry = BACKBONES.get(name)
    spec = _spec_for(entry.obj)
    if spec.obs_dtype != "uint8":
        spec = dataclasses.replace(spec, obs_dtype=np.dtype(np.uint8))
    backbone = entry.obj(entry.config_cls(), spec)
    obs = torch.randint(0, 256, (2, 3, *spec.obs_shape), dtype=torch.uint8)
    torch.testing.assert_close(backbone(obs)[0], backbone(obs.float() / 255.0)[0])
    assert obs.dtype == torch.uint8  # converted inside, the caller's tensor is untouched


@pytest.mark.parametrize("name", ["nature_cnn", "impala_cnn"])
def test_channels_last_matches_default(name: str) -> None:
    default, spec = _backbone(name)
    fast, _ = _backbone(name, channels_last=True)
    fast.load_state_dict(default.state_dict())
    obs = _random_obs(spec, 4, 2)
    torch.testing.assert_close(fast(obs)[0], default(obs)[0], rtol=1e-4, atol=1e-5)
    fast(obs)[0].sum().backward()
    assert all(p.grad is not None for p in fast.parameters())


@pytest.mark.parametrize("name", ["nature_cnn", "impala_cnn"])
def test_image_backbone_rejects_vector_obs(name: str) -> None:
    entry = BACKBONES.get(name)
    with pytest.raises(ConfigError, match="obs_shape"):
        entry.obj(entry.config_cls(), VECTOR_DISCRETE)


def test_mlp_backbone_flattens_and_validates() -> None:
    entry = BACKBONES.get("mlp")
    backbone = entry.obj(entry.config_cls(hidden_sizes=[]), IMAGE_DISCRETE)
    obs = _random_obs(IMAGE_DISCRETE, 2, 3)
    torch.testing.assert_close(backbone(obs)[0], obs.flatten(2).float() / 255.0)
    with pytest.raises(ConfigError, match=r"model\.backbone\.activation.*valid: elu, gelu, relu"):
        entry.config_cls(activation="sigmoid").validate("model.backbone")
    with pytest.raises(ConfigError, match="valid: elu, gelu, relu, silu, tanh"):
        entry.obj(entry.config_cls(activation="sigmoid"), VECTOR_DISCRETE)  # unvalidated cfg
    layer_norm = entry.obj(entry.config_cls(layer_norm=True), VECTOR_DISCRETE)
    assert layer_norm(_random_obs(VECTOR_DISCRETE, 2, 1))[0].shape == (2, 1, 64)
    # Scalar observations (obs_shape ()) become features of size 1, with or without layers.
    scalar = dataclasses.replace(VECTOR_DISCRETE, obs_shape=())
    obs = torch.randn(2, 3)
    for hidden_sizes, dim in (([], 1), ([8], 8)):
        features, _ = entry.obj(entry.config_cls(hidden_sizes=hidden_sizes), scalar)(obs)
        assert features.shape == (2, 3, dim)
    torch.testing.assert_close(
        entry.obj(entry.config_cls(hidden_sizes=[]), scalar)(obs)[0], obs.unsqueeze(-1)
    )


# ---------------------------------------------------------------------------------------------
# necks (generic over NECKS, so recurrent necks are covered when they are registered)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NECKS.names())
def test_neck_contract_stepping_equals_sequence(name: str) -> None:
    entry = NECKS.get(name)
    neck = entry.obj(entry.config_cls(), 8)
    n, t = 3, 6
    x = torch.randn(n, t, 8)
    is_first = torch.rand(n, t) < 0.3
    is_first[:, 0] = True
    (y, _), info = neck(x, neck.initial_state(n, "cpu"), is_first)
    assert y.shape == (n, t, neck.out_dim) and isinstance(info, dict)
    # Acting: one step at a time, carrying the state, equals the whole sequence.
    state, steps = neck.initial_state(n, "cpu"), []
    for i in range(t):
        (y_i, state), _ = neck(x[:, i : i + 1], state, is_first[:, i : i + 1])
        assert y_i.shape == (n, 1, neck.out_dim)
        steps.append(y_i)
    torch.testing.assert_close(torch.cat(steps, dim=1), y)
    # A reset at step k forgets everything before it (starting fresh at k gives the same).
    is_first[:, 3] = True
    (y, _), _ = neck(x, neck.initial_state(n, "cpu"), is_first)
    (y_tail, _), _ = neck(x[:, 3:], neck.initial_state(n, "cpu"), is_first[:, 3:])
    torch.testing.assert_close(y[:, 3:], y_tail)
    with pytest.raises(ValueError):
        neck(torch.randn(n, 8), neck.initial_state(n, "cpu"), None)


# ---------------------------------------------------------------------------------------------
# policies
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", POLICIES.names())
@pytest.mark.parametrize("spec", [VECTOR_DISCRETE, VECTOR_CONTINUOUS], ids=["disc", "cont"])
def test_policy_contract(name: str, spec: EnvSpec) -> None:
    entry = POLICIES.get(name)
    if name == "q" and not spec.discrete:  # value-based: discrete actions only
        with pytest.raises(ConfigError, match="discrete"):
            entry.obj(entry.config_cls(), 16, spec)
        return
    if name == "actor_q" and spec.discrete:  # bounded continuous actions only
        with pytest.raises(ConfigError, match="continuous"):
            entry.obj(entry.config_cls(), 16, spec)
        return
    policy = entry.obj(entry.config_cls(), 16, spec)
    for n, t in NT_SHAPES:
        out, info = policy(torch.randn(n, t, 16))
        if name == "actor_q":  # actor output; critics take an action (tests/test_continuous.py)
            action, log_prob = policy.sample(torch.randn(n, t, 16))
            assert out.mean.shape == action.shape == (n, t, *spec.action_shape)
            assert log_prob.shape == (n, t) and isinstance(info, dict)
            assert policy.q(torch.randn(n, t, 16), action).shape == (2, n, t)
            continue
        assert isinstance(out, (PolicyOutput, QOutput)) and isinstance(info, dict)
        if out.dist is None:  # Q policies: no action distribution, Q-values per action
            assert out.q.shape == (n, t, spec.num_actions)
            assert out.logits is None or out.logits.shape[:3] == (n, t, spec.num_actions)
            continue
        action = out.dist.sample()
        expected = (n, t) if spec.discrete else (n, t, *spec.action_shape)
        assert action.shape == expected
        assert out.dist.log_prob(action).shape == (n, t)
        assert out.dist.entropy().shape == (n, t)
        assert out.dist.mode().shape == expected
        if out.value is not None:
            assert out.value.shape[:2] == (n, t) and out.value.dim() == 3
    with pytest.raises(ValueError, match=r"\(N, T, 16\)"):
        policy(torch.randn(4, 16))


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"num_values": 2, "actor_hidden": [32], "critic_hidden": [32, 32]},
        {"share_hidden": True, "actor_hidden": [32]},
        {"squash": True, "state_dependent_std": True, "log_std_init": -1.0},
    ],
)
def test_actor_critic_options(options: dict[str, object]) -> None:
    spec = VECTOR_CONTINUOUS
    cfg = ModelConfig(policy={"name": "actor_critic", **options})
    model = build_model(cfg, spec)
    obs = _random_obs(spec, 5, 3)
    (out, _), _ = model(obs)
    assert out.value.shape == (5, 3, options.get("num_values", 1))
    (value, _), _ = model.value_only(obs)
    torch.testing.assert_close(value, out.value)
    if options.get("squash"):
        low, high = torch.from_numpy(spec.action_low), torch.from_numpy(spec.action_high)
        action = out.dist.sample()
        assert ((action >= low) & (action <= high)).all()
        torch.testing.assert_close(out.dist.log_std.mean(), torch.tensor(-1.0), atol=0.1, rtol=0)


@pytest.mark.parametrize("spec", [IMAGE_DISCRETE, IMAGE_CONTINUOUS], ids=["disc", "cont"])
@pytest.mark.parametrize("backbone", ["mlp", "nature_cnn"])
def test_gradient_reaches_backbone_from_actor_and_critic(spec: EnvSpec, backbone: str) -> None:
    options = {"hidden_sizes": [16]} if backbone == "mlp" else {}
    model = build_model(ModelConfig(backbone={"name": backbone, **options}), spec)
    obs = _random_obs(spec, 4, 2)
    for loss_of in (lambda o: -o.dist.log_prob(o.dist.sample()).mean(), lambda o: o.value.sum()):
        model.zero_grad()
        (out, _), _ = model(obs)
        loss_of(out).backward()
        for name, param in model.backbone.named_parameters():
            assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_zero_obs_dtype() -> None:
    assert zero_obs(IMAGE_DISCRETE).dtype == torch.uint8
    assert zero_obs(VECTOR_DISCRETE).shape == (1, 1, 4)


@pytest.mark.parametrize("dueling", [False, True])
@pytest.mark.parametrize("num_atoms", [1, 11])
def test_q_policy_options(dueling: bool, num_atoms: int) -> None:
    cfg = ModelConfig(
        policy={"name": "q", "hidden": [32], "dueling": dueling, "num_atoms": num_atoms}
    )
    model = build_model(cfg, VECTOR_DISCRETE)
    obs = _random_obs(VECTOR_DISCRETE, 5, 3)
    (out, _), _ = model(obs)
    assert out.q.shape == (5, 3, VECTOR_DISCRETE.num_actions)
    if num_atoms > 1:
        assert out.logits.shape == (5, 3, VECTOR_DISCRETE.num_actions, num_atoms)
        support = model.policy.support
        torch.testing.assert_close(out.q, (out.logits.softmax(-1) * support).sum(-1))
    else:
        assert out.logits is None
    out.q.sum().backward()
    for pname, param in model.named_parameters():
        assert param.grad is not None, pname

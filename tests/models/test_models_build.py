"""build_model: name resolution, size inference, initialisation, and SB3 equivalence."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from model_specs import IMAGE_CONTINUOUS, IMAGE_DISCRETE, VECTOR_CONTINUOUS, VECTOR_DISCRETE
from torch import nn

from reprl.errors import ConfigError
from reprl.models import AgentModel, ModelConfig, build_model
from reprl.types import EnvSpec

SB3_STYLE = ModelConfig(
    backbone={"name": "mlp", "hidden_sizes": []},
    policy={"name": "actor_critic", "actor_hidden": [64, 64], "critic_hidden": [64, 64]},
)
"""CartPole PPO as SB3's MlpPolicy: separate 64-64 tanh actor and critic networks."""


def _obs(spec: EnvSpec, n: int, t: int) -> torch.Tensor:
    if spec.obs_dtype == np.uint8:
        return torch.randint(0, 256, (n, t, *spec.obs_shape), dtype=torch.uint8)
    return torch.randn(n, t, *spec.obs_shape)


@pytest.mark.parametrize(
    ("backbone", "spec"),
    [
        ({"name": "mlp"}, VECTOR_DISCRETE),
        ({"name": "mlp", "hidden_sizes": [32]}, VECTOR_CONTINUOUS),
        ({"name": "nature_cnn", "features_dim": 128}, IMAGE_DISCRETE),
        ({"name": "impala_cnn", "channels": [8, 16]}, IMAGE_CONTINUOUS),
    ],
)
def test_build_infers_sizes(backbone: dict[str, object], spec: EnvSpec) -> None:
    model = build_model(ModelConfig(backbone=backbone), spec)
    assert isinstance(model, AgentModel)
    assert model.policy.in_dim == model.neck.out_dim == model.backbone.out_dim
    assert model.initial_state(3, "cpu") is None
    for n, t in [(1, 1), (3, 4)]:
        (out, state), info = model(_obs(spec, n, t), None, torch.zeros(n, t, dtype=torch.bool))
        assert out.value.shape == (n, t, 1) and state is None and isinstance(info, dict)
        action = out.dist.sample()
        assert action.shape == ((n, t) if spec.discrete else (n, t, *spec.action_shape))
        (features, _), _ = model.features(_obs(spec, n, t))
        assert features.shape == (n, t, model.policy.in_dim)
    with pytest.raises(ValueError, match="is_first"):
        model(_obs(spec, 2, 3), None, torch.zeros(2, dtype=torch.bool))


def test_info_merges_parts_with_prefixes() -> None:
    class Probe(nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
            return x, {"mean": x.mean()}

    model = build_model(SB3_STYLE, VECTOR_DISCRETE)
    probed = AgentModel(Probe(), model.neck, model.policy)
    (_, _), info = probed(_obs(VECTOR_DISCRETE, 2, 1))
    assert list(info) == ["backbone/mean"]


def _assert_orthogonal(weight: torch.Tensor, gain: float) -> None:
    w = weight.detach().flatten(1)
    gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
    torch.testing.assert_close(gram, gain**2 * torch.eye(gram.shape[0]), atol=1e-4, rtol=1e-4)


def test_orthogonal_init_gains() -> None:
    model = build_model(ModelConfig(backbone={"name": "nature_cnn"}), IMAGE_CONTINUOUS)
    for module in model.backbone.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            _assert_orthogonal(module.weight, math.sqrt(2))
            assert not module.bias.any()
    _assert_orthogonal(model.policy.action_out.weight, 0.01)
    _assert_orthogonal(model.policy.value_out.weight, 1.0)
    assert not model.policy.value_out.bias.any() and not model.policy.action_out.bias.any()

    model = build_model(SB3_STYLE, VECTOR_DISCRETE)
    fused = model.policy.fused_mlp
    for i in range(2):
        for j in range(2):  # every layer of actor (0) and critic (1) on its own
            weight, bias = fused.layer(i, j)
            _assert_orthogonal(weight, math.sqrt(2))
            assert not bias.any()
    _assert_orthogonal(model.policy.action_out.weight, 0.01)

    plain = build_model(ModelConfig(orthogonal_init=False), VECTOR_DISCRETE)
    assert plain.policy.action_out.weight.abs().max() > 0.05  # PyTorch default, not 0.01


def test_orthogonal_init_keeps_log_std_bias() -> None:
    policy = {"name": "actor_critic", "state_dependent_std": True, "log_std_init": -0.5}
    model = build_model(ModelConfig(policy=policy), VECTOR_CONTINUOUS)
    bias = model.policy.action_out.bias
    assert torch.equal(bias[2:], torch.full((2,), -0.5)) and not bias[:2].any()


def test_impala_convs_keep_default_init() -> None:
    model = build_model(ModelConfig(backbone={"name": "impala_cnn"}), IMAGE_DISCRETE)
    conv = model.backbone.convs[0]
    assert conv.bias.abs().sum() > 0  # PyTorch default (uniform bias), not orthogonal's zero
    features, _ = model.backbone(_obs(IMAGE_DISCRETE, 8, 1))
    assert features.std() < 1.0  # residual blocks did not blow the scale up


@pytest.mark.parametrize(
    ("cfg", "match"),
    [
        (
            ModelConfig(backbone={"name": "resnet"}),
            r"model\.backbone\.name: .*valid: conv, impala_cnn",
        ),
        (ModelConfig(backbone={"hidden_sizes": [8]}), r"model\.backbone\.name: missing; valid"),
        (ModelConfig(neck={"name": "lstmm"}), r"model\.neck\.name: .*valid: gru, identity, lstm"),
        (ModelConfig(policy={"name": "dqn"}), r"model\.policy\.name: .*valid: actor_critic"),
        (
            ModelConfig(backbone={"name": "mlp", "activation": "sigmoid"}),
            r"activation.*'sigmoid'.*valid: elu, gelu, relu, silu, tanh",
        ),
        (
            ModelConfig(policy={"name": "actor_critic", "activation": "Tanh"}),
            r"model\.policy\.activation.*did you mean 'tanh'",
        ),
        (
            ModelConfig(backbone={"name": "mlp", "hidden_size": [8]}),
            r"model\.backbone\.hidden_size: unknown key; did you mean 'hidden_sizes'",
        ),
        (ModelConfig(neck={"name": "identity", "size": 3}), r"model\.neck\.size: unknown key"),
        (
            ModelConfig(
                policy={"name": "actor_critic", "share_hidden": True, "critic_hidden": [8]}
            ),
            r"model\.policy\.critic_hidden: must be \[\]",
        ),
        (ModelConfig(policy={"name": "actor_critic", "squash": True}), "continuous actions"),
    ],
)
def test_config_errors_name_the_choices(cfg: ModelConfig, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        build_model(cfg, VECTOR_DISCRETE)


def test_squash_needs_finite_bounds() -> None:
    inf = np.array([np.inf], np.float32)
    spec = EnvSpec(
        "x", (3,), np.dtype(np.float32), "continuous", (), (1,), action_low=-inf, action_high=inf
    )
    with pytest.raises(ConfigError, match="finite action bounds"):
        build_model(ModelConfig(policy={"name": "actor_critic", "squash": True}), spec)


def _sb3_policy(spec: EnvSpec) -> nn.Module:
    spaces = pytest.importorskip("gymnasium.spaces")
    policies = pytest.importorskip("stable_baselines3.common.policies")
    obs_space = spaces.Box(-np.inf, np.inf, spec.obs_shape, np.float32)
    if spec.discrete:
        action_space = spaces.Discrete(spec.num_actions)
    else:
        action_space = spaces.Box(spec.action_low, spec.action_high, spec.action_shape)
    return policies.ActorCriticPolicy(obs_space, action_space, lambda _: 3e-4)


@pytest.mark.parametrize("spec", [VECTOR_DISCRETE, VECTOR_CONTINUOUS], ids=["disc", "cont"])
def test_reproduces_sb3_mlp_policy(spec: EnvSpec) -> None:
    """Same parameters in, same log-probs, entropies and values out as SB3's MlpPolicy."""
    sb3 = _sb3_policy(spec)
    model = build_model(SB3_STYLE, spec)
    ours = model.policy
    assert ours.fused_mlp is not None  # actor and critic run as one batched MLP
    fused = ours.fused_mlp
    pairs = [
        (fused.layer(0, 0), sb3.mlp_extractor.policy_net[0]),
        (fused.layer(1, 0), sb3.mlp_extractor.policy_net[2]),
        (fused.layer(0, 1), sb3.mlp_extractor.value_net[0]),
        (fused.layer(1, 1), sb3.mlp_extractor.value_net[2]),
        ((ours.action_out.weight, ours.action_out.bias), sb3.action_net),
        ((ours.value_out.weight, ours.value_out.bias), sb3.value_net),
    ]
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in sb3.parameters())
    with torch.no_grad():
        for (weight, bias), theirs in pairs:
            theirs.weight.copy_(weight)
            theirs.bias.copy_(bias)
        if not spec.discrete:
            sb3.log_std.copy_(torch.tensor([0.3, -0.2]))
            ours.log_std.copy_(sb3.log_std)
    obs = torch.randn(6, *spec.obs_shape)
    (out, _), _ = model(obs.unsqueeze(1))
    action = out.dist.sample().squeeze(1)
    values, log_prob, entropy = sb3.evaluate_actions(obs, action)
    torch.testing.assert_close(out.value.view(6, 1), values)
    torch.testing.assert_close(out.dist.log_prob(action.unsqueeze(1)).squeeze(1), log_prob)
    torch.testing.assert_close(out.dist.entropy().squeeze(1), entropy)


@pytest.mark.parametrize("cfg", [ModelConfig(), SB3_STYLE], ids=["default", "fused"])
@pytest.mark.parametrize("spec", [VECTOR_DISCRETE, VECTOR_CONTINUOUS], ids=["disc", "cont"])
def test_bf16_autocast_outputs_float32(spec: EnvSpec, cfg: ModelConfig) -> None:
    """Log-probs and values stay float32 under autocast (PPO ratios, returns)."""
    model = build_model(cfg, spec)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        (out, _), _ = model(_obs(spec, 4, 2))
        _, log_prob = out.dist.sample_and_log_prob()
        (value, _), _ = model.value_only(_obs(spec, 4, 2))
    assert out.value.dtype == log_prob.dtype == out.dist.entropy().dtype == torch.float32
    assert value.dtype == torch.float32
    (log_prob.sum() + out.value.sum()).backward()
    assert all(p.grad is not None and p.grad.dtype == p.dtype for p in model.parameters())

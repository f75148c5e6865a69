"""The Nature CNN's embedding size, optional hidden layer and last-layer type (linear or conv)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reprl.errors import ConfigError
from reprl.models import ModelConfig, build_model
from reprl.models.backbones import NatureCNN, NatureCNNConfig
from reprl.models.layers import HIDDEN_GAIN
from reprl.schema import from_dict
from reprl.types import EnvSpec

ATARI = EnvSpec("ALE/Pong-v5", (4, 84, 84), np.dtype(np.uint8), "discrete", num_actions=6)


def frames(n: int, t: int) -> torch.Tensor:
    return torch.randint(0, 256, (n, t, 4, 84, 84), dtype=torch.uint8)


def shapes(module: torch.nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    return [(name, tuple(p.shape)) for name, p in module.named_parameters()]


@pytest.mark.parametrize("last_layer", ["linear", "conv"])
@pytest.mark.parametrize("features_dim", [16, 448, 2048])
def test_embedding_sizes(features_dim: int, last_layer: str) -> None:
    cfg = from_dict(
        NatureCNNConfig, {"features_dim": features_dim, "last_layer": last_layer}, "m.backbone"
    )
    net = NatureCNN(cfg, ATARI)
    obs = frames(2, 3)
    features, info = net(obs)
    assert features.shape == (2, 3, features_dim) and net.out_dim == features_dim
    assert features.dtype == torch.float32 and info == {}
    assert (features >= 0).all()  # ReLU after the last layer, in both forms
    steps = torch.cat([net(obs[:, i : i + 1])[0] for i in range(3)], dim=1)
    torch.testing.assert_close(steps, features)  # T folded into N


def test_default_network_is_unchanged() -> None:
    """The paper's network, parameter for parameter, as before these options existed."""
    assert shapes(NatureCNN(NatureCNNConfig(), ATARI)) == [
        ("convs.0.weight", (32, 4, 8, 8)),
        ("convs.0.bias", (32,)),
        ("convs.2.weight", (64, 32, 4, 4)),
        ("convs.2.bias", (64,)),
        ("convs.4.weight", (64, 64, 3, 3)),
        ("convs.4.bias", (64,)),
        ("head.0.weight", (512, 3136)),
        ("head.0.bias", (512,)),
    ]


def test_conv_last_layer_is_a_fully_connected_layer_in_conv_form() -> None:
    linear = NatureCNN(NatureCNNConfig(features_dim=448), ATARI)
    conv = NatureCNN(NatureCNNConfig(features_dim=448, last_layer="conv"), ATARI)
    assert ("head.0.weight", (448, 64, 7, 7)) in shapes(conv)  # kernel = the whole 7x7 map
    assert sum(p.numel() for p in conv.parameters()) == sum(p.numel() for p in linear.parameters())
    state = linear.state_dict()
    state["head.0.weight"] = state["head.0.weight"].reshape(448, 64, 7, 7)  # flatten order
    conv.load_state_dict(state)
    obs = frames(4, 1)
    torch.testing.assert_close(conv(obs)[0], linear(obs)[0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("last_layer", ["linear", "conv"])
def test_hidden_layer_as_cleanrl_rnd(last_layer: str) -> None:
    """CleanRL ``ppo_rnd_envpool.py``: flatten -> 256 -> ReLU -> 448 -> ReLU."""
    net = NatureCNN(NatureCNNConfig(features_dim=448, hidden_dim=256, last_layer=last_layer), ATARI)
    head = [s for s in shapes(net) if s[0].startswith("head.")]
    if last_layer == "linear":
        assert head == [
            ("head.0.weight", (256, 3136)),
            ("head.0.bias", (256,)),
            ("head.2.weight", (448, 256)),
            ("head.2.bias", (448,)),
        ]
    else:
        assert head == [
            ("head.0.weight", (256, 64, 7, 7)),
            ("head.0.bias", (256,)),
            ("head.2.weight", (448, 256, 1, 1)),
            ("head.2.bias", (448,)),
        ]
    assert net(frames(2, 2))[0].shape == (2, 2, 448)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"last_layer": "mlp"}, r"model\.backbone\.last_layer: unknown 'mlp'; valid: linear, conv"),
        ({"features_dim": 0}, r"model\.backbone\.features_dim: must be positive"),
        ({"hidden_dim": -1}, r"model\.backbone\.hidden_dim: must be positive or null"),
    ],
)
def test_bad_options_fail_at_load_time(options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_dict(NatureCNNConfig, options, "model.backbone")
    with pytest.raises(ConfigError, match=message):  # also when built from an unvalidated config
        NatureCNN(NatureCNNConfig(**options), ATARI)


@pytest.mark.parametrize("last_layer", ["linear", "conv"])
@pytest.mark.parametrize("hidden_dim", [None, 256])
def test_orthogonal_init_covers_the_head(last_layer: str, hidden_dim: int | None) -> None:
    """Every head layer, conv weights viewed as ``(out, in * kh * kw)`` as
    ``nn.init.orthogonal_`` does: orthogonal rows (or columns, whichever are fewer) of norm
    sqrt(2), biases 0 (CleanRL's ``layer_init``)."""
    backbone = {"name": "nature_cnn", "features_dim": 448, "last_layer": last_layer}
    backbone["hidden_dim"] = hidden_dim
    model = build_model(ModelConfig(backbone=backbone), ATARI)
    layers = [m for m in model.backbone.head if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    assert len(layers) == (1 if hidden_dim is None else 2)
    for layer in layers:
        w = layer.weight.detach().reshape(layer.weight.shape[0], -1)
        gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
        eye = torch.eye(min(w.shape)) * HIDDEN_GAIN**2
        torch.testing.assert_close(gram, eye, rtol=0, atol=1e-4)
        assert not layer.bias.detach().any()


def test_channels_last_conv_head_matches_default() -> None:
    cfg = NatureCNNConfig(features_dim=64, hidden_dim=32, last_layer="conv")
    default = NatureCNN(cfg, ATARI)
    fast = NatureCNN(NatureCNNConfig(**{**vars(cfg), "channels_last": True}), ATARI)
    fast.load_state_dict(default.state_dict())
    assert fast.head[0].weight.is_contiguous(memory_format=torch.channels_last)
    obs = frames(3, 2)
    torch.testing.assert_close(fast(obs)[0], default(obs)[0], rtol=1e-4, atol=1e-5)

"""The configurable conv backbone: DrQ's and DER's encoders, shapes and config errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reprl.errors import ConfigError
from reprl.models.backbones import ConvConfig, ConvNet
from reprl.schema import from_dict
from reprl.types import EnvSpec


def image_spec(shape: tuple[int, ...]) -> EnvSpec:
    return EnvSpec(
        env_id="Img-v0",
        obs_shape=shape,
        obs_dtype=np.dtype(np.uint8),
        action_type="discrete",
        num_actions=3,
    )


def test_drq_encoder_output_is_bounded_and_shaped() -> None:
    net = ConvNet(ConvConfig(), image_spec((9, 84, 84)))
    obs = torch.randint(0, 256, (2, 3, 9, 84, 84), dtype=torch.uint8)
    features, _ = net(obs)
    assert features.shape == (2, 3, 50) and net.out_dim == 50
    assert features.abs().max() <= 1.0  # LayerNorm then tanh
    # 84 -> 41 (3x3 stride 2) -> 39 -> 37 -> 35, 32 channels before the head
    assert net.head[0].in_features == 32 * 35 * 35


def test_der_encoder_flattens_576_features() -> None:
    cfg = ConvConfig(channels=[32, 64], kernels=[5, 5], strides=[5, 5], features_dim=None)
    net = ConvNet(cfg, image_spec((4, 84, 84)))
    features, _ = net(torch.zeros(1, 1, 4, 84, 84, dtype=torch.uint8))
    assert net.out_dim == 576 and features.shape == (1, 1, 576)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"channels": [32], "kernels": [3, 3], "strides": [1]}, "equal"),
        ({"head": "softmax"}, "head"),
        ({"features_dim": 0}, "features_dim"),
    ],
)
def test_bad_options_fail_at_load_time(options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_dict(ConvConfig, options, "model.backbone")


def test_stack_too_deep_for_the_image_is_a_config_error() -> None:
    cfg = ConvConfig(channels=[8, 8], kernels=[8, 8], strides=[4, 4])
    with pytest.raises(ConfigError, match="does not fit"):
        ConvNet(cfg, image_spec((1, 16, 16)))

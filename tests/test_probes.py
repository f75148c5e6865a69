"""Linear probes (Zhang et al. 2022): F1 metrics against hand-computed cases; probes find
linearly decodable reward and action information and not noise; the protocol is seeded."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reprl.data.datasets.windows import Segment, WindowSampler
from reprl.evaluation.probes import (
    ProbeConfig,
    f1_scores,
    probe_scores,
    run_probes,
    weighted_f1,
)


def test_f1_by_hand() -> None:
    true = np.array([1, 1, 0, 0, 1, 2])
    pred = np.array([1, 0, 0, 1, 1, 2])
    # class 1: TP 2, FP 1, FN 1 -> 4/6; class 0: TP 1, FP 1, FN 1 -> 2/4; class 2: 1
    np.testing.assert_allclose(f1_scores(pred, true, 3), [0.5, 2 / 3, 1.0])
    assert weighted_f1(pred, true, 3) == pytest.approx((2 * 0.5 + 3 * 2 / 3 + 1 * 1.0) / 6)


def test_probes_decode_linear_information_and_not_noise() -> None:
    g = torch.Generator().manual_seed(0)
    n, d = 2000, 16
    features = torch.randn(n, d, generator=g)
    reward = (features[:, 0] + 0.5 * features[:, 1] > 0.8).float()
    action = torch.stack([features[:, 2], features[:, 3], -features[:, 2] - features[:, 3]]).argmax(
        0
    )
    cfg = ProbeConfig(num_samples=n)
    good = probe_scores(features, reward, action, 3, cfg)
    assert good["probe/reward_f1"] > 0.9 and good["probe/action_f1"] > 0.9
    noise = torch.randn(n, d, generator=g)
    bad = probe_scores(noise, reward, action, 3, cfg)
    assert bad["probe/reward_f1"] < 0.5 and bad["probe/action_f1"] < 0.6
    assert probe_scores(features, reward, action, 3, cfg) == good  # deterministic
    perm = torch.randperm(n, generator=g)  # shuffled labels: chance level
    shuffled = probe_scores(features, reward[perm], action[perm], 3, cfg)
    pos = float(reward.mean())
    assert shuffled["probe/reward_f1"] < 2 * pos  # chance F1 of the positive class ~ its rate
    assert shuffled["probe/action_f1"] < 0.5  # chance for 3 balanced classes ~ 1/3


def test_run_probes_on_a_dataset_through_a_backbone() -> None:
    """Observations whose first feature carries the reward sign: an identity-like backbone
    decodes it, a constant one cannot."""
    rng = np.random.default_rng(0)
    n = 3000
    obs = rng.normal(size=(n, 4)).astype(np.float32)
    reward = (obs[:, 0] > 1.0).astype(np.float32)
    action = (obs[:, 1] > 0).astype(np.int64)
    terminal = np.zeros(n, bool)
    terminal[99::100] = True
    sampler = WindowSampler([Segment(obs, action, reward, terminal)], val_frac=0.2, seed=0)

    class Identity(torch.nn.Module):
        def __init__(self, scale: float) -> None:
            super().__init__()
            self.scale = torch.nn.Parameter(torch.tensor(scale))

        def forward(self, x: torch.Tensor):
            return x * self.scale, {}

    cfg = ProbeConfig(num_samples=1000)
    good = run_probes(Identity(1.0), sampler, 2, cfg)
    assert good["probe/reward_f1"] > 0.8 and good["probe/action_f1"] > 0.9
    blind = run_probes(Identity(0.0), sampler, 2, cfg)
    assert blind["probe/reward_f1"] < 0.3

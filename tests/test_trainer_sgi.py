"""SPR / SGI pretraining (``trainer=sgi``): the SPR loss against a per-step loop, the episode
mask, inverse dynamics on a decodable toy, gradient isolation of the EMA target, the goal
option, and short runs on generated DQN-Replay data (loss decreases, probes and checkpoints,
exact resume)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from reprl.config import load_config
from reprl.errors import ReprlError
from reprl.models.backbones import NatureCNN, NatureCNNConfig
from reprl.runs import checkpoint as ckpt
from reprl.train import train
from reprl.trainers.base import TrainerModel
from reprl.trainers.spr import (
    SGIHead,
    SGITrainerConfig,
    masked_cross_entropy,
    same_episode_steps,
    spr_loss,
)
from reprl.types import Batch, EnvSpec
from tests.test_pretrain import QUIET, assert_resume_from_middle_matches, records

pytestmark = [pytest.mark.atari, pytest.mark.usefixtures("one_thread")]
SPEC = EnvSpec("toy", (4, 84, 84), np.dtype(np.uint8), "discrete", num_actions=6)


def sgi_args(dataset: Path) -> list[str]:
    """20 updates of 8 windows x 6 steps (48 sampled steps each)."""
    return [
        "experiment=sgi_pretrain_atari",
        f"dataset.root={dataset}",
        "dataset.checkpoints=[0]",
        "trainer.batch_size=8",
        "trainer.lr=1e-3",
        "total_steps=960",
        "probe.num_samples=300",
        "probe.every_steps=480",
        "checkpoint.every_steps=480",
        "torch_threads=1",
        *QUIET,
    ]


def head(**overrides: object) -> SGIHead:
    cfg = SGITrainerConfig(projection_dim=32, transition_hidden_dim=32, **overrides)
    cfg.validate("trainer")
    return SGIHead(cfg, SPEC, TrainerModel(NatureCNN(NatureCNNConfig(features_dim=32), SPEC)))


def random_batch(n: int = 4, t: int = 6, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    z = torch.zeros(n, t, dtype=torch.bool)
    return Batch(
        obs=torch.randint(0, 256, (n, t, 4, 84, 84), generator=g, dtype=torch.uint8),
        action=torch.randint(0, 6, (n, t), generator=g),
        reward=torch.zeros(n, t),
        terminated=z,
        truncated=z,
        is_first=z,
        valid=~z,
    )


# ---------------------------------------------------------------------------------- maths
def test_spr_loss_equals_a_per_step_loop() -> None:
    g = torch.Generator().manual_seed(0)
    n, k, p = 5, 4, 7
    pred, target = torch.randn(n, k, p, generator=g), torch.randn(n, k, p, generator=g)
    mask = torch.rand(n, k, generator=g) > 0.3
    total = 0.0
    for i in range(n):
        for j in range(k):
            if mask[i, j]:
                a, b = pred[i, j], target[i, j]
                total += float(2 - 2 * (a @ b) / (a.norm() * b.norm()))
    torch.testing.assert_close(spr_loss(pred, target, mask), torch.tensor(total / n))


def test_same_episode_steps_stops_at_a_reset_or_an_invalid_step() -> None:
    valid = torch.ones(2, 5, dtype=torch.bool)
    is_first = torch.zeros(2, 5, dtype=torch.bool)
    is_first[0, 0] = is_first[0, 3] = True  # the window's own start does not cut it
    valid[1, 2] = False
    expected = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 0, 0, 0]], dtype=torch.bool)
    assert torch.equal(same_episode_steps(valid, is_first), expected)


def test_inverse_dynamics_learns_a_decodable_action() -> None:
    """Latent pairs ``(y, y + e_a)``: the inverse model's cross-entropy drops near 0."""
    torch.manual_seed(0)
    h = head()
    effects = torch.randn(6, 32)
    opt = torch.optim.Adam(h.inverse.parameters(), lr=3e-3)
    for _ in range(300):
        y = torch.randn(64, 5, 32)
        a = torch.randint(0, 6, (64, 5))
        logits = h.inverse(torch.cat([y, y + effects[a]], -1))
        loss = masked_cross_entropy(logits, a, torch.ones(64, 5, dtype=torch.bool))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1


def test_the_ema_target_gets_no_gradient_and_follows_the_online_network() -> None:
    torch.manual_seed(0)
    h = head(goal_coef=1.0)
    losses, info = h.compute_loss(random_batch())
    assert set(losses) == {"loss_ssl_spr", "loss_ssl_inverse", "loss_ssl_goal"}
    assert all(torch.isfinite(v) for v in [*losses.values(), *info.values()])
    sum(losses.values()).backward()
    targets = [*h.target_encoder.parameters(), *h.goal_q_target.parameters()]
    assert all(not p.requires_grad and p.grad is None for p in targets)
    online = h.encoder.encoder.convs[0].weight
    assert online.grad is not None and online.grad.abs().sum() > 0
    before = h.target_encoder.encoder.encoder.convs[0].weight.clone()
    with torch.no_grad():
        online.add_(1.0)
    h.after_update()
    after = h.target_encoder.encoder.encoder.convs[0].weight
    torch.testing.assert_close(after, 0.99 * before + 0.01 * online)


def test_each_term_is_a_switch() -> None:
    torch.manual_seed(0)
    spr_only, _ = head(inverse_coef=0.0).compute_loss(random_batch())
    assert set(spr_only) == {"loss_ssl_spr"}
    goal_only, _ = head(spr_coef=0.0, inverse_coef=0.0, goal_coef=1.0).compute_loss(random_batch())
    assert set(goal_only) == {"loss_ssl_goal"}


@pytest.mark.parametrize(
    "override, message",
    [
        ("trainer.seq_len=1", "seq_len: must be >= 2"),
        ("trainer.spr_coef=0", "one of spr_coef, inverse_coef, goal_coef"),
        ("trainer.momentum=1.0", r"momentum: must be in \[0, 1\)"),
    ],
)
def test_config_mistakes_are_one_line_errors(
    override: str, message: str, dataset: Path, tmp_path: Path
) -> None:
    extra = ["trainer.inverse_coef=0"] if "spr_coef" in override else []
    with pytest.raises(ReprlError, match=message):
        train(load_config([*sgi_args(dataset), override, *extra, f"run_dir={tmp_path}"]))


# ---------------------------------------------------------------------------------- runs
def test_sgi_loss_decreases_on_a_small_dataset(dataset: Path, tmp_path: Path) -> None:
    """60 updates: the SPR loss of the last 10 is well below the first 10's."""
    overrides = ["total_steps=2880", "probe.every_steps=0", "checkpoint.every_steps=0"]
    train(load_config([*sgi_args(dataset), *overrides, f"run_dir={tmp_path}"]))
    rows = records(tmp_path)
    spr = [r["losses/ssl_spr"] for r in rows if "losses/ssl_spr" in r]
    inverse = [r["losses/ssl_inverse"] for r in rows if "losses/ssl_inverse" in r]
    assert len(spr) == len(inverse) == 60 and np.all(np.isfinite(inverse))
    assert np.mean(spr[-10:]) < 0.5 * np.mean(spr[:10])


def test_sgi_run_logs_probes_checkpoints_and_resumes_exactly(dataset: Path, tmp_path: Path) -> None:
    full, part = tmp_path / "full", tmp_path / "part"
    result = train(load_config([*sgi_args(dataset), f"run_dir={full}"]))
    assert result.global_step == 960
    rows = records(full)
    assert sum("losses/ssl_spr" in r for r in rows) == 20
    assert [r["global_step"] for r in rows if "probe/reward_f1" in r] == [480, 960]
    model = ckpt.load(ckpt.resolve(full))["agent"]["model"]
    assert any(k.startswith("backbone.") for k in model)
    assert any(k.startswith("head.target_encoder.") for k in model)
    # resume from the middle checkpoint: the same losses, probes and weights
    assert_resume_from_middle_matches(full, part, 480)

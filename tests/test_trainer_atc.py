"""ATC pretraining (``trainer=atc``): the bilinear InfoNCE against a per-row loop and on
matched vs shuffled pairs, the pair mask, gradient isolation of the EMA target, and short runs
on generated DQN-Replay data (loss decreases, probes and checkpoints, exact resume)."""

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
from reprl.trainers.atc import ATCHead, ATCTrainerConfig, info_nce, pair_mask
from reprl.trainers.base import TrainerModel
from reprl.types import Batch, EnvSpec
from tests.test_pretrain import QUIET, assert_resume_from_middle_matches, records

pytestmark = [pytest.mark.atari, pytest.mark.usefixtures("one_thread")]
SPEC = EnvSpec("toy", (4, 84, 84), np.dtype(np.uint8), "discrete", num_actions=6)


def atc_args(dataset: Path) -> list[str]:
    """20 updates of 8 windows x 4 steps (one anchor each; 32 sampled steps per update)."""
    return [
        "experiment=atc_pretrain_atari",
        f"dataset.root={dataset}",
        "dataset.checkpoints=[0]",
        "trainer.batch_size=8",
        "trainer.seq_len=4",
        "trainer.lr=1e-3",
        "total_steps=640",
        "probe.num_samples=300",
        "probe.every_steps=320",
        "checkpoint.every_steps=320",
        "torch_threads=1",
        *QUIET,
    ]


# ---------------------------------------------------------------------------------- maths
def test_info_nce_equals_a_per_row_loop() -> None:
    g = torch.Generator().manual_seed(0)
    b, dim = 6, 5
    anchor, positive = torch.randn(b, dim, generator=g), torch.randn(b, dim, generator=g)
    weight = torch.randn(dim, dim, generator=g)
    mask = torch.tensor([1, 1, 0, 1, 0, 1], dtype=torch.bool)
    rows = []
    for i in range(b):
        if mask[i]:
            logits = torch.stack([anchor[i] @ weight @ positive[j] for j in range(b)])
            rows.append(torch.logsumexp(logits, 0) - logits[i])
    loss, accuracy = info_nce(anchor, positive, weight, mask)
    torch.testing.assert_close(loss, torch.stack(rows).mean())
    assert 0.0 <= accuracy.item() <= 1.0


def test_matched_pairs_have_a_lower_info_nce_than_shuffled_ones() -> None:
    g = torch.Generator().manual_seed(0)
    z = torch.nn.functional.normalize(torch.randn(16, 8, generator=g), dim=-1) * 4
    eye = torch.eye(8)
    matched, acc = info_nce(z, z, eye)
    shuffled, _ = info_nce(z, z[torch.randperm(16, generator=g)], eye)
    assert matched < 0.5 * shuffled and acc.item() == 1.0


def test_pair_mask_drops_pairs_across_an_episode_start() -> None:
    valid = torch.ones(2, 6, dtype=torch.bool)
    is_first = torch.zeros(2, 6, dtype=torch.bool)
    is_first[0, 0] = is_first[0, 4] = True  # the start of the window itself is fine
    valid[1, 5] = False
    expected = torch.tensor([[1, 0, 0], [1, 1, 0]], dtype=torch.bool)
    assert torch.equal(pair_mask(valid, is_first, 3), expected)


def test_the_ema_target_gets_no_gradient_and_follows_the_online_network() -> None:
    torch.manual_seed(0)
    cfg = ATCTrainerConfig(seq_len=5, delta=2, latent_dim=16, predictor_hidden_dim=16)
    cfg.validate("trainer")
    h = ATCHead(cfg, SPEC, TrainerModel(NatureCNN(NatureCNNConfig(features_dim=32), SPEC)))
    n, t = 4, 5
    z = torch.zeros(n, t, dtype=torch.bool)
    obs = torch.randint(0, 256, (n, t, 4, 84, 84), dtype=torch.uint8)
    mb = Batch(obs, torch.zeros(n, t, dtype=torch.long), torch.zeros(n, t), z, z, z, ~z)
    losses, info = h.compute_loss(mb)
    assert set(losses) == {"loss_ssl_atc"} and torch.isfinite(losses["loss_ssl_atc"])
    losses["loss_ssl_atc"].backward()
    assert all(not p.requires_grad and p.grad is None for p in h.target_encoder.parameters())
    online = h.online.encoder.convs[0].weight
    assert online.grad is not None and h.weight.grad is not None
    before = h.target_encoder.encoder.convs[0].weight.clone()
    with torch.no_grad():
        online.add_(1.0)
    h.after_update()
    after = h.target_encoder.encoder.convs[0].weight
    torch.testing.assert_close(after, 0.99 * before + 0.01 * online)


def test_delta_must_fit_in_the_window(dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(ReprlError, match=r"seq_len: must be > delta \(3\)"):
        train(load_config([*atc_args(dataset), "trainer.seq_len=3", f"run_dir={tmp_path}"]))


# ---------------------------------------------------------------------------------- runs
def test_atc_loss_decreases_on_a_small_dataset(dataset: Path, tmp_path: Path) -> None:
    """60 updates: the InfoNCE of the last 10 is clearly below the first 10's (ln 8 = 2.08 at
    chance; ~1.5 after 60 updates)."""
    overrides = ["total_steps=1920", "probe.every_steps=0", "checkpoint.every_steps=0"]
    train(load_config([*atc_args(dataset), *overrides, f"run_dir={tmp_path}"]))
    losses = [r["losses/ssl_atc"] for r in records(tmp_path) if "losses/ssl_atc" in r]
    assert len(losses) == 60
    assert np.mean(losses[-10:]) < 0.85 * np.mean(losses[:10])


def test_atc_run_logs_probes_checkpoints_and_resumes_exactly(dataset: Path, tmp_path: Path) -> None:
    full, part = tmp_path / "full", tmp_path / "part"
    result = train(load_config([*atc_args(dataset), f"run_dir={full}"]))
    assert result.global_step == 640
    rows = records(full)
    assert sum("losses/ssl_atc" in r for r in rows) == 20
    assert [r["global_step"] for r in rows if "probe/reward_f1" in r] == [320, 640]
    model = ckpt.load(ckpt.resolve(full))["agent"]["model"]
    assert any(k.startswith("backbone.") for k in model)
    assert any(k.startswith("head.target_encoder.") for k in model)
    # resume from the middle checkpoint: the same losses, probes and weights
    assert_resume_from_middle_matches(full, part, 320)

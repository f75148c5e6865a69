"""MLR pretraining (Yu et al. 2022): cube masking, the latent decoder's (N, T) contract, the
EMA target's gradient isolation, and the trainer in the one loop (loss decreases, probes,
checkpoints, exact resume) on the generated DQN-Replay frames of test_pretrain."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from reprl.config import load_config
from reprl.models.backbones import NatureCNN, NatureCNNConfig
from reprl.runs import checkpoint as ckpt
from reprl.train import train
from reprl.trainers.base import TrainerModel
from reprl.trainers.mlr import (
    LatentDecoder,
    MLRTrainer,
    MLRTrainerConfig,
    apply_mask,
    cube_mask,
)
from reprl.types import Batch
from tests.test_pretrain import (
    PONG_SPEC,
    assert_resume_from_middle_matches,
    pretrain_args,
    records,
)

SPEC = PONG_SPEC
SMALL = [
    "trainer.batch_size=8",
    "trainer.seq_len=4",
    "trainer.cube_size=[2,12,12]",
    "trainer.ff_dim=128",
    "trainer.hidden_sizes=[128]",
    "trainer.predictor_hidden_sizes=[128]",
    "model.backbone.features_dim=128",
]


def args(dataset: Path, run: Path, *extra: str) -> list[str]:
    """Pretraining overrides: 8 windows of 4 steps (32 sampled steps) per update, small heads."""
    return [*pretrain_args(dataset, "mlr"), *SMALL, *extra, f"run_dir={run}"]


# ----------------------------------------------------------------------------- masking
@pytest.mark.parametrize(
    "shape, cube, ratio",
    [
        ((3, 8, 84, 84), (4, 12, 12), 0.5),
        ((2, 5, 10, 10), (2, 4, 4), 0.5),
        ((4, 6, 8, 8), (3, 4, 2), 0.3),
    ],
)
def test_cube_mask_hides_the_requested_ratio_of_whole_cubes(shape, cube, ratio) -> None:
    mask = cube_mask(shape, cube, ratio, generator=torch.Generator().manual_seed(0))
    assert mask.shape == shape and mask.dtype == torch.bool
    n, t, h, w = shape
    ct, ch, cw = cube
    grid = (-(-t // ct), -(-h // ch), -(-w // cw))
    # slow reference: visit every cube; it must be all masked or all visible
    for i in range(n):
        masked = 0
        for a in range(grid[0]):
            for b in range(grid[1]):
                for c in range(grid[2]):
                    block = mask[
                        i, a * ct : (a + 1) * ct, b * ch : (b + 1) * ch, c * cw : (c + 1) * cw
                    ]
                    assert block.all() or not block.any()
                    masked += int(block.all())
        assert masked == round(ratio * np.prod(grid))
    assert not torch.equal(mask[0], mask[1])  # each window draws its own cubes


def test_the_mask_covers_every_channel_of_a_frame_stack() -> None:
    obs = torch.randint(1, 256, (2, 8, 4, 84, 84), dtype=torch.uint8)
    mask = cube_mask((2, 8, 84, 84), (4, 12, 12), 0.5)
    out = apply_mask(obs, mask)
    assert out.dtype == torch.uint8
    for c in range(4):
        assert torch.equal(out[:, :, c] == 0, mask)  # the same pixels in every channel
    assert torch.equal(out[~mask[:, :, None].expand_as(obs)], obs[~mask[:, :, None].expand_as(obs)])


# ----------------------------------------------------------------------------- decoder
def test_the_latent_decoder_does_not_attend_across_an_episode_start() -> None:
    torch.manual_seed(0)
    cfg = MLRTrainerConfig(seq_len=6, num_heads=2, ff_dim=32)
    decoder = LatentDecoder(cfg, SPEC, 16)
    states, action = torch.randn(2, 6, 16), torch.randint(0, 6, (2, 6))
    is_first = torch.zeros(2, 6, dtype=torch.bool)
    is_first[:, 3] = True
    out, _ = decoder(states, action, is_first)
    changed = states.clone()
    changed[:, 3:] = torch.randn(2, 3, 16)  # a different next episode
    out2, _ = decoder(changed, action, is_first)
    torch.testing.assert_close(out[:, :3], out2[:, :3])
    assert not torch.allclose(out[:, 3:], out2[:, 3:])
    # without the reset the first part sees the second
    out3, _ = decoder(changed, action, torch.zeros_like(is_first))
    out4, _ = decoder(states, action, torch.zeros_like(is_first))
    assert not torch.allclose(out3[:, :3], out4[:, :3])


# ----------------------------------------------------------------------------- target
def test_the_ema_target_gets_no_gradient_and_follows_the_online_network() -> None:
    torch.manual_seed(0)
    cfg = MLRTrainerConfig(batch_size=4, seq_len=4, cube_size=[2, 12, 12], momentum=0.9)
    cfg.hidden_sizes, cfg.predictor_hidden_sizes, cfg.ff_dim = [32], [32], 32
    model = TrainerModel(NatureCNN(NatureCNNConfig(features_dim=32), SPEC))
    trainer = MLRTrainer.build(cfg, SPEC, model, torch.device("cpu"))
    head = model.head
    target_params = list(head.target_encoder.parameters())
    assert target_params and not any(p.requires_grad for p in target_params)
    trainable = {id(p) for p in trainer.optimizer.params}
    assert not any(id(p) in trainable for p in target_params)
    before = [p.detach().clone() for p in target_params]
    mb = Batch(
        obs=torch.randint(0, 256, (4, 4, 4, 84, 84), dtype=torch.uint8),
        action=torch.randint(0, 6, (4, 4)),
        reward=torch.zeros(4, 4),
        terminated=torch.zeros(4, 4, dtype=torch.bool),
        truncated=torch.zeros(4, 4, dtype=torch.bool),
        is_first=torch.zeros(4, 4, dtype=torch.bool),
        valid=torch.ones(4, 4, dtype=torch.bool),
    )
    losses, _ = trainer.compute_loss(mb)
    trainer.update(losses)
    assert all(p.grad is None for p in target_params)
    assert all(p.grad is not None for p in model.backbone.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, target_params, strict=True))
    trainer.after_update(mb, {})
    online = list(head.target.online.parameters())
    for old, new, live in zip(before, target_params, online, strict=True):
        torch.testing.assert_close(new, 0.9 * old + 0.1 * live.detach())


# ----------------------------------------------------------------------------- in the loop
@pytest.mark.atari
def test_mlr_loss_decreases_on_a_small_dataset(dataset: Path, tmp_path: Path) -> None:
    """60 updates on the generated frames: the mean loss of the last 10 is well below the
    first 10's."""
    overrides = ["total_steps=1920", "probe.every_steps=0", "checkpoint.every_steps=0"]
    train(load_config(args(dataset, tmp_path, *overrides)))
    losses = [r["losses/ssl_mlr"] for r in records(tmp_path) if "losses/ssl_mlr" in r]
    assert len(losses) == 60 and all(np.isfinite(losses))
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:10])


@pytest.mark.atari
def test_mlr_run_logs_probes_checkpoints_and_resumes_exactly(dataset: Path, tmp_path: Path) -> None:
    full, part = tmp_path / "full", tmp_path / "part"
    steps = ["total_steps=320", "probe.every_steps=160", "checkpoint.every_steps=160"]
    result = train(load_config(args(dataset, full, *steps)))
    assert result.global_step == 320  # 10 updates of 32 sampled steps
    rows = records(full)
    assert [r["global_step"] for r in rows if "probe/reward_f1" in r] == [160, 320]
    model = ckpt.load(ckpt.resolve(full))["agent"]["model"]
    assert any(k.startswith("backbone.") for k in model)
    assert any(k.startswith("head.target_encoder.") for k in model)
    # resume from the middle: the same losses, probes and weights as the uninterrupted run
    assert_resume_from_middle_matches(full, part, 160)

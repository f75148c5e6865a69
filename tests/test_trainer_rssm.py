"""RSSM world-model pretraining (PlaNet / DreamerV2): KL balancing against a slow reference
(value and the split of gradients between prior and posterior), free nats, resets at
``is_first``, gradient flow into the backbone, and the trainer in the one loop (loss
decreases, probes, checkpoints, exact resume) on the generated DQN-Replay frames of
test_pretrain."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from reprl.config import load_config
from reprl.models.backbones import NatureCNN, NatureCNNConfig
from reprl.runs import checkpoint as ckpt
from reprl.train import train
from reprl.trainers.base import TrainerModel
from reprl.trainers.rssm import RSSM, RSSMTrainer, RSSMTrainerConfig, balanced_kl
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
    "trainer.seq_len=8",
    "trainer.deter_dim=64",
    "trainer.hidden_dim=64",
    "trainer.stoch_dim=8",
    "trainer.classes=8",
    "trainer.head_hidden_sizes=[64,64]",
    "model.backbone.features_dim=128",
]


def small_config(**kwargs: object) -> RSSMTrainerConfig:
    cfg = RSSMTrainerConfig(deter_dim=16, hidden_dim=16, stoch_dim=3, classes=4, **kwargs)
    cfg.head_hidden_sizes = [16]
    return cfg


def args(dataset: Path, run: Path, *extra: str) -> list[str]:
    """Pretraining overrides: 8 windows of 8 steps (64 sampled steps) per update, a small
    RSSM."""
    return [*pretrain_args(dataset, "rssm"), *SMALL, *extra, f"run_dir={run}"]


# ----------------------------------------------------------------------------- KL balancing
def slow_kl(q_logits: torch.Tensor, p_logits: torch.Tensor) -> torch.Tensor:
    """``mean_b sum_s sum_k q log(q / p)`` by explicit loops over the latents and classes."""
    q, p = q_logits.softmax(-1), p_logits.softmax(-1)
    batch, latents, classes = q.shape
    total = q.new_zeros(())
    for b in range(batch):
        for s in range(latents):
            for k in range(classes):
                total = total + q[b, s, k] * (torch.log(q[b, s, k]) - torch.log(p[b, s, k]))
    return total / batch


@pytest.mark.parametrize("alpha", [0.8, 0.5, 0.2])
def test_kl_balancing_value_and_its_gradient_split(alpha: float) -> None:
    """``alpha * KL(sg(q)||p) + (1 - alpha) * KL(q||sg(p))``: the value of the plain KL, the
    prior's gradient ``alpha`` times the plain KL's, the posterior's ``1 - alpha`` times."""
    torch.manual_seed(0)
    post = torch.nn.Parameter(torch.randn(5, 3, 4, dtype=torch.float64))
    prior = torch.nn.Parameter(torch.randn(5, 3, 4, dtype=torch.float64))
    loss, kl = balanced_kl(post, prior, alpha=alpha)
    reference = slow_kl(post, prior)
    torch.testing.assert_close(loss, reference)
    torch.testing.assert_close(kl, reference.detach())
    grad_post, grad_prior = torch.autograd.grad(reference, [post, prior])
    loss.backward()
    torch.testing.assert_close(prior.grad, alpha * grad_prior)
    torch.testing.assert_close(post.grad, (1 - alpha) * grad_post)


def test_kl_balancing_weights_valid_steps_and_free_nats_stop_gradients() -> None:
    torch.manual_seed(1)
    post = torch.nn.Parameter(torch.randn(2, 3, 2, 5))
    prior = torch.nn.Parameter(torch.randn(2, 3, 2, 5))
    mask = torch.tensor([[True, False, True], [False, False, True]])
    _, kl = balanced_kl(post, prior, mask=mask)
    torch.testing.assert_close(kl, slow_kl(post[mask], prior[mask]).detach(), rtol=1e-5, atol=1e-6)
    loss, _ = balanced_kl(post, prior, free_nats=1e3)
    loss.backward()
    assert loss.item() == pytest.approx(1e3)
    assert torch.all(post.grad == 0) and torch.all(prior.grad == 0)


# ----------------------------------------------------------------------------- resets
@pytest.mark.parametrize("sample", [False, True])
def test_the_rssm_state_resets_at_is_first(sample: bool) -> None:
    """A window with an episode start at step 3 gives the posterior of running steps 3..
    alone (with sampling: the posterior at the reset step, which no sample precedes)."""
    torch.manual_seed(0)
    rssm = RSSM(small_config(), embed_dim=10, action_dim=6)
    embed = torch.randn(2, 7, 10)
    action = F.one_hot(torch.randint(0, 6, (2, 7)), 6).float()
    is_first = torch.zeros(2, 7, dtype=torch.bool)
    is_first[:, 3] = True
    full, _ = rssm.observe(embed, action, is_first, sample=sample)
    alone, _ = rssm.observe(embed[:, 3:], action[:, 3:], is_first[:, 3:], sample=sample)
    steps = slice(3, None) if not sample else slice(3, 4)
    length = 4 if not sample else 1
    for key in ("post_logits", "prior_logits", "deter"):
        torch.testing.assert_close(full[key][:, steps], alone[key][:, :length])
    # without the reset the state carries over
    carried, _ = rssm.observe(embed, action, torch.zeros_like(is_first), sample=sample)
    assert not torch.allclose(carried["post_logits"][:, 3], alone["post_logits"][:, 0])


def test_the_losses_train_the_backbone_prior_and_posterior() -> None:
    torch.manual_seed(0)
    model = TrainerModel(NatureCNN(NatureCNNConfig(features_dim=32), SPEC))
    trainer = RSSMTrainer.build(small_config(image_decoder=True), SPEC, model, torch.device("cpu"))
    n, t = 3, 5
    mb = Batch(
        obs=torch.randint(0, 256, (n, t, 4, 84, 84), dtype=torch.uint8),
        action=torch.randint(0, 6, (n, t)),
        reward=torch.randint(-1, 2, (n, t)).float(),
        terminated=torch.zeros(n, t, dtype=torch.bool),
        truncated=torch.zeros(n, t, dtype=torch.bool),
        is_first=torch.zeros(n, t, dtype=torch.bool),
        valid=torch.ones(n, t, dtype=torch.bool),
    )
    losses, stats = trainer.compute_loss(mb)
    assert set(losses) == {"loss_ssl_rssm"} and torch.isfinite(losses["loss_ssl_rssm"])
    assert {"stats/rssm_kl", "stats/rssm_reward_nll", "stats/rssm_image_nll"} <= set(stats)
    losses["loss_ssl_rssm"].backward()
    head = model.head
    for module in (model.backbone, head.rssm.prior_net, head.rssm.post_net, head.reward_head):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())
    entropy = math.log(4) * 3  # uniform prior: each of 3 latents has 4 classes
    assert stats["stats/rssm_prior_entropy"] <= entropy + 1e-4


# ----------------------------------------------------------------------------- in the loop
@pytest.mark.atari
def test_rssm_loss_decreases_on_a_small_dataset(dataset: Path, tmp_path: Path) -> None:
    """60 updates with the small frame decoder: the mean loss of the last 10 is well below
    the first 10's, and so is the reward NLL alone."""
    overrides = ["total_steps=3840", "probe.every_steps=0", "checkpoint.every_steps=0"]
    train(load_config(args(dataset, tmp_path, "trainer.image_decoder=true", *overrides)))
    rows = [r for r in records(tmp_path) if "losses/ssl_rssm" in r]
    losses = [r["losses/ssl_rssm"] for r in rows]
    reward = [r["stats/rssm_reward_nll"] for r in rows]
    assert len(losses) == 60 and all(np.isfinite(losses))
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:10])
    assert np.mean(reward[-10:]) < 0.9 * np.mean(reward[:10])


@pytest.mark.atari
def test_rssm_run_logs_probes_checkpoints_and_resumes_exactly(
    dataset: Path, tmp_path: Path
) -> None:
    full, part = tmp_path / "full", tmp_path / "part"
    steps = ["total_steps=640", "probe.every_steps=320", "checkpoint.every_steps=320"]
    result = train(load_config(args(dataset, full, *steps)))
    assert result.global_step == 640  # 10 updates of 64 sampled steps
    rows = records(full)
    assert [r["global_step"] for r in rows if "probe/reward_f1" in r] == [320, 640]
    model = ckpt.load(ckpt.resolve(full))["agent"]["model"]
    assert any(k.startswith("backbone.") for k in model)
    assert any(k.startswith("head.rssm.") for k in model)
    # resume from the middle: the same losses, probes and weights as the uninterrupted run
    assert_resume_from_middle_matches(full, part, 320)

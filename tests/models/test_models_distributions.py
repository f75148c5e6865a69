"""Distributions against torch.distributions (the slow, validated reference)."""

from __future__ import annotations

import pytest
import torch
from torch import distributions as td

from reprl.models import Categorical, DiagGaussian


def test_categorical_matches_torch() -> None:
    logits = torch.randn(3, 4, 5) * 3
    dist, ref = Categorical(logits), td.Categorical(logits=logits)
    action = ref.sample()
    assert action.shape == (3, 4)
    torch.testing.assert_close(dist.log_prob(action), ref.log_prob(action))
    torch.testing.assert_close(dist.entropy(), ref.entropy())
    torch.testing.assert_close(dist.probs, ref.probs)
    assert torch.equal(dist.mode(), ref.probs.argmax(-1))
    assert dist.sample().shape == (3, 4) and dist.sample().dtype == torch.int64


def test_categorical_sample_frequencies() -> None:
    logits = torch.tensor([0.0, 1.0, -1.0, 2.0]).log_softmax(-1)
    dist = Categorical(logits.expand(2000, 10, 4))
    freq = torch.bincount(dist.sample().flatten(), minlength=4).float() / 20000
    torch.testing.assert_close(freq, logits.exp(), atol=0.015, rtol=0)
    action, log_prob = dist.sample_and_log_prob()
    torch.testing.assert_close(log_prob, dist.log_prob(action))


def test_categorical_masked_logits_entropy_finite() -> None:
    logits = torch.tensor([[[0.0, float("-inf"), 1.0]]])
    dist = Categorical(logits)
    torch.testing.assert_close(dist.entropy(), td.Categorical(logits=logits).entropy())
    assert int(dist.sample()) != 1


def test_categorical_shape_errors() -> None:
    with pytest.raises(ValueError, match=r"\(N, T, A\)"):
        Categorical(torch.randn(4, 5))
    with pytest.raises(ValueError, match="action must be shaped"):
        Categorical(torch.randn(2, 3, 5)).log_prob(torch.zeros(2, 3, 1, dtype=torch.long))


@pytest.mark.parametrize("action_shape", [(3,), (2, 3)])
@pytest.mark.parametrize("state_dependent", [False, True])
def test_gaussian_matches_torch(action_shape: tuple[int, ...], state_dependent: bool) -> None:
    mean = torch.randn(4, 5, *action_shape)
    log_std = torch.randn_like(mean) if state_dependent else torch.randn(action_shape)
    dist = DiagGaussian(mean, log_std)
    ref = td.Independent(td.Normal(mean, log_std.exp().expand_as(mean)), len(action_shape))
    action = ref.sample()
    torch.testing.assert_close(dist.log_prob(action), ref.log_prob(action))
    torch.testing.assert_close(dist.entropy(), ref.entropy())
    assert torch.equal(dist.mode(), mean)
    assert dist.sample().shape == mean.shape
    sample, log_prob = dist.sample_and_log_prob()
    torch.testing.assert_close(log_prob, ref.log_prob(sample))


def test_gaussian_sample_moments() -> None:
    mean, log_std = torch.tensor([1.0, -2.0]), torch.tensor([0.5, -1.0])
    samples = DiagGaussian(mean.expand(4000, 10, 2), log_std).sample()
    torch.testing.assert_close(samples.mean((0, 1)), mean, atol=0.05, rtol=0)
    torch.testing.assert_close(samples.std((0, 1)), log_std.exp(), atol=0.05, rtol=0)


def _tanh_reference(
    mean: torch.Tensor,
    std: torch.Tensor,
    low: torch.Tensor | None = None,
    high: torch.Tensor | None = None,
) -> td.TransformedDistribution:
    transforms: list[td.Transform] = [td.TanhTransform(cache_size=1)]
    if low is not None and high is not None:
        transforms.append(td.AffineTransform((high + low) / 2, (high - low) / 2))
    return td.TransformedDistribution(td.Normal(mean, std), transforms)


@pytest.mark.parametrize("bounded", [False, True])
def test_squashed_gaussian_log_prob_matches_torch(bounded: bool) -> None:
    mean, log_std = torch.randn(4, 5, 3), torch.randn(3) * 0.5
    low = torch.tensor([-2.0, 0.0, -1.0]) if bounded else None
    high = torch.tensor([2.0, 5.0, 1.0]) if bounded else None
    dist = DiagGaussian(mean, log_std, squash=True, low=low, high=high)
    ref = _tanh_reference(mean, log_std.exp().expand_as(mean), low, high)
    action = ref.sample()
    expected = ref.log_prob(action).sum(-1)
    # The pre-squash sample path (no atanh) and the log_prob(action) path agree with torch.
    torch.testing.assert_close(dist.log_prob(action), expected, rtol=1e-4, atol=1e-4)
    sample, log_prob = dist.sample_and_log_prob()
    torch.testing.assert_close(log_prob, ref.log_prob(sample).sum(-1), rtol=1e-4, atol=1e-4)
    lo = -1.0 if low is None else low
    hi = 1.0 if high is None else high
    assert ((sample >= lo) & (sample <= hi)).all()
    expected_mode = (
        torch.tanh(mean)
        if low is None
        else (high + low) / 2 + torch.tanh(mean) * ((high - low) / 2)
    )
    torch.testing.assert_close(dist.mode(), expected_mode)


def test_squashed_gaussian_saturated_action_is_finite() -> None:
    dist = DiagGaussian(torch.zeros(1, 1, 2), torch.zeros(2), squash=True)
    assert torch.isfinite(dist.log_prob(torch.tensor([[[1.0, -1.0]]]))).all()


def test_squashed_gaussian_entropy_estimate() -> None:
    """The one-sample estimate -log_prob(rsample()) is unbiased: its mean matches torch's."""
    mean = torch.tensor([0.3, -0.5], requires_grad=True)
    log_std = torch.tensor([0.2, -0.3], requires_grad=True)
    dist = DiagGaussian(mean.expand(20000, 1, 2), log_std, squash=True)
    entropy = dist.entropy()
    assert entropy.shape == (20000, 1)
    ref = _tanh_reference(mean.detach(), log_std.detach().exp())
    ref_entropy = -ref.log_prob(ref.sample((200000,))).sum(-1).mean()
    torch.testing.assert_close(entropy.mean().detach(), ref_entropy, atol=0.02, rtol=0)
    entropy.mean().backward()  # reparameterised: gradients reach mean and log_std
    assert mean.grad is not None and log_std.grad is not None


def test_gaussian_rsample_gradients_and_errors() -> None:
    mean = torch.zeros(2, 1, 3, requires_grad=True)
    DiagGaussian(mean, torch.zeros(3)).rsample().sum().backward()
    assert mean.grad is not None
    assert not DiagGaussian(mean, torch.zeros(3)).sample().requires_grad
    with pytest.raises(ValueError, match="only with squash"):
        DiagGaussian(mean, torch.zeros(3), low=torch.zeros(3), high=torch.ones(3))
    with pytest.raises(ValueError, match="action must be shaped"):
        DiagGaussian(mean, torch.zeros(3)).log_prob(torch.zeros(2, 3))

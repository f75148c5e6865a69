"""Light-weight probing of frozen representations (Zhang et al. 2022, "Light-weight probing of
unsupervised representations for Reinforcement Learning", arXiv 2208.12345).

Two linear probes on the frozen, un-augmented features ``f(o_t)`` of a backbone:

- **reward probe**: logistic regression predicting whether the reward at step ``t`` is
  positive; metric: binary F1 of the positive class;
- **action probe**: a linear (softmax) classifier predicting the dataset's action ``a_t``;
  metric: F1 averaged over classes weighted by their support ("weighted F1").

Protocol (fixed and documented so numbers compare across runs): ``num_samples`` steps are
drawn once from the dataset with ``seed`` (held out from training when the dataset has a
validation split); they are split 4:1 into probe-train and probe-eval by a seeded
permutation (the paper's ratio); features are standardised with the probe-train statistics;
each probe is fitted by full-batch L-BFGS on the cross-entropy plus ``l2 * |W|^2`` and scored
on probe-eval. The same data and seed give the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from reprl.errors import ConfigError
from reprl.loop import Callback, RunState


@dataclass
class ProbeConfig:
    """The probing protocol."""

    every_steps: int = 0
    """During pretraining, probe every this many sampled steps (0: only when it ends)."""
    num_samples: int = 10_000
    """Steps drawn from the dataset for both probes (train + eval)."""
    train_frac: float = 0.8
    """Fraction of the samples the probes are fitted on (the paper: 4:1)."""
    l2: float = 1e-4
    """L2 penalty on the probe weights."""
    max_iter: int = 200
    """L-BFGS iterations per probe."""
    batch_size: int = 512
    """Observations per backbone forward pass while extracting features."""
    seed: int = 0
    """Seeds the sample draw and the train/eval split."""

    def validate(self, path: str) -> None:
        """Positive sizes, a fraction in (0, 1)."""
        if self.num_samples < 10 or self.max_iter < 1 or self.batch_size < 1:
            raise ConfigError(f"{path}: num_samples >= 10, max_iter >= 1, batch_size >= 1")
        if not 0.0 < self.train_frac < 1.0:
            raise ConfigError(f"{path}.train_frac: must be in (0, 1), got {self.train_frac}")


class ProbeCallback(Callback):
    """Runs the probes during pretraining (every ``cfg.every_steps`` and at the end) and logs
    ``probe/*``; ``last`` holds the latest scores."""

    def __init__(self, probe: Any, cfg: ProbeConfig, logger: Any) -> None:
        self.probe, self.cfg, self.logger = probe, cfg, logger
        self.last: dict[str, float] | None = None
        self._last_step = -1

    def _run(self, state: RunState) -> None:
        self.last, self._last_step = self.probe(), state.global_step
        if self.logger is not None:
            self.logger.log(self.last, state.global_step)

    def on_iteration(self, state: RunState, metrics: dict[str, float]) -> None:
        every = self.cfg.every_steps
        if every > 0 and state.global_step // every > state.extra.get("probe_count", 0):
            state.extra["probe_count"] = state.global_step // every
            self._run(state)

    def on_end(self, state: RunState) -> None:
        if self._last_step != state.global_step and state.stop_reason != "interrupted":
            self._run(state)


@torch.no_grad()
def extract_features(backbone: nn.Module, obs: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Frozen features ``(B, D)`` float32 of observations ``(B, ...)`` (eval mode, no grad;
    the backbone's mode is restored)."""
    was_training = backbone.training
    backbone.eval()
    device = next(iter(backbone.parameters()), torch.empty(0)).device
    try:
        out = [
            backbone(obs[i : i + batch_size, None].to(device))[0][:, 0].float().cpu()
            for i in range(0, len(obs), batch_size)
        ]
    finally:
        backbone.train(was_training)
    return torch.cat(out)


def fit_linear(
    x: torch.Tensor, y: torch.Tensor, num_classes: int, l2: float, max_iter: int
) -> nn.Linear:
    """A linear classifier ``(D -> num_classes)`` fitted by full-batch L-BFGS on the
    cross-entropy of integer labels ``y`` plus ``l2 * |W|^2`` (deterministic)."""
    torch.manual_seed(0)
    probe = nn.Linear(x.shape[1], num_classes)
    nn.init.zeros_(probe.weight)
    nn.init.zeros_(probe.bias)
    opt = torch.optim.LBFGS(
        probe.parameters(), max_iter=max_iter, line_search_fn="strong_wolfe", tolerance_grad=1e-9
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(probe(x), y) + l2 * probe.weight.square().sum()
        loss.backward()
        return loss

    opt.step(closure)
    return probe


def f1_scores(pred: np.ndarray, true: np.ndarray, num_classes: int) -> np.ndarray:
    """Per-class F1 ``2 TP / (2 TP + FP + FN)`` (0 for a class never predicted nor present)."""
    scores = np.zeros(num_classes)
    for c in range(num_classes):
        tp = np.sum((pred == c) & (true == c))
        fp = np.sum((pred == c) & (true != c))
        fn = np.sum((pred != c) & (true == c))
        scores[c] = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    return scores


def weighted_f1(pred: np.ndarray, true: np.ndarray, num_classes: int) -> float:
    """F1 averaged over classes weighted by their support in ``true``."""
    support = np.bincount(true, minlength=num_classes)
    return float((f1_scores(pred, true, num_classes) * support).sum() / max(support.sum(), 1))


def probe_scores(
    features: torch.Tensor,
    reward: torch.Tensor,
    action: torch.Tensor,
    num_actions: int,
    cfg: ProbeConfig,
) -> dict[str, float]:
    """Fit and score both probes on features ``(B, D)``, rewards and actions ``(B,)``:
    ``{"probe/reward_f1", "probe/action_f1", "probe/reward_pos_frac"}``."""
    n = len(features)
    order = torch.from_numpy(np.random.default_rng(cfg.seed).permutation(n))
    n_train = int(round(cfg.train_frac * n))
    tr, ev = order[:n_train], order[n_train:]
    mean, std = features[tr].mean(0), features[tr].std(0).clamp_min(1e-6)
    x = (features - mean) / std
    positive = (reward > 0).long()
    out = {"probe/reward_pos_frac": float(positive.float().mean())}
    with torch.enable_grad():
        reward_probe = fit_linear(x[tr], positive[tr], 2, cfg.l2, cfg.max_iter)
        action_probe = fit_linear(x[tr], action[tr].long(), num_actions, cfg.l2, cfg.max_iter)
    with torch.no_grad():
        pred = reward_probe(x[ev]).argmax(-1).numpy()
        out["probe/reward_f1"] = float(f1_scores(pred, positive[ev].numpy(), 2)[1])
        pred = action_probe(x[ev]).argmax(-1).numpy()
        out["probe/action_f1"] = weighted_f1(pred, action[ev].long().numpy(), num_actions)
    return out


def run_probes(
    backbone: nn.Module, sampler: Any, num_actions: int, cfg: ProbeConfig, split: str = "val"
) -> dict[str, float]:
    """Both probes on ``cfg.num_samples`` single steps drawn (seeded) from a
    :class:`~reprl.data.datasets.windows.WindowSampler` (its ``split``; ``train`` when it
    holds no validation episodes)."""
    if sampler.num_windows(split) == 0:
        split = "train"
    batch = sampler.sample(cfg.num_samples, split, rng=np.random.default_rng(cfg.seed))
    obs = batch.obs[:, 0]
    features = extract_features(backbone, obs, cfg.batch_size)
    return probe_scores(features, batch.reward[:, 0], batch.action[:, 0], num_actions, cfg)

"""Recurrent State-Space Model pretraining (config group ``trainer``: ``rssm``).

The world model of PlaNet (Hafner et al. 2019, "Learning Latent Dynamics for Planning from
Pixels", section 3) in DreamerV2's form (Hafner et al. 2020, "Mastering Atari with Discrete
World Models", section 2): a deterministic state ``h_t = GRU(h_{t-1}, [z_{t-1}, a_{t-1}])``,
a stochastic state ``z_t`` with a prior ``p(z_t | h_t)`` and a posterior ``q(z_t | h_t, e_t)``
that also sees the backbone's embedding ``e_t`` of ``o_t``; heads on ``(h_t, z_t)`` predict the
reward (and, with ``image_decoder``, a small downsampled copy of the newest frame). The loss:

``L = NLL(reward) [+ NLL(image)] + beta * KL_balanced``,
``KL_balanced = alpha * KL(sg(q) || p) + (1 - alpha) * KL(q || sg(p))``

(KL balancing, DreamerV2 section 2 and algorithm 2: ``alpha = 0.8`` trains the prior toward
the posterior faster than it regularises the posterior), each term clamped below at
``free_nats`` after averaging over the valid steps (DreamerV2's ``free_avg``; PlaNet's free
nats).

Choices: ``z_t`` is DreamerV2's ``stoch_dim`` categoricals of ``classes`` classes, sampled
with straight-through gradients (``one_hot(sample) + probs - sg(probs)``); the GRU is
``torch.nn.GRUCell`` (DreamerV2's has layer norm); actions enter one-hot (discrete) or as
vectors; the NLLs are unit-variance Gaussians with the constant dropped (``0.5 * err^2``,
summed over pixels). Layout: ``obs[:, t]`` is ``o_t`` and ``reward[:, t]`` follows
``action[:, t]``, so the state of step ``t`` predicts ``reward[:, t - 1]`` (Dreamer's
convention); the first step of a window and episode starts have no such reward and are left
out. ``is_first`` resets ``h``, ``z`` and the previous action to zero inside windows (windows
start from the zero state too).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from reprl.agents.base import mean_weights
from reprl.errors import ConfigError, choices_hint
from reprl.models.build import embedding_dim
from reprl.models.layers import MLP
from reprl.optim.schedules import Schedule
from reprl.registry import TRAINERS
from reprl.trainers.base import TrainerConfig, TrainerModel
from reprl.trainers.ssl import _SSLTrainer
from reprl.types import Batch, EnvSpec

Info = dict[str, torch.Tensor]
REWARD_TRANSFORMS = ("none", "tanh", "sign")


@dataclass
class RSSMTrainerConfig(TrainerConfig):
    """RSSM world-model pretraining; defaults are DreamerV2's Atari settings."""

    batch_size: int = 16
    """Windows per update (DreamerV2: 16)."""
    seq_len: int = 50
    """Steps per window (DreamerV2: 50)."""
    lr: Schedule = field(default_factory=lambda: Schedule("constant", 2e-4))
    """Adam learning rate (DreamerV2's world model: 2e-4)."""
    adam_eps: float = 1e-5
    """Adam epsilon (DreamerV2: 1e-5)."""
    max_grad_norm: float | None = 100.0
    """Gradient-norm clipping (DreamerV2: 100)."""
    deter_dim: int = 600
    """Size of the GRU state ``h_t`` (DreamerV2: 600; PlaNet: 200)."""
    stoch_dim: int = 32
    """Number of categorical latents in ``z_t`` (DreamerV2: 32)."""
    classes: int = 32
    """Classes per categorical latent (DreamerV2: 32)."""
    hidden_dim: int = 600
    """Hidden size of the GRU input layer and of the prior and posterior nets (DreamerV2:
    600)."""
    head_hidden_sizes: list[int] = field(default_factory=lambda: [400, 400, 400, 400])
    """Hidden sizes of the reward (and image) decoder (DreamerV2: 4 layers of 400, ELU)."""
    kl_scale: float = 0.1
    """beta, the KL weight (DreamerV2 on Atari: 0.1; 1.0 on continuous control)."""
    kl_balance: float = 0.8
    """alpha, the weight of ``KL(sg(q) || p)`` that trains the prior (DreamerV2: 0.8; 0.5 is
    the plain KL)."""
    free_nats: float = 0.0
    """Each balanced term is ``max(mean KL, free_nats)`` (DreamerV2 on Atari: 0; on
    continuous control 1; PlaNet: 3 for its Gaussian latents)."""
    reward_transform: str = "tanh"
    """Reward target: none, tanh (DreamerV2 on Atari squashes rewards with tanh) or sign
    (DQN's clipping)."""
    image_decoder: bool = False
    """Also decode a downsampled newest frame of each stack from ``(h_t, z_t)`` (off: cheap,
    the reward and KL alone train the embedding)."""
    image_size: int = 16
    """Side of the decoded frame (area-averaged from the observation)."""

    def validate(self, path: str) -> None:
        """Positive sizes, alpha in [0, 1], non-negative beta and free nats, a known
        transform."""
        TrainerConfig.validate(self, path)
        sizes = (self.deter_dim, self.stoch_dim, self.classes, self.hidden_dim, self.image_size)
        if min(sizes) < 1 or any(h < 1 for h in self.head_hidden_sizes):
            raise ConfigError(
                f"{path}: deter_dim, stoch_dim, classes, hidden_dim, image_size and "
                "head_hidden_sizes must be positive"
            )
        if self.classes < 2:
            raise ConfigError(f"{path}.classes: must be >= 2, got {self.classes}")
        if not 0.0 <= self.kl_balance <= 1.0:
            raise ConfigError(f"{path}.kl_balance: must be in [0, 1], got {self.kl_balance}")
        if self.kl_scale < 0 or self.free_nats < 0:
            raise ConfigError(f"{path}: kl_scale and free_nats must be >= 0")
        if self.reward_transform not in REWARD_TRANSFORMS:
            raise ConfigError(
                f"{path}.reward_transform: unknown '{self.reward_transform}'; "
                f"{choices_hint(self.reward_transform, REWARD_TRANSFORMS)}"
            )


# ---------------------------------------------------------------------------------------------
# Categorical latents and the balanced KL
# ---------------------------------------------------------------------------------------------
def categorical_kl(q_logits: torch.Tensor, p_logits: torch.Tensor) -> torch.Tensor:
    """``KL(q || p)`` of independent categoricals ``(..., S, K)`` summed over the ``S``
    latents: ``(...)``. Computed in float32 at least."""
    dtype = torch.promote_types(q_logits.dtype, torch.float32)
    log_q = F.log_softmax(q_logits.to(dtype), -1)
    log_p = F.log_softmax(p_logits.to(dtype), -1)
    return (log_q.exp() * (log_q - log_p)).sum((-2, -1))


def balanced_kl(
    post_logits: torch.Tensor,
    prior_logits: torch.Tensor,
    alpha: float = 0.8,
    free_nats: float = 0.0,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """DreamerV2's KL balancing (Hafner et al. 2020, algorithm 2) of logits ``(..., S, K)``:

    ``alpha * max(mean KL(sg(q) || p), free) + (1 - alpha) * max(mean KL(q || sg(p)), free)``

    The two terms have the same value; only their gradients differ: the first reaches the
    prior alone, the second the posterior alone, so the prior's gradient is ``alpha`` and the
    posterior's ``1 - alpha`` times the plain KL's. Means over the leading dims (``mask``:
    valid ones). Returns ``(loss, mean KL(q || p))``, the second detached.
    """
    lead = post_logits.shape[:-2]
    w = mean_weights(mask) if mask is not None else torch.full(lead, 1.0 / lead.numel())
    w = w.to(post_logits.device)
    kl_prior = (categorical_kl(post_logits.detach(), prior_logits) * w).sum()
    kl_post = (categorical_kl(post_logits, prior_logits.detach()) * w).sum()
    loss = alpha * kl_prior.clamp(min=free_nats) + (1.0 - alpha) * kl_post.clamp(min=free_nats)
    return loss, kl_post.detach()


def straight_through(logits: torch.Tensor, sample: bool = True) -> torch.Tensor:
    """One-hot ``(..., S, K)`` of a sample (``sample=False``: the mode) of each categorical,
    with the straight-through gradient of its probabilities (DreamerV2, algorithm 1)."""
    probs = logits.softmax(-1)
    if sample:
        flat = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1)
        index = flat.view(probs.shape[:-1])
    else:
        index = probs.argmax(-1)
    one_hot = F.one_hot(index, probs.shape[-1]).to(probs.dtype)
    return one_hot + probs - probs.detach()


# ---------------------------------------------------------------------------------------------
# The RSSM
# ---------------------------------------------------------------------------------------------
class RSSM(nn.Module):
    """Deterministic GRU state and categorical stochastic state, prior and posterior.

    :meth:`observe` runs the posterior over a window: ``(embed (N, T, E), action (N, T, A),
    is_first (N, T)) -> ({deter (N, T, H), stoch (N, T, S, K), post_logits, prior_logits},
    info)``.
    """

    def __init__(self, cfg: RSSMTrainerConfig, embed_dim: int, action_dim: int) -> None:
        super().__init__()
        self.stoch_dim, self.classes, self.deter_dim = cfg.stoch_dim, cfg.classes, cfg.deter_dim
        latent = cfg.stoch_dim * cfg.classes
        self.img_in = MLP(latent + action_dim, [cfg.hidden_dim], "elu")
        self.gru = nn.GRUCell(cfg.hidden_dim, cfg.deter_dim)
        self.prior_net = nn.Sequential(
            MLP(cfg.deter_dim, [cfg.hidden_dim], "elu"), nn.Linear(cfg.hidden_dim, latent)
        )
        self.post_net = nn.Sequential(
            MLP(cfg.deter_dim + embed_dim, [cfg.hidden_dim], "elu"),
            nn.Linear(cfg.hidden_dim, latent),
        )

    @property
    def feature_dim(self) -> int:
        """Size of ``[h_t, flat z_t]``, what the heads read."""
        return self.deter_dim + self.stoch_dim * self.classes

    def observe(
        self,
        embed: torch.Tensor,
        action: torch.Tensor,
        is_first: torch.Tensor,
        sample: bool = True,
    ) -> tuple[dict[str, torch.Tensor], Info]:
        """Posterior states of a window (``sample=False``: modes instead of samples)."""
        n, t = embed.shape[:2]
        if action.shape[:2] != (n, t) or is_first.shape != (n, t):
            raise ValueError(
                f"embed {tuple(embed.shape)}, action {tuple(action.shape)} and is_first "
                f"{tuple(is_first.shape)} must share (N, T)"
            )
        h = embed.new_zeros(n, self.deter_dim)
        z = embed.new_zeros(n, self.stoch_dim * self.classes)
        a = action.new_zeros(n, action.shape[-1])
        keep = (~is_first.bool()).to(embed.dtype)
        out: dict[str, list[torch.Tensor]] = {k: [] for k in ("deter", "stoch", "post", "prior")}
        for i in range(t):
            m = keep[:, i, None]  # 0 at an episode start: reset state and previous action
            h, z, a = h * m, z * m, a * m
            h = self.gru(self.img_in(torch.cat([z, a], -1)), h)
            prior = self.prior_net(h).view(n, self.stoch_dim, self.classes)
            post = self.post_net(torch.cat([h, embed[:, i]], -1)).view(prior.shape)
            stoch = straight_through(post, sample)
            z, a = stoch.flatten(1), action[:, i]
            for key, value in (("deter", h), ("stoch", stoch), ("post", post), ("prior", prior)):
                out[key].append(value)
        states = {k: torch.stack(v, 1) for k, v in out.items()}
        return {
            "deter": states["deter"],
            "stoch": states["stoch"],
            "post_logits": states["post"],
            "prior_logits": states["prior"],
        }, {}


class RSSMHead(nn.Module):
    """The trainer model's head: the RSSM and its reward (and image) decoders."""

    def __init__(self, cfg: RSSMTrainerConfig, spec: EnvSpec, model: TrainerModel) -> None:
        super().__init__()
        self.cfg, self.spec = cfg, spec
        backbone = model.backbone
        embed_dim = embedding_dim(backbone, spec)
        action_dim = spec.num_actions if spec.discrete else int(np.prod(spec.action_shape))
        self.rssm = RSSM(cfg, embed_dim, action_dim)
        feat, hidden = self.rssm.feature_dim, cfg.head_hidden_sizes
        self.reward_head = nn.Sequential(MLP(feat, hidden, "elu"), nn.Linear(hidden[-1], 1))
        self.image_head: nn.Module | None = None
        if cfg.image_decoder:
            if len(spec.obs_shape) != 3:
                raise ConfigError(
                    f"trainer.image_decoder: needs image observations (C, H, W); this env's "
                    f"are shaped {tuple(spec.obs_shape)}"
                )
            self.channels = spec.obs_shape[0] // max(spec.frame_stack, 1)
            pixels = self.channels * cfg.image_size**2
            self.image_head = nn.Sequential(MLP(feat, hidden, "elu"), nn.Linear(hidden[-1], pixels))
        self._backbone = [backbone]  # a list: not registered twice under head.*

    def action_input(self, action: torch.Tensor) -> torch.Tensor:
        """Actions ``(N, T)`` as one-hot ``(N, T, num_actions)``; vectors flattened."""
        if self.spec.discrete:
            return F.one_hot(action.long(), self.spec.num_actions).float()
        return action.float().flatten(2)

    def reward_target(self, reward: torch.Tensor) -> torch.Tensor:
        """The reward the head predicts, after ``reward_transform``."""
        reward = reward.float()
        if self.cfg.reward_transform == "tanh":
            return torch.tanh(reward)
        if self.cfg.reward_transform == "sign":
            return torch.sign(reward)
        return reward

    def image_target(self, obs: torch.Tensor) -> torch.Tensor:
        """The newest frame of each stack, area-downsampled to ``image_size``, in
        ``[-0.5, 0.5]`` and flattened: ``(N, T, pixels)``."""
        n, t = obs.shape[:2]
        frame = obs[:, :, -self.channels :].flatten(0, 1).float() / 255.0
        small = F.adaptive_avg_pool2d(frame, self.cfg.image_size) - 0.5
        return small.reshape(n, t, -1)

    def compute_loss(self, mb: Batch, trainer: Any) -> tuple[Info, Info]:
        """``loss_ssl_rssm``: reward (and image) NLL plus beta times the balanced KL."""
        embed, _ = self._backbone[0](mb.obs)
        with torch.autocast(embed.device.type, enabled=False):  # the recurrence in float32
            return self._loss(mb, embed.float())

    def _loss(self, mb: Batch, embed: torch.Tensor) -> tuple[Info, Info]:
        cfg = self.cfg
        states, _ = self.rssm.observe(embed, self.action_input(mb.action), mb.is_first)
        feat = torch.cat([states["deter"], states["stoch"].flatten(2)], -1)
        valid = mb.valid.bool()
        kl_loss, kl = balanced_kl(
            states["post_logits"], states["prior_logits"], cfg.kl_balance, cfg.free_nats, valid
        )
        # the state of step t predicts reward[:, t - 1], within an episode
        has_reward = valid[:, 1:] & valid[:, :-1] & ~mb.is_first[:, 1:].bool()
        predicted = self.reward_head(feat[:, 1:]).squeeze(-1)
        reward_err = 0.5 * (predicted - self.reward_target(mb.reward[:, :-1])).square()
        reward_nll = (reward_err * mean_weights(has_reward)).sum()
        loss = reward_nll + cfg.kl_scale * kl_loss
        stats = {
            "stats/rssm_kl": kl,
            "stats/rssm_reward_nll": reward_nll.detach(),
            "stats/rssm_prior_entropy": _entropy(states["prior_logits"], valid),
        }
        if self.image_head is not None:
            image_err = 0.5 * (self.image_head(feat) - self.image_target(mb.obs)).square().sum(-1)
            image_nll = (image_err * mean_weights(valid)).sum()
            loss = loss + image_nll
            stats["stats/rssm_image_nll"] = image_nll.detach()
        return {"loss_ssl_rssm": loss}, stats

    def after_update(self) -> None:
        """No target network."""

    def extra_state(self) -> dict[str, Any]:
        """Nothing beyond the weights."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Nothing to restore."""


def _entropy(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean entropy (nats, summed over the latents) of categoricals ``(N, T, S, K)``."""
    with torch.no_grad():
        log_p = F.log_softmax(logits, -1)
        entropy = -(log_p.exp() * log_p).sum((-2, -1))
        return (entropy * mean_weights(mask)).sum()


@TRAINERS.register("rssm", RSSMTrainerConfig)
class RSSMTrainer(_SSLTrainer):
    """RSSM world-model pretraining of a backbone (PlaNet / DreamerV2)."""

    head_cls = RSSMHead

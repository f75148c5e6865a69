"""SPR / SGI pretraining (config group ``trainer``: ``sgi``): self-predictive latent dynamics,
inverse dynamics and an optional goal-conditioned value, on offline ``(N, T)`` windows.

- **SPR** (Schwarzer et al. 2021, "Data-Efficient Reinforcement Learning with
  Self-Predictive Representations", section 2): the online encoder embeds the augmented
  ``o_t``; a transition model, conditioned on the one-hot actions ``a_t .. a_{t+K-1}``, rolls
  that latent forward K steps (``K = seq_len - 1``); an online projection and a linear
  predictor map each predicted latent to ``q(g(z^_{t+k}))``, which is compared with the EMA
  target encoder + projection of the augmented ``o_{t+k}``: ``sum_{k=1}^{K} (2 - 2 cos)``,
  averaged over the windows, with steps past an episode's end masked out.
- **SGI** (Schwarzer et al. 2021, "Pretraining Representations for Data-Efficient
  Reinforcement Learning") adds **inverse dynamics**: an MLP on the online
  projection of step ``k`` (the encoder's at ``k = 0``, the transition model's after) and the
  target projection of step ``k + 1`` predicts ``a_{t+k}`` (cross-entropy), as SGI's code does
  (``mila-iqia/SGI``, ``src/models.py``); and **goal-conditioned RL**, here simplified (see
  :meth:`SGIHead.goal_loss`).

Every term has its own weight: SPR alone (``inverse_coef=0``), SPR + inverse dynamics (SGI's
default here, ``sgi_pretrain_atari``) and ``+ goal`` (``goal_coef>0``) are configs. Shapes:
``obs (N, T, C, H, W)``, latents ``(N, T, D)``, projections ``(N, T, P)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from reprl.errors import ConfigError
from reprl.models.augment import random_shift
from reprl.models.build import embedding_dim
from reprl.models.ssl import ProjectedEncoder, ViewsConfig, intensity
from reprl.optim.target import EMATargets, TargetNetwork
from reprl.registry import TRAINERS
from reprl.trainers.base import TrainerConfig, TrainerModel
from reprl.trainers.ssl import _SSLTrainer
from reprl.types import Batch, EnvSpec

Info = dict[str, torch.Tensor]


@dataclass
class SGITrainerConfig(TrainerConfig):
    """SPR / SGI pretraining (Schwarzer et al. 2021): latent prediction, inverse dynamics and
    goal-conditioned RL, each with its own weight."""

    seq_len: int = 6
    """Steps per window ``T``: the transition model predicts ``K = T - 1`` future latents
    (SPR and SGI: K = 5)."""
    spr_coef: float = 1.0
    """Weight of the SPR latent-prediction loss (SGI pretraining: 1)."""
    inverse_coef: float = 1.0
    """Weight of the inverse-dynamics cross-entropy (SGI pretraining: 1; 0: plain SPR)."""
    goal_coef: float = 0.0
    """Weight of the (simplified) goal-conditioned value loss (SGI pretraining: 1; 0: off)."""
    momentum: float = 0.99
    """EMA momentum of the target encoder and projection, ``target <- m * target +
    (1 - m) * online`` after every update (SPR with augmentation and SGI: tau = 0.01, i.e.
    m = 0.99; 0: the online network under a stop-gradient)."""
    projection_dim: int = 512
    """Output of the linear projection g of a latent (SPR: the first layer of the Q head,
    512 units)."""
    transition_hidden_dim: int = 512
    """Hidden size of the MLP transition model on ``[latent, one-hot action]`` (SPR uses a
    conv transition model on the 64x7x7 map; reprl backbones give flat latents)."""
    inverse_hidden_dim: int = 256
    """Hidden size of the inverse-dynamics MLP."""
    goal_hidden_dim: int = 256
    """Hidden size of the goal-conditioned Q head."""
    goal_gamma: float = 0.99
    """Discount of the goal-conditioned value (SGI: 0.99)."""
    goal_permute_prob: float = 0.2
    """Fraction of goals replaced by another window's goal, so some goals are not reached
    (SGI: 0.2)."""
    renormalize: bool = True
    """Min-max rescale each latent (encoder and transition outputs) to [0, 1], as SPR does
    after the encoder and each transition step (SPR appendix, after MuZero)."""
    views: ViewsConfig = field(default_factory=ViewsConfig)
    """Augmentation of every frame (SPR: random shift 4 px, then intensity 0.05)."""

    def validate(self, path: str) -> None:
        """A window of at least 2 steps, non-negative weights with one positive, a momentum in
        [0, 1), positive sizes, a discount in [0, 1) and a probability in [0, 1]."""
        super().validate(path)
        if self.seq_len < 2:
            raise ConfigError(f"{path}.seq_len: must be >= 2 (K = seq_len - 1 predicted steps)")
        coefs = {"spr_coef": self.spr_coef, "inverse_coef": self.inverse_coef}
        coefs["goal_coef"] = self.goal_coef
        for name, value in coefs.items():
            if value < 0:
                raise ConfigError(f"{path}.{name}: must be >= 0, got {value}")
        if not any(coefs.values()):
            raise ConfigError(f"{path}: one of spr_coef, inverse_coef, goal_coef must be > 0")
        if not 0.0 <= self.momentum < 1.0:
            raise ConfigError(f"{path}.momentum: must be in [0, 1), got {self.momentum}")
        for name in ("projection_dim", "transition_hidden_dim", "inverse_hidden_dim"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{path}.{name}: must be positive, got {getattr(self, name)}")
        if self.goal_hidden_dim <= 0:
            raise ConfigError(f"{path}.goal_hidden_dim: must be positive")
        if not 0.0 <= self.goal_gamma < 1.0:
            raise ConfigError(f"{path}.goal_gamma: must be in [0, 1), got {self.goal_gamma}")
        if not 0.0 <= self.goal_permute_prob <= 1.0:
            raise ConfigError(f"{path}.goal_permute_prob: must be in [0, 1]")
        self.views.validate(f"{path}.views")


# ---------------------------------------------------------------------------------------------
# Pieces
# ---------------------------------------------------------------------------------------------
def augment(obs: torch.Tensor, views: ViewsConfig) -> torch.Tensor:
    """One augmented view of frames ``(..., C, H, W)``: random shift, then intensity; every
    leading index draws its own (as SPR augments its inputs and targets)."""
    return intensity(random_shift(obs, views.pad), views.intensity_scale)


def same_episode_steps(valid: torch.Tensor, is_first: torch.Tensor) -> torch.Tensor:
    """``(N, T)`` bool: step ``k`` of each window is valid and in the episode of step 0 (no
    invalid step and no episode start in ``(0, k]``). Reprl's windows lie inside one episode,
    so this is all true for them; rollout-made windows may cross resets."""
    ok = valid.bool().clone()
    ok[:, 1:] &= ~is_first[:, 1:].bool()
    return ok.int().cumprod(1).bool()


def renormalize(z: torch.Tensor) -> torch.Tensor:
    """Min-max rescale each latent ``(..., D)`` to [0, 1] (SPR, after MuZero)."""
    lo = z.min(-1, keepdim=True).values
    hi = z.max(-1, keepdim=True).values
    return (z - lo) / (hi - lo + 1e-5)


def spr_loss(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """SPR's loss: ``mean_n sum_k mask_nk (2 - 2 cos(p_nk, sg(z_nk)))`` for predictions and
    target projections ``(N, K, P)`` and a step mask ``(N, K)`` (Schwarzer et al. 2021,
    section 2: summed over the K future steps). Computed in float32."""
    p = F.normalize(prediction.float(), dim=-1, eps=1e-6)
    z = F.normalize(target.detach().float(), dim=-1, eps=1e-6)
    per_step = 2.0 - 2.0 * (p * z).sum(-1)
    return (per_step * mask.float()).sum(1).mean()


def masked_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Mean cross-entropy of ``logits (..., A)`` against ``labels (...)`` over ``mask``."""
    ce = F.cross_entropy(logits.flatten(0, -2).float(), labels.reshape(-1), reduction="none")
    m = mask.reshape(-1).float()
    return (ce * m).sum() / m.sum().clamp(min=1.0)


class Renormalized(nn.Module):
    """``encoder(obs) -> (latent, info)``, each latent min-max rescaled when ``enabled``."""

    def __init__(self, encoder: nn.Module, enabled: bool) -> None:
        super().__init__()
        self.encoder, self.enabled = encoder, enabled

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, Info]:
        """``(N, T, ...) -> ((N, T, D), info)``."""
        z, info = self.encoder(obs)
        return (renormalize(z) if self.enabled else z), info


class TransitionModel(nn.Module):
    """``(z_t, a_t) -> z_{t+1}``: an MLP on the latent and the one-hot action, ReLU output,
    renormalised like the encoder's (SPR's transition model, here on flat latents)."""

    def __init__(self, dim: int, num_actions: int, hidden: int, renorm: bool) -> None:
        super().__init__()
        self.num_actions, self.renorm = num_actions, renorm
        self.net = nn.Sequential(
            nn.Linear(dim + num_actions, hidden), nn.ReLU(), nn.Linear(hidden, dim), nn.ReLU()
        )

    def forward(self, z: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """``z (..., D)``, ``action (...)`` int64 -> ``(..., D)``."""
        onehot = F.one_hot(action.long(), self.num_actions).to(z.dtype)
        nxt = self.net(torch.cat([z, onehot], -1))
        return renormalize(nxt) if self.renorm else nxt


def mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    """``Linear -> ReLU -> Linear``."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))


# ---------------------------------------------------------------------------------------------
# Head
# ---------------------------------------------------------------------------------------------
class SGIHead(EMATargets, nn.Module):
    """SPR's transition model, projection, predictor and EMA target, SGI's inverse model and
    goal-conditioned Q head, on the trainer model's backbone."""

    def __init__(self, cfg: SGITrainerConfig, spec: EnvSpec, model: TrainerModel) -> None:
        super().__init__()
        if not spec.discrete:
            raise ConfigError("trainer sgi: needs discrete actions (one-hot action inputs)")
        if len(spec.obs_shape) != 3:
            raise ConfigError(
                f"trainer sgi: needs image observations (C, H, W); got {tuple(spec.obs_shape)}"
            )
        self.cfg = cfg
        backbone = model.backbone
        dim = embedding_dim(backbone, spec)
        a, p = spec.num_actions, cfg.projection_dim
        # kept out of the module tree: the trainer model owns (saves) the backbone
        self.__dict__["encoder"] = Renormalized(backbone, cfg.renormalize)
        self.transition = TransitionModel(dim, a, cfg.transition_hidden_dim, cfg.renormalize)
        self.projection = nn.Linear(dim, p)
        self.predictor = nn.Linear(p, p)  # SGI: "predictor: linear"
        self.inverse = mlp(2 * p, cfg.inverse_hidden_dim, a)
        self.goal_q = mlp(2 * p, cfg.goal_hidden_dim, a)
        tau = 1.0 - cfg.momentum
        online = ProjectedEncoder(self.encoder, self.projection)
        self.target = TargetNetwork(online, "polyak", 1, tau)
        self.goal_target = TargetNetwork(self.goal_q, "polyak", 1, tau)
        # registered, so the targets' weights are saved with the model
        self.target_encoder = self.target.target
        self.goal_q_target = self.goal_target.target
        self.updates = 0

    encoder: Renormalized
    """The backbone, renormalised (not a submodule)."""

    # ----------------------------------------------------------------- forward
    def rollout(self, z0: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Latents ``(N, K + 1, D)``: ``z0 (N, D)`` then K transition steps with
        ``action (N, K)``."""
        latents = [z0]
        for k in range(action.shape[1]):
            latents.append(self.transition(latents[-1], action[:, k]))
        return torch.stack(latents, 1)

    def compute_loss(self, mb: Batch, trainer: Any = None) -> tuple[Info, Info]:
        """The weighted SPR, inverse-dynamics and goal losses of a minibatch of windows."""
        obs, action, cfg = mb.obs, mb.action, self.cfg
        n, t = obs.shape[:2]
        assert action.shape == (n, t), f"action must be (N, T) = {(n, t)}"
        mask = same_episode_steps(mb.valid, mb.is_first)  # (N, T)
        views = augment(obs, cfg.views)
        z0, _ = self.encoder(views[:, :1])  # (N, 1, D)
        latents = self.rollout(z0[:, 0].float(), action[:, : t - 1])  # (N, T, D)
        online = self.projection(latents)  # (N, T, P): steps 0..K
        target, _ = self.target(views[:, 1:])  # (N, K, P): steps 1..K, no grad
        target = target.float()
        losses: Info = {}
        info: Info = {}
        # spr: predict the target projections of steps 1..K
        with torch.set_grad_enabled(torch.is_grad_enabled() and cfg.spr_coef > 0):
            spr = spr_loss(self.predictor(online[:, 1:]), target, mask[:, 1:])
        info["stats/spr_loss"] = spr.detach()
        if cfg.spr_coef:
            losses["loss_ssl_spr"] = cfg.spr_coef * spr
        # inverse dynamics: a_{t+k} from online step k and target step k + 1
        if cfg.inverse_coef:
            logits = self.inverse(torch.cat([online[:, :-1], target], -1))
            inv = masked_cross_entropy(logits, action[:, :-1], mask[:, 1:])
            losses["loss_ssl_inverse"] = cfg.inverse_coef * inv
            hit = (logits.argmax(-1) == action[:, :-1]).float()
            info["stats/inverse_accuracy"] = (hit * mask[:, 1:]).sum() / mask[:, 1:].sum()
        if cfg.goal_coef:
            goal, goal_info = self.goal_loss(online[:, 0], target, mb, mask)
            losses["loss_ssl_goal"] = cfg.goal_coef * goal
            info |= goal_info
        return losses, info

    def goal_loss(
        self, y0: torch.Tensor, target: torch.Tensor, mb: Batch, mask: torch.Tensor
    ) -> tuple[torch.Tensor, Info]:
        """Goal-conditioned Q-learning with hindsight-relabelled goals, a simplification of
        SGI's goal-conditioned RL objective. The goal ``g`` of each window is the target
        projection of a step ``j ~ U{1..K}`` it really reaches (with probability
        ``goal_permute_prob``, another window's goal); the reward of ``(o_t, a_t)`` is
        ``cos(z'_{t+1}, g)`` (1 when the next state is the goal); one TD step
        ``Q(y_t, g, a_t) <- r + gamma * max_a Q'(z'_{t+1}, g, a)`` with an EMA target Q head,
        Huber loss. SGI instead conditions a distributional Q head on the goal with FiLM and
        derives the reward from the latent distance to the goal (``mila-iqia/SGI``); here the
        objective only shapes the representation."""
        cfg = self.cfg
        n, k = target.shape[:2]
        reach = mask[:, 1:].sum(1).clamp(min=1)  # reachable future steps per window
        j = (torch.rand(n, device=target.device) * reach).long()  # step j + 1 in 1..reach
        goal = target[torch.arange(n, device=target.device), j.clamp(max=k - 1)]
        swap = torch.rand(n, device=target.device) < cfg.goal_permute_prob
        goal = torch.where(swap[:, None], goal.roll(1, 0), goal)
        nxt = target[:, 0]  # z'_{t+1}
        reward = F.cosine_similarity(nxt, goal, dim=-1)
        with torch.no_grad():
            q_next = self.goal_target(torch.cat([nxt, goal], -1)).float().max(-1).values
        not_done = 1.0 - mb.terminated[:, 0].float()
        td_target = reward + cfg.goal_gamma * not_done * q_next
        q = self.goal_q(torch.cat([y0.float(), goal], -1)).float()
        q_a = q.gather(-1, mb.action[:, :1].long()).squeeze(-1)
        valid = mask[:, 1].float()
        per_sample = F.smooth_l1_loss(q_a, td_target.detach(), reduction="none")
        loss = (per_sample * valid).sum() / valid.sum().clamp(min=1.0)
        return loss, {"stats/goal_q": q_a.detach().mean(), "stats/goal_reward": reward.mean()}

    # ----------------------------------------------------------------- state
    def ema_targets(self) -> list[TargetNetwork]:
        """The target encoder + projection and the target goal Q head."""
        return [self.target, self.goal_target]


@TRAINERS.register("sgi", SGITrainerConfig)
class SGITrainer(_SSLTrainer):
    """SPR / SGI pretraining of a backbone: ``loss_ssl_spr``, ``loss_ssl_inverse``,
    ``loss_ssl_goal``."""

    head_cls = SGIHead

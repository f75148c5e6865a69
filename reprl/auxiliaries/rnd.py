"""Random Network Distillation (Burda et al. 2018, "Exploration by Random Network
Distillation", arXiv 1810.12894): the exploration bonus as a self-contained module.

A frozen, randomly initialised **target** network ``f`` and a trained **predictor** ``f^``
map an observation to an embedding; the intrinsic reward of ``o`` is the predictor's error
``||f^(o) - f(o)||^2`` (half the squared error summed over the embedding, as CleanRL's
``ppo_rnd_envpool.py``), large on observations unlike those it was trained on. As in the
paper (section 2.4 and appendix A.2-A.4) and CleanRL:

- the networks see the **last frame** of the stack (``(1, H, W)``) for images, or the whole
  vector observation, normalised by a running mean/std (whitened, clipped to
  ``[-obs_clip, obs_clip]``); the statistics are initialised from ``obs_norm_init_steps``
  observations before any intrinsic reward is used (``ready``) and updated on every batch;
- intrinsic rewards are divided by a running standard deviation of the *discounted
  intrinsic return* (``RewardForwardFilter`` with ``gamma_int``), not normalised per batch;
- the predictor trains on a random ``update_proportion`` of each minibatch (0.25 in the
  paper with 32 parallel envs), so its learning speed does not grow with the env count.

Image networks follow the paper's appendix: target = 3 convs (32 8x8/4, 64 4x4/2, 64 3x3/1,
leaky ReLU) + linear to ``embedding_dim`` (512); predictor = the same convs + 3 linear
layers (512, 512, ``embedding_dim``) with ReLU; orthogonal init gain sqrt(2) as CleanRL.
Vector observations use MLPs of ``hidden_sizes``. The agent integration (two value heads,
non-episodic intrinsic returns, advantage coefficients) lives in the agents.

**Modified RND** (``aux.rnd.input=embedding``, issue 4): target and predictor are MLPs on the
agent backbone's embedding of the whole stacked observation instead of convs on the last
frame, so the exploration bonus lives in the representation the policy uses (and that SSL
auxiliaries shape). The embedding is detached, normalised like observations, and optionally
taken from a slow copy of the backbone (periodic hard copies or Polyak averaging, the shared
:class:`~reprl.optim.target.TargetNetwork`) so the predictor's inputs drift slowly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from reprl.auxiliaries.base import Auxiliary, IntrinsicSpec, next_observations
from reprl.envs.normalize import RunningMeanStd
from reprl.errors import ConfigError
from reprl.models.build import embedding_dim
from reprl.optim.target import TargetNetwork
from reprl.registry import AUXILIARIES
from reprl.types import Batch, EnvSpec


@dataclass
class RNDConfig:
    """RND options (defaults: Burda et al. 2018, appendix A.4, and CleanRL's
    ``ppo_rnd_envpool.py``)."""

    coef: float = 1.0
    """Weight a_RND of the predictor loss in the total loss."""
    embedding_dim: int = 512
    """Size of the target and predictor embeddings."""
    hidden_sizes: list[int] = field(default_factory=lambda: [256, 256])
    """Hidden layers of the MLP networks used for vector observations."""
    update_proportion: float = 0.25
    """Fraction of each minibatch the predictor trains on."""
    gamma_int: float = 0.99
    """Discount of the intrinsic return whose running std normalises intrinsic rewards."""
    obs_clip: float = 5.0
    """Normalised observations are clipped to [-obs_clip, obs_clip]."""
    obs_norm_init_steps: int = 1024
    """Observations that initialise the normalisation statistics before intrinsic rewards
    are used."""
    obs_norm_init: str = "random"
    """Where those observations come from: ``random`` (the paper and CleanRL: uniformly random
    actions in the training envs before training starts) or ``policy`` (the agent's first
    rollouts, which get no intrinsic reward until then)."""

    def validate(self, path: str) -> None:
        """Reject impossible values at load time."""
        if not 0.0 < self.update_proportion <= 1.0:
            raise ConfigError(f"{path}.update_proportion: must be in (0, 1]")
        if not 0.0 <= self.gamma_int <= 1.0:
            raise ConfigError(f"{path}.gamma_int: must be in [0, 1]")
        if self.embedding_dim < 1 or any(h < 1 for h in self.hidden_sizes):
            raise ConfigError(f"{path}: embedding_dim and hidden_sizes must be positive")
        if self.obs_norm_init not in ("random", "policy"):
            raise ConfigError(
                f"{path}.obs_norm_init: unknown '{self.obs_norm_init}'; valid: policy, random"
            )
        if self.obs_clip <= 0 or self.obs_norm_init_steps < 0 or self.coef < 0:
            raise ConfigError(f"{path}: obs_clip > 0, obs_norm_init_steps >= 0, coef >= 0")


def _orthogonal(module: nn.Module) -> nn.Module:
    """Orthogonal weights (gain sqrt(2)) and zero biases for every conv and linear layer."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.orthogonal_(m.weight, math.sqrt(2.0))
            nn.init.zeros_(m.bias)
    return module


def _paper_convs(in_ch: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, 32, 8, stride=4),
        nn.LeakyReLU(),
        nn.Conv2d(32, 64, 4, stride=2),
        nn.LeakyReLU(),
        nn.Conv2d(64, 64, 3, stride=1),
        nn.LeakyReLU(),
        nn.Flatten(),
    )


class RewardForwardFilter:
    """The running discounted intrinsic return ``R <- gamma R + r`` per env (non-episodic),
    whose spread normalises intrinsic rewards (Burda et al. 2018, section 2.4)."""

    def __init__(self, gamma: float) -> None:
        self.gamma = gamma
        self.returns: np.ndarray | None = None

    def update(self, rewards: np.ndarray) -> np.ndarray:
        """``rewards (N, T)`` -> the running returns after each step ``(N, T)``."""
        out = np.empty_like(rewards, dtype=np.float64)
        ret = np.zeros(rewards.shape[0]) if self.returns is None else self.returns
        for t in range(rewards.shape[1]):
            ret = ret * self.gamma + rewards[:, t]
            out[:, t] = ret
        self.returns = ret
        return out


class RND(nn.Module):
    """Target and predictor networks with their observation and reward normalisers.

    Observations are ``(N, T, *obs_shape)``: uint8 image stacks ``(k*C, H, W)`` (the last
    frame's ``C`` channels are used) or float vectors; with ``input_dim`` the inputs are
    vectors of that size whatever the env's observations (modified RND: embeddings).
    """

    def __init__(self, cfg: RNDConfig, spec: EnvSpec, input_dim: int | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        shape = tuple(spec.obs_shape) if input_dim is None else (input_dim,)
        self.image = len(shape) == 3
        if self.image:
            channels = shape[0] // max(spec.frame_stack, 1)
            self.input_shape: tuple[int, ...] = (channels, *shape[1:])
            target_convs, predictor_convs = _paper_convs(channels), _paper_convs(channels)
            with torch.no_grad():
                flat = target_convs(torch.zeros(1, *self.input_shape)).shape[1]
            self.target = nn.Sequential(target_convs, nn.Linear(flat, cfg.embedding_dim))
            self.predictor = nn.Sequential(
                predictor_convs,
                nn.Linear(flat, 512),
                nn.ReLU(),
                nn.Linear(512, 512),
                nn.ReLU(),
                nn.Linear(512, cfg.embedding_dim),
            )
        else:
            self.input_shape = (int(np.prod(shape)),)
            self.target = self._mlp(self.input_shape[0])
            self.predictor = self._mlp(self.input_shape[0])
        _orthogonal(self.target)
        _orthogonal(self.predictor)
        self.target.requires_grad_(False)
        self.obs_rms = RunningMeanStd(self.input_shape)
        self.reward_rms = RunningMeanStd(())
        self.forward_filter = RewardForwardFilter(cfg.gamma_int)
        self.seen = 0
        """Observations merged into the statistics so far."""

    def _mlp(self, in_dim: int) -> nn.Sequential:
        sizes = [in_dim, *self.cfg.hidden_sizes]
        layers: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:], strict=True):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers.append(nn.Linear(sizes[-1], self.cfg.embedding_dim))
        return nn.Sequential(*layers)

    # ------------------------------------------------------------------ inputs
    def select(self, obs: torch.Tensor) -> torch.Tensor:
        """``(N, T, *obs_shape)`` -> ``(N*T, *input_shape)`` float: the last frame of image
        stacks, the flattened vector otherwise (not normalised)."""
        n, t = obs.shape[:2]
        if self.image:
            x = obs[:, :, -self.input_shape[0] :]
            return x.reshape(n * t, *self.input_shape).float()
        return obs.reshape(n * t, -1).float()

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """Whiten by the running statistics and clip."""
        mean = torch.as_tensor(self.obs_rms.mean, dtype=x.dtype, device=x.device)
        std = torch.as_tensor(np.sqrt(self.obs_rms.var), dtype=x.dtype, device=x.device)
        return ((x - mean) / (std + 1e-8)).clamp(-self.cfg.obs_clip, self.cfg.obs_clip)

    @property
    def ready(self) -> bool:
        """True once ``obs_norm_init_steps`` observations initialised the statistics."""
        return self.seen >= self.cfg.obs_norm_init_steps

    def observe(self, obs: torch.Tensor, valid: torch.Tensor | None = None) -> None:
        """Merge observations ``(N, T, ...)`` (valid steps only) into the statistics."""
        x = self.select(obs)
        if valid is not None:
            x = x[valid.reshape(-1).to(x.device)]
        if x.shape[0]:
            self.obs_rms.update(x.detach().cpu().double().numpy())
            self.seen += int(x.shape[0])

    # ------------------------------------------------------------------ reward and loss
    def prediction_error(self, obs: torch.Tensor) -> torch.Tensor:
        """Per-observation error ``0.5 * ||f^(o) - f(o)||^2`` ``(N*T,)`` (with grad for f^)."""
        x = self.normalise(self.select(obs))
        with torch.no_grad():
            target = self.target(x)
        return 0.5 * (self.predictor(x) - target).square().sum(-1)

    @torch.no_grad()
    def intrinsic_reward(
        self, obs: torch.Tensor, valid: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Normalised intrinsic rewards ``(N, T)`` of the observations ``(N, T, ...)``
        reached by each step (zeros until :attr:`ready`); updates the return statistics."""
        n, t = obs.shape[:2]
        error = self.prediction_error(obs).reshape(n, t).float()
        if valid is not None:
            error = error * valid.to(error.device)
        if not self.ready:
            return torch.zeros_like(error)
        returns = self.forward_filter.update(error.cpu().double().numpy())
        self.reward_rms.update(returns.reshape(-1))
        return error / float(np.sqrt(self.reward_rms.var) + 1e-8)

    def loss(
        self, obs: torch.Tensor, valid: torch.Tensor | None = None, generator: Any = None
    ) -> torch.Tensor:
        """Predictor loss on a random ``update_proportion`` of the valid observations.

        The networks run on the kept observations only (CleanRL computes the error of the
        whole minibatch, then masks it: the same loss for 1 / ``update_proportion`` times
        the compute)."""
        n, t = obs.shape[:2]
        device = obs.device if generator is None else generator.device
        keep = torch.rand(n * t, device=device, generator=generator).to(obs.device)
        mask = keep < self.cfg.update_proportion
        if valid is not None:
            mask = mask & valid.reshape(-1).to(mask.device, torch.bool)
        rows = mask.nonzero().squeeze(1)
        if rows.numel() == 0:  # nothing kept: a zero loss that still reaches the predictor
            return 0.0 * self.predictor(self.normalise(self.select(obs[:1, :1]))).sum()
        kept = obs.reshape(n * t, 1, *obs.shape[2:]).index_select(0, rows)
        x = self.normalise(self.select(kept))
        with torch.no_grad():
            target = self.target(x)
        return 0.5 * (self.predictor(x) - target).square().sum(-1).mean()

    # ------------------------------------------------------------------ state
    def extra_state(self) -> dict[str, Any]:
        """Normaliser statistics and counters (the weights are in ``state_dict``)."""
        returns = self.forward_filter.returns
        return {
            "obs_rms": self.obs_rms.state_dict(),
            "reward_rms": self.reward_rms.state_dict(),
            "filter": None if returns is None else returns.copy(),
            "seen": self.seen,
        }

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`extra_state`."""
        self.obs_rms.load_state_dict(state["obs_rms"])
        self.reward_rms.load_state_dict(state["reward_rms"])
        returns = state["filter"]
        self.forward_filter.returns = None if returns is None else np.asarray(returns, np.float64)
        self.seen = int(state["seen"])


INPUTS = ("obs", "embedding")
SLOW_MODES = ("none", "periodic", "polyak")


@dataclass
class RNDAuxConfig(RNDConfig):
    """RND switched on for an agent (``aux.rnd.coef=1``): the module's options plus how the
    agent uses the intrinsic reward (defaults: Burda et al. 2018, CleanRL), and the inputs
    of modified RND."""

    ext_coef: float = 2.0
    """Weight of the extrinsic advantage."""
    int_coef: float = 1.0
    """Weight of the intrinsic advantage."""
    input: str = "obs"
    """What target and predictor see: ``obs`` (the paper: the last frame, or the vector
    observation) or ``embedding`` (modified RND: the agent backbone's embedding of the whole
    stacked observation, detached, so target and predictor are small MLPs of
    ``hidden_sizes``; its size is the backbone's, e.g. ``model.backbone.features_dim``)."""
    slow_backbone: str = "none"
    """With ``input=embedding``, which backbone embeds the RND inputs: ``none`` (the agent's
    own), or a slow copy of it that keeps the inputs closer to stationary: ``periodic``
    (copied every ``slow_period`` updates) or ``polyak`` (averaged with ``slow_tau`` after
    every update)."""
    slow_period: int = 1000
    """Updates between copies of the ``periodic`` slow backbone."""
    slow_tau: float = 0.005
    """Polyak coefficient of the ``polyak`` slow backbone (``slow <- tau online + (1-tau)
    slow``)."""

    def validate(self, path: str) -> None:
        """RND's checks, and the modified-RND options."""
        super().validate(path)
        if self.input not in INPUTS:
            raise ConfigError(f"{path}.input: unknown '{self.input}'; valid: {', '.join(INPUTS)}")
        if self.slow_backbone not in SLOW_MODES:
            raise ConfigError(
                f"{path}.slow_backbone: unknown '{self.slow_backbone}'; "
                f"valid: {', '.join(SLOW_MODES)}"
            )
        if self.slow_backbone != "none" and self.input != "embedding":
            raise ConfigError(f"{path}.slow_backbone: needs {path.split('.')[-1]}.input=embedding")
        if self.slow_period < 1 or not 0.0 < self.slow_tau <= 1.0:
            raise ConfigError(f"{path}: slow_period >= 1 and slow_tau in (0, 1]")


@AUXILIARIES.register("rnd", RNDAuxConfig)
class RNDAuxiliary(Auxiliary):
    """RND as an auxiliary of any on-policy agent: intrinsic rewards for the observations
    each step reaches, and the predictor's loss ``coef * L_RND`` (group ``rnd``).

    The agent (PPO) learns a second value head on the intrinsic rewards, with discount
    ``gamma_int`` and non-episodic returns, and mixes the advantages as
    ``ext_coef * A_ext + int_coef * A_int`` (Burda et al. 2018, section 2.3).

    Modified RND (``input=embedding``) feeds target and predictor the agent backbone's
    embedding of the stacked frames instead of the raw last frame. The embedding is
    detached: the predictor's loss never trains the backbone (it could otherwise lower its
    error by collapsing the embedding). With a slow backbone, a frozen copy
    (:class:`~reprl.optim.target.TargetNetwork`, hard copies or Polyak) embeds instead.
    """

    def __init__(self, cfg: RNDAuxConfig, spec: EnvSpec, model: nn.Module | None = None) -> None:
        super().__init__(model)
        self.cfg = cfg
        self.slow: TargetNetwork | None = None
        self.updates = 0
        if cfg.input == "embedding":
            if model is None:
                raise ConfigError("aux.rnd.input=embedding: needs the agent's model")
            backbone = model.backbone
            self.rnd = RND(cfg, spec, input_dim=embedding_dim(backbone, spec))
            if cfg.slow_backbone != "none":
                mode = "hard" if cfg.slow_backbone == "periodic" else "polyak"
                period = cfg.slow_period if mode == "hard" else 1
                self.slow = TargetNetwork(backbone, mode, period, cfg.slow_tau)
                self.slow_backbone = self.slow.target  # registered: saved with the weights
        else:
            self.rnd = RND(cfg, spec)

    def intrinsic(self) -> IntrinsicSpec:
        """Discount and advantage coefficients of the intrinsic reward stream."""
        return IntrinsicSpec(self.cfg.gamma_int, self.cfg.ext_coef, self.cfg.int_coef)

    def coefficients(self) -> dict[str, float]:
        """a_RND, the predictor loss weight."""
        return {"a_RND": self.cfg.coef}

    @torch.no_grad()
    def inputs(self, obs: torch.Tensor, embedding: torch.Tensor | None = None) -> torch.Tensor:
        """What target and predictor see for observations ``(N, T, ...)``: the observations
        themselves, or (modified RND) the detached embedding ``(N, T, D)`` of the slow
        backbone, else of the agent's (``embedding`` when the agent computed it already)."""
        if self.cfg.input == "obs":
            return obs
        if self.slow is not None:
            return self.slow(obs)[0].float()
        if embedding is not None:
            return embedding.detach().float()
        return self.agent_model.backbone(obs)[0].float()

    @torch.no_grad()
    def warmup(self, envs: Any, seed: int) -> None:
        """``obs_norm_init=random``: step the envs with uniformly random actions until
        ``obs_norm_init_steps`` observations initialised the statistics (CleanRL's
        ``num_iterations_obs_norm_init`` loop; Burda et al. 2018, section 2.4)."""
        if self.cfg.obs_norm_init != "random" or self.rnd.ready:
            return
        spec, n = envs.spec, envs.num_envs
        rng = np.random.default_rng(seed)
        device = _device(self.rnd)
        frames = [np.asarray(envs.reset(seed=seed))]
        chunk = max(1, 256 // n)  # observe in (N, chunk) blocks
        while not self.rnd.ready:
            if spec.discrete:
                actions = rng.integers(0, spec.num_actions, size=n)
            else:
                low, high = spec.action_low, spec.action_high
                actions = rng.uniform(low, high, size=(n, *spec.action_shape)).astype(np.float32)
            frames.append(np.asarray(envs.step(actions).obs))
            if len(frames) >= chunk:
                obs = torch.from_numpy(np.stack(frames, axis=1)).to(device)
                self.rnd.observe(self.inputs(obs))
                frames = []

    @torch.no_grad()
    def intrinsic_reward(self, batch: Batch) -> torch.Tensor:
        """Intrinsic reward ``(N, T)`` of each step's next observation (the reset step holds
        the final observation after an episode end); statistics updated first."""
        nxt = self.inputs(next_observations(batch))
        self.rnd.observe(nxt, batch.valid)
        return self.rnd.intrinsic_reward(nxt, batch.valid)

    def compute_loss(
        self, mb: Batch, agent: Any, embedding: torch.Tensor | None = None
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """``coef *`` the predictor loss on a random fraction of the minibatch's valid
        observations (the observations acted in: every reached observation is one)."""
        loss = self.rnd.loss(self.inputs(mb.obs, embedding), mb.valid)
        return {"loss_rnd_predictor": self.cfg.coef * loss}, {"stats/rnd_loss": loss.detach()}

    def after_update(self) -> None:
        """Advance the slow backbone (a copy every ``slow_period`` updates, or Polyak)."""
        self.updates += 1
        if self.slow is not None:
            self.slow.update(self.updates)

    def extra_state(self) -> dict[str, Any]:
        """The normalisers, the update count and the slow backbone's last update."""
        state = self.rnd.extra_state() | {"updates": self.updates}
        if self.slow is not None:
            state["slow_last_update"] = self.slow.last_update
        return state

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`extra_state`."""
        self.rnd.load_extra_state(state)
        self.updates = int(state.get("updates", 0))
        if self.slow is not None:
            self.slow.last_update = int(state["slow_last_update"])


def _device(module: nn.Module) -> torch.device:
    """The device of a module's first parameter (CPU for a module without any)."""
    return next(iter(module.parameters()), torch.empty(0)).device

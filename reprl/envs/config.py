"""Typed configuration of environments (config group ``env``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from reprl.errors import ConfigError


@dataclass
class AtariConfig:
    """Atari preprocessing (Machado et al. 2018; Mnih et al. 2015), applied when the env id is
    an ALE game."""

    frame_skip: int = 4
    """Agent steps repeat the action this many frames, max-pooling the last two."""
    frame_stack: int = 4
    """Number of most recent frames stacked as the observation."""
    screen_size: int = 84
    """Frames are resized to screen_size x screen_size grayscale."""
    noop_max: int = 30
    """Up to this many no-op actions at reset (Mnih et al. 2015)."""
    episodic_life: bool = False
    """Training only: a lost life ends the episode for the learner (not for statistics)."""
    clip_rewards: bool = True
    """Training only: rewards clipped to their sign {-1, 0, 1}."""
    sticky_actions: float = 0.0
    """Repeat-action probability (0.25 in Machado et al. 2018's protocol)."""
    full_action_space: bool = False
    """Use all 18 ALE actions instead of the game's minimal set."""
    fire_reset: bool = True
    """Press FIRE after reset in games that need it to start."""
    max_frames_per_episode: int = 108_000
    """Emulator frames before truncation (30 minutes of play at 60 Hz)."""


@dataclass
class DMCConfig:
    """DeepMind Control Suite options (Tassa et al. 2018), applied when the env id is
    ``dmc/<domain>-<task>``. Pixel defaults follow DrQ (Kostrikov et al. 2020) and DrQ-v2
    (Yarats et al. 2021): 84x84 RGB frames, the last 3 stacked."""

    from_pixels: bool = False
    """Observe uint8 RGB camera frames ``(3 * frame_stack, height, width)`` instead of the
    task's state observations flattened to one float32 vector."""
    height: int = 84
    """Height in pixels of rendered observations (from_pixels only)."""
    width: int = 84
    """Width in pixels of rendered observations (from_pixels only)."""
    camera_id: int | None = None
    """Camera of pixel observations; None picks DrQ's choice: 2 for quadruped, else 0."""
    action_repeat: int = 1
    """Each agent step repeats its action this many control steps, summing the rewards and
    stopping early when the episode ends (PlaNet and DrQ: 8 for cartpole, 4 for cheetah,
    reacher and ball_in_cup, 2 for finger and walker; DrQ-v2: 2 everywhere)."""
    frame_stack: int = 3
    """Number of most recent frames stacked along the channel axis, zero-padded after reset
    (from_pixels only)."""


@dataclass
class EnvConfig:
    """An environment id, its vector backend and its wrappers."""

    id: str = "CartPole-v1"
    """Environment id (``reprl list envs``), e.g. CartPole-v1, LunarLander-v3, ALE/Breakout-v5."""
    num_envs: int = 8
    """Number of environments stepped together."""
    backend: str = "sync"
    """Vector backend: sync, async (subprocesses, shared memory), ale (ale-py's threaded
    AtariVectorEnv, Atari only), envpool (when installed) or jax (gymnax/ and craftax/ ids,
    one jitted step for all envs; ``pip install 'reprl[jax]'``)."""
    num_workers: int = 0
    """Worker processes (async) or threads (ale, envpool); 0 = one per CPU core, at most
    num_envs."""
    max_episode_steps: int | None = None
    """Time limit in agent steps; None keeps the env's registered limit."""
    reward_threshold: float | None = None
    """Evaluation mean return that counts as solved; None takes gymnasium's reward_threshold."""
    normalize_obs: bool = False
    """Normalise observations by running mean/std (statistics saved in checkpoints)."""
    normalize_reward: bool = False
    """Scale rewards by the running std of the discounted return (as SB3's VecNormalize)."""
    norm_gamma: float = 0.99
    """Discount of the return whose std scales rewards when normalize_reward is on."""
    clip_obs: float = 10.0
    """Normalised observations are clipped to [-clip_obs, clip_obs]."""
    clip_reward: float = 10.0
    """Normalised rewards are clipped to [-clip_reward, clip_reward]."""
    atari: AtariConfig = field(default_factory=AtariConfig)
    """Atari preprocessing options (ALE games only)."""
    dmc: DMCConfig = field(default_factory=DMCConfig)
    """DeepMind Control Suite options (``dmc/<domain>-<task>`` ids only)."""
    obs_mask: list[int] = field(default_factory=list)
    """Indices of flat observation entries hidden from the agent (set to 0, shape kept), for
    partially observable variants: [1, 3] hides CartPole's velocities. Classic control and
    Box2D envs (:class:`reprl.envs.wrappers.MaskObservation`)."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra keyword arguments of the env constructor: gymnasium.make's (e.g. continuous:
    true; MuJoCo's ctrl_cost_weight) or, for dmc/ ids, the suite task function's."""

    def validate(self, path: str) -> None:
        """Reject negative or repeated ``obs_mask`` indices (the size is checked when the env
        is made)."""
        if any(i < 0 for i in self.obs_mask) or len(set(self.obs_mask)) != len(self.obs_mask):
            raise ConfigError(
                f"{path}.obs_mask: indices must be distinct and >= 0, got {self.obs_mask}"
            )

"""RL agents; importing this package registers them in ``reprl.registry.AGENTS``."""

from reprl.agents import a2c, alphazero, dqn, ppo, r2d2, sac, td3  # noqa: F401
from reprl.agents.base import Agent

__all__ = ["Agent"]

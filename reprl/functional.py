"""``reprl.make_train``: the training pipeline as a Python function whose parts can be
replaced, for people who prefer composing in code to YAML.

``make_train(make_agent=..., make_optimizer=..., make_loss_fn=..., make_actor=...,
make_logger=...)`` returns ``train(config)``, the same run as ``reprl train`` (envs, the one
loop, evaluation, checkpoints, resume) with the given parts in place of the registry's;
``config`` is a :class:`~reprl.config.TrainConfig`, a list of overrides
(``["experiment=ppo_cartpole", "agent.lr=1e-3"]``) or a dict of ``key: value`` overrides.
Parts can be preloaded with :func:`functools.partial`::

    train = functools.partial(make_train, make_logger=my_logger)(make_loss_fn=my_loss)

Every part is optional (``None``: reprl's own) and is called once per run:

- ``make_agent(cfg, spec, device) -> Agent``: the agent (default: model from ``cfg.model``,
  agent from ``cfg.agent`` in the registry, auxiliaries attached: ``reprl.train.make_agent``);
- ``make_optimizer(agent, cfg) -> optimizer``: replaces ``agent.optimizer`` (any
  ``torch.optim`` optimizer over the agent's parameters);
- ``make_loss_fn(agent, cfg) -> loss_fn``: ``loss_fn(minibatch) -> ({"loss_<group>_<name>":
  scalar}, {"stats/<name>": scalar})`` replaces ``agent.compute_loss``; the minibatches are
  the agent's own (e.g. PPO's, with GAE advantages in ``extras``);
- ``make_actor(agent, cfg) -> act``: ``act(obs, state, is_first, deterministic=False) ->
  (action, extras, state)`` replaces ``agent.act`` (collection and evaluation);
- ``make_logger(run_dir, logger_cfg, config_dict) -> logger`` with ``log(metrics, step)`` and
  ``close()`` replaces the JSONL/TensorBoard/wandb logger.

``examples/reinforce.py`` defines a new algorithm this way in one file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from reprl.config import TrainConfig, load_config


@dataclass(frozen=True)
class TrainParts:
    """The replaceable parts of a training run (``None``: reprl's own)."""

    make_agent: Callable[..., Any] | None = None
    make_optimizer: Callable[..., Any] | None = None
    make_loss_fn: Callable[..., Any] | None = None
    make_actor: Callable[..., Any] | None = None
    make_logger: Callable[..., Any] | None = None


def as_config(config: TrainConfig | list[str] | dict[str, Any]) -> TrainConfig:
    """A TrainConfig from a TrainConfig, a list of overrides or a dict of overrides."""
    if isinstance(config, TrainConfig):
        return config
    if isinstance(config, dict):
        config = [f"{k}={v}" for k, v in config.items()]
    return load_config(list(config))


def make_train(
    make_agent: Callable[..., Any] | None = None,
    make_optimizer: Callable[..., Any] | None = None,
    make_loss_fn: Callable[..., Any] | None = None,
    make_actor: Callable[..., Any] | None = None,
    make_logger: Callable[..., Any] | None = None,
) -> Callable[[TrainConfig | list[str] | dict[str, Any]], Any]:
    """``train(config) -> TrainResult`` with the given parts (see the module docstring)."""
    parts = TrainParts(make_agent, make_optimizer, make_loss_fn, make_actor, make_logger)

    def train(config: TrainConfig | list[str] | dict[str, Any]) -> Any:
        from reprl.train import train as run_training

        return run_training(as_config(config), parts)

    return train


def build_agent(parts: TrainParts, cfg: TrainConfig, spec: Any, device: Any) -> Any:
    """The agent of a run with ``parts`` applied (called by :func:`reprl.train.train`)."""
    from reprl.train import make_agent

    agent = (parts.make_agent or make_agent)(cfg, spec, device)
    if parts.make_optimizer is not None:
        agent.optimizer = parts.make_optimizer(agent, cfg)
    if parts.make_loss_fn is not None:
        agent.compute_loss = parts.make_loss_fn(agent, cfg)
    if parts.make_actor is not None:  # acting never needs gradients (as Agent.act)
        agent.act = torch.inference_mode()(parts.make_actor(agent, cfg))
    return agent

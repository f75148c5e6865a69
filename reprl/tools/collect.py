"""``reprl collect CHECKPOINT_OR_random [env overrides] steps=N out=PATH``: write an offline
dataset in reprl's episode format (:mod:`reprl.data.datasets.episodes`) from any policy, so
users can make their own pretraining data.

- ``CHECKPOINT`` (a run folder or checkpoint): its agent acts in the env it was trained on,
  with the training wrappers and its frozen normaliser statistics (sampling its policy, or
  its mode with ``--deterministic``);
- ``random``: uniformly random actions in the env the overrides describe (``env=atari
  env.id=ALE/Pong-v5``, ``experiment=...``), built exactly as training builds it.

``env.num_envs`` envs are stepped together; every finished episode is written whole, and when
``steps`` steps are recorded the unfinished ones are written as truncated. The observations
are the wrappers' (Atari: stacked uint8 frames), the rewards the learner's (clipped),
``raw_reward`` the game's.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reprl.errors import ConfigError

DESCRIPTION = (
    "Write an offline dataset (reprl's episode format) from a checkpoint's agent or a random "
    "policy: reprl collect CHECKPOINT_OR_random [overrides] steps=N out=PATH"
)


@dataclass
class CollectRequest:
    """What to collect."""

    policy: str
    """A run folder or checkpoint, or ``random``."""
    overrides: list[str]
    steps: int
    out: Path
    seed: int = 0
    deterministic: bool = False


def _setup(request: CollectRequest) -> tuple[Any, Any, Any]:
    """(train config, agent or None, normaliser state or None)."""
    if request.policy == "random":
        from reprl.config import load_config

        return load_config(request.overrides), None, None
    from reprl.evaluation.cli import load_agent
    from reprl.runs import checkpoint as ckpt

    if request.overrides:
        raise ConfigError(
            "a checkpoint collects in the env it was trained on: drop the overrides "
            f"({' '.join(request.overrides)})"
        )
    agent, cfg, state = load_agent(request.policy)
    return cfg, agent, ckpt.normalizer_of(state)


def collect(request: CollectRequest, log: Any = print) -> dict[str, Any]:
    """Collect ``request.steps`` steps into ``request.out``; returns a summary."""
    from reprl.config import to_dict
    from reprl.data.datasets.episodes import EpisodeWriter, action_space_dict
    from reprl.envs import make_vector_env

    if request.steps < 1:
        raise ConfigError(f"steps: must be >= 1, got {request.steps}")
    cfg, agent, norm = _setup(request)
    envs = make_vector_env(cfg.env, seed=request.seed)
    try:
        spec, n = envs.spec, envs.num_envs
        if norm is not None:
            envs.load_normalizer_state(norm)
            envs.set_training(False)
        writer = EpisodeWriter(
            request.out,
            env_id=cfg.env.id,
            env_config=to_dict(cfg.env),
            obs_shape=tuple(spec.obs_shape),
            obs_dtype=np.dtype(spec.obs_dtype),
            action_space=action_space_dict(spec),
            source="random" if agent is None else "agent",
            checkpoint=None if agent is None else str(request.policy),
            frame_stack=max(getattr(spec, "frame_stack", 1), 1),
        )
        rng = np.random.default_rng(request.seed)
        episodes: list[list[tuple]] = [[] for _ in range(n)]
        obs = np.asarray(envs.reset(seed=request.seed))
        valid = np.ones(n, bool)
        is_first = np.ones(n, bool)
        state = agent.initial_state(n) if agent is not None else None
        recorded = written = 0

        def flush(i: int, final_obs: np.ndarray, cut: bool) -> None:
            nonlocal written
            steps = episodes[i]
            for k, (o, a, r, term, trunc) in enumerate(steps):
                last = k == len(steps) - 1
                writer.append(o, a, r, term, trunc or (cut and last))
            writer.end_episode(final_obs)
            episodes[i], written = [], written + 1

        while recorded < request.steps:
            if agent is None:
                if spec.discrete:
                    actions = rng.integers(0, spec.num_actions, n)
                else:
                    low, high = spec.action_low, spec.action_high
                    actions = rng.uniform(low, high, (n, *spec.action_shape)).astype(np.float32)
            else:
                action, _, state = agent.act(
                    torch.from_numpy(obs[:, None]),
                    state,
                    torch.from_numpy(is_first[:, None]),
                    request.deterministic,
                )
                actions = action[:, 0].cpu().numpy()
            res = envs.step(actions)
            done = res.terminated | res.truncated
            for i in np.flatnonzero(valid):  # reset steps (valid False) are not transitions
                a = actions[i].item() if spec.discrete else actions[i]
                episodes[i].append(
                    (
                        obs[i],
                        a,
                        float(res.reward[i]),
                        bool(res.terminated[i]),
                        bool(res.truncated[i]),
                    )
                )
                recorded += 1
                if done[i]:
                    flush(i, res.obs[i], cut=False)
            is_first, valid = ~valid, ~done
            obs = np.asarray(res.obs)
        for i in range(n):  # what is left is cut short: truncated
            if episodes[i]:
                flush(i, obs[i], cut=True)
        writer.close()
    finally:
        envs.close()
    summary = {"out": str(request.out), "steps": recorded, "episodes": written}
    log(f"collected {recorded} steps in {written} episodes to {request.out}")
    return summary


def _handler(args: argparse.Namespace) -> int:
    p = argparse.ArgumentParser(prog="reprl collect", description=DESCRIPTION)
    p.add_argument("policy", help="run folder or checkpoint, or 'random'")
    p.add_argument("overrides", nargs="*", help="steps=N out=PATH and (random) env overrides")
    p.add_argument("--seed", type=int, default=0, help="env and random-policy seed")
    p.add_argument("--deterministic", action="store_true", help="the agent acts with its mode")
    p.parse_intermixed_args(args.rest, namespace=args)
    steps, out, rest = None, None, []
    for text in args.overrides:
        if text.startswith("steps="):
            try:
                steps = int(text.split("=", 1)[1])
            except ValueError:
                raise ConfigError(f"{text}: steps must be an integer") from None
        elif text.startswith("out="):
            out = Path(text.split("=", 1)[1])
        else:
            rest.append(text)
    if steps is None or out is None:
        raise ConfigError("collect needs steps=N and out=PATH")
    collect(CollectRequest(args.policy, rest, steps, out, args.seed, args.deterministic))
    return 0


def add_parser(sub: Any) -> None:
    """Add ``reprl collect`` to the ``reprl`` command."""
    p = sub.add_parser(
        "collect",
        help="write an offline dataset from a checkpoint or a random policy: "
        "reprl collect CHECKPOINT_OR_random [k=v] steps=N out=PATH",
        description=DESCRIPTION,
    )
    p.add_argument("rest", nargs=argparse.REMAINDER, metavar="args")
    p.set_defaults(fn=_handler)

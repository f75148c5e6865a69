"""``reprl audit``: what rewards does an env really give, before and after the training wrappers?

The env is built exactly as ``reprl train`` builds it (:func:`reprl.config.load_config`, then
:func:`reprl.envs.make_vector_env` with the config's ``env`` and ``seed``), and is stepped by a
uniformly random policy or by the agent of a checkpoint (``--agent``, sampling its actions as in
training, with the checkpoint's own env config and normalisation statistics).

Two streams of per-step rewards are audited:

- **raw**: the env's own rewards, before Atari reward clipping and reward normalisation. The
  vector env's public step result only carries the learner's rewards and the raw *episode*
  returns, so the raw per-step rewards are read where every backend produces them: the raw step
  of :class:`reprl.envs.core.CoreVectorEnv` (``_step_envs``), tapped for this process only.
- **learner**: the rewards the agent learns from (``StepResult.reward``), after clipping and
  normalisation (the normaliser's statistics update as in training).

Steps that do not belong to an episode are left out of both: the autoreset step after an
episode's end (reward 0, action ignored) for the raw stream, and additionally the step after a
lost life with ``env.atari.episodic_life`` for the learner's stream (the rollout's ``valid``).

Per stream: count, mean, std (population), min, max; outliers (``|z| > 3`` *and* outside the
1.5 IQR fences; their count and the one with the largest ``|z|``); the most frequent values with
counts and frequencies (flagged ``continuous`` when more than :data:`CONTINUOUS_DISTINCT`
distinct values occur). Episodes: raw returns and lengths as the vector env reports them (the
whole game, also with episodic life) and the learner's (sum of learner rewards between the
learner's episode ends); mean, std, min, median, max, count.

Random policy: for each vector step, ``rng.integers(0, num_actions, num_envs)`` (discrete) or
``rng.uniform(low, high, (num_envs, *action_shape))`` (continuous; infinite bounds taken as
+-1), with ``rng = numpy.random.default_rng(seed)``.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reprl.errors import ReprlError

DEFAULT_STEPS = 10_000
TOP_VALUES = 10
"""Most frequent reward values reported per stream."""
CONTINUOUS_DISTINCT = 20
"""More distinct reward values than this: the rewards count as continuous."""


@dataclass
class AuditData:
    """What :func:`collect` observed: per-step rewards ``(steps,)`` and finished episodes."""

    env_id: str
    num_envs: int
    seed: int
    policy: str
    vector_steps: int
    transforms: dict[str, bool]
    raw_rewards: np.ndarray | None
    learner_rewards: np.ndarray
    raw_returns: np.ndarray
    raw_lengths: np.ndarray
    learner_returns: np.ndarray
    learner_lengths: np.ndarray
    notes: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- statistics
def reward_stats(rewards: np.ndarray, top: int = TOP_VALUES) -> dict[str, Any]:
    """Count, mean, std, min, max, outliers and value counts of per-step rewards."""
    r = np.asarray(rewards, np.float64)
    n = int(r.size)
    if n == 0:
        return {"count": 0}
    mean, std = float(r.mean()), float(r.std())
    q1, q3 = np.percentile(r, [25, 75])
    iqr = q3 - q1
    z = (r - mean) / std if std > 0 else np.zeros_like(r)
    outside = (r < q1 - 1.5 * iqr) | (r > q3 + 1.5 * iqr)
    outlier = (np.abs(z) > 3) & outside
    largest = None
    if outlier.any():
        i = int(np.argmax(np.where(outlier, np.abs(z), -1.0)))
        largest = {"value": float(r[i]), "z": float(z[i])}
    values, counts = np.unique(r, return_counts=True)
    order = np.argsort(-counts, kind="stable")[:top]
    return {
        "count": n,
        "mean": mean,
        "std": std,
        "min": float(r.min()),
        "max": float(r.max()),
        "q1": float(q1),
        "q3": float(q3),
        "outliers": {"count": int(outlier.sum()), "largest": largest},
        "distinct": int(values.size),
        "continuous": bool(values.size > CONTINUOUS_DISTINCT),
        "top_values": [
            {"value": float(values[i]), "count": int(counts[i]), "freq": float(counts[i] / n)}
            for i in order
        ],
    }


def distribution(x: np.ndarray) -> dict[str, Any]:
    """Mean, std (population), min, median, max and count (None where empty)."""
    x = np.asarray(x, np.float64)
    if x.size == 0:
        return {"count": 0, "mean": None, "std": None, "min": None, "median": None, "max": None}
    return {
        "count": int(x.size),
        "mean": float(x.mean()),
        "std": float(x.std()),
        "min": float(x.min()),
        "median": float(np.median(x)),
        "max": float(x.max()),
    }


def summarize(data: AuditData) -> dict[str, Any]:
    """The JSON-able audit report of ``data``."""
    return {
        "env_id": data.env_id,
        "num_envs": data.num_envs,
        "seed": data.seed,
        "policy": data.policy,
        "vector_steps": data.vector_steps,
        "env_steps": data.vector_steps * data.num_envs,
        "transforms": data.transforms,
        "raw_reward": None if data.raw_rewards is None else reward_stats(data.raw_rewards),
        "learner_reward": reward_stats(data.learner_rewards),
        "raw_episodes": {
            "return": distribution(data.raw_returns),
            "length": distribution(data.raw_lengths),
        },
        "learner_episodes": {
            "return": distribution(data.learner_returns),
            "length": distribution(data.learner_lengths),
        },
        "notes": list(data.notes),
    }


# ----------------------------------------------------------------------------- stepping
def _tap_raw_rewards(envs: Any) -> Callable[[], np.ndarray] | None:
    """Wrap the raw step of the innermost :class:`CoreVectorEnv` under ``envs`` so that its
    last raw rewards can be read; None when ``envs`` is not built on one."""
    from reprl.envs.base import VectorEnv
    from reprl.envs.core import CoreVectorEnv

    core = envs
    while not isinstance(core, CoreVectorEnv) and isinstance(getattr(core, "env", None), VectorEnv):
        core = core.env
    if not isinstance(core, CoreVectorEnv):
        return None
    step_envs = core._step_envs
    last: dict[str, np.ndarray] = {}

    def tapped(actions: np.ndarray) -> Any:
        out = step_envs(actions)
        last["reward"] = np.array(out[1], np.float64)
        return out

    core._step_envs = tapped  # type: ignore[method-assign]
    return lambda: last["reward"]


def _random_policy(spec: Any, num_envs: int, seed: int) -> Callable[..., np.ndarray]:
    rng = np.random.default_rng(seed)
    if spec.discrete:
        return lambda obs, is_first: rng.integers(0, spec.num_actions, num_envs)
    low = np.where(np.isfinite(spec.action_low), spec.action_low, -1.0)
    high = np.where(np.isfinite(spec.action_high), spec.action_high, 1.0)
    return lambda obs, is_first: rng.uniform(low, high, (num_envs, *spec.action_shape))


def _agent_policy(agent: Any, num_envs: int, seed: int) -> Callable[..., np.ndarray]:
    import torch

    torch.manual_seed(seed)
    holder = {"state": agent.initial_state(num_envs)}

    def act(obs: np.ndarray, is_first: np.ndarray) -> np.ndarray:
        obs_t = torch.from_numpy(np.array(obs))[:, None]
        first = torch.from_numpy(is_first)[:, None]
        action, _, holder["state"] = agent.act(obs_t, holder["state"], first, False)
        return action[:, 0].cpu().numpy()

    return act


def collect(
    cfg: Any, steps: int, agent_path: str | Path | None = None, seed: int | None = None
) -> AuditData:
    """Step the training env of ``cfg`` (a TrainConfig) ``steps`` env steps (rounded up to whole
    vector steps) with a random policy, or with the agent of ``agent_path`` and that checkpoint's
    own env config; ``seed`` defaults to ``cfg.seed``. See the module docstring."""
    from reprl.envs import make_vector_env, resolve_env

    if steps < 1:
        raise ReprlError(f"--steps must be >= 1, got {steps}")
    state: dict[str, Any] | None = None
    agent = None
    if agent_path is not None:
        from reprl.evaluation.cli import load_agent

        agent, cfg, state = load_agent(agent_path)
    seed = cfg.seed if seed is None else seed
    env_cfg = cfg.env
    episodic_life, clip_rewards = resolve_env(env_cfg.id).score_transforms(env_cfg, False)
    transforms = {
        "clip_rewards": bool(clip_rewards),
        "episodic_life": bool(episodic_life),
        "normalize_reward": bool(env_cfg.normalize_reward),
    }
    envs = make_vector_env(env_cfg, seed=seed)  # as train.py (rank 0): env i seeded seed + i
    notes: list[str] = []
    try:
        n = envs.num_envs
        if state is not None:
            from reprl.runs import checkpoint as ckpt

            envs.load_normalizer_state(ckpt.normalizer_of(state))
        policy = (
            _random_policy(envs.spec, n, seed) if agent is None else _agent_policy(agent, n, seed)
        )
        raw_reward = _tap_raw_rewards(envs)
        if raw_reward is None:
            notes.append(
                "raw per-step rewards are not available for this vector env: the raw statistics "
                "are the episode returns only"
            )
        vector_steps = math.ceil(steps / n)
        raw_r: list[np.ndarray] = []
        learner_r: list[np.ndarray] = []
        raw_ret: list[float] = []
        raw_len: list[int] = []
        learner_ret: list[float] = []
        learner_len: list[int] = []
        raw_valid = np.ones(n, bool)  # False: the autoreset step after a game's end
        valid = np.ones(n, bool)  # the learner's: also False after a lost life
        is_first = np.ones(n, bool)
        ep_return = np.zeros(n, np.float64)
        ep_length = np.zeros(n, np.int64)
        obs = envs.reset()
        for _ in range(vector_steps):
            res = envs.step(policy(obs, is_first))
            if raw_reward is not None:
                raw_r.append(raw_reward()[raw_valid])
            reward = res.reward.astype(np.float64)
            learner_r.append(reward[valid])
            ep_return += np.where(valid, reward, 0.0)
            ep_length += valid
            ended = res.episode_length > 0
            raw_ret += res.episode_return[ended].tolist()
            raw_len += res.episode_length[ended].tolist()
            done = res.terminated | res.truncated
            learner_ret += ep_return[done & valid].tolist()
            learner_len += ep_length[done & valid].tolist()
            ep_return[done] = 0.0
            ep_length[done] = 0
            is_first = ~valid  # as the rollout: the obs after a reset step starts an episode
            valid = ~done
            raw_valid = ~ended
            obs = res.obs
    finally:
        envs.close()
    if not raw_ret:
        notes.append("no episode ended: run more --steps for episode statistics")
    return AuditData(
        env_id=env_cfg.id,
        num_envs=n,
        seed=seed,
        policy="random" if agent_path is None else f"agent {agent_path}",
        vector_steps=vector_steps,
        transforms=transforms,
        raw_rewards=np.concatenate(raw_r) if raw_reward is not None else None,
        learner_rewards=np.concatenate(learner_r),
        raw_returns=np.array(raw_ret, np.float64),
        raw_lengths=np.array(raw_len, np.int64),
        learner_returns=np.array(learner_ret, np.float64),
        learner_lengths=np.array(learner_len, np.int64),
        notes=notes,
    )


def audit(
    cfg: Any, steps: int, agent_path: str | Path | None = None, seed: int | None = None
) -> dict[str, Any]:
    """The audit report (see :func:`summarize`) of ``steps`` env steps of ``cfg``'s env."""
    return summarize(collect(cfg, steps, agent_path, seed))


# ----------------------------------------------------------------------------- output
def default_out(env_id: str) -> Path:
    """``audit-<env id>`` with path separators and odd characters replaced."""
    return Path(f"audit-{re.sub(r'[^A-Za-z0-9._-]+', '_', env_id)}")


def write_report(data: AuditData, report: dict[str, Any], out: Path) -> tuple[Path, Path]:
    """Write ``audit.json`` and ``audit.png`` (reward, return and length histograms)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    json_path, png_path = out / "audit.json", out / "audit.png"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    panels = (
        ("per-step reward", data.raw_rewards, data.learner_rewards),
        ("episode return", data.raw_returns, data.learner_returns),
        ("episode length", data.raw_lengths, data.learner_lengths),
    )
    for ax, (title, raw, learner) in zip(axes, panels):
        present = [v for v in (raw, learner) if v is not None and len(v)]
        if present:  # shared bins, so that the two streams compare bar for bar
            bins = np.histogram_bin_edges(np.concatenate(present).astype(np.float64), bins=50)
        for values, label, style in ((raw, "raw", "stepfilled"), (learner, "learner", "step")):
            if values is not None and len(values):
                ax.hist(
                    values,
                    bins=bins,
                    histtype=style,
                    alpha=0.5 if style == "stepfilled" else 1.0,
                    linewidth=1.5,
                    label=f"{label} (n={len(values)})",
                )
        if title == "per-step reward":
            ax.set_yscale("log")  # sparse rewards: the rare values stay visible
        ax.set_title(title)
        ax.set_xlabel(title)
        ax.set_ylabel("count")
        if ax.has_data():
            ax.legend(fontsize="small")
    fig.suptitle(f"{data.env_id}: {data.policy} policy, {data.vector_steps * data.num_envs} steps")
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return json_path, png_path


def _g(value: Any) -> str:
    return "-" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def render(report: dict[str, Any]) -> list[Any]:
    """Rich tables of ``report``: per-step rewards, frequent values, episodes."""
    from rich.table import Table

    streams = [("raw", report["raw_reward"]), ("learner", report["learner_reward"])]
    streams = [(name, s) for name, s in streams if s is not None]
    rewards = Table(
        show_edge=False,
        title=f"{report['env_id']}: per-step rewards",
        caption=f"{report['policy']} policy, {report['env_steps']} steps; training wrappers: "
        + ", ".join(f"{k}={v}" for k, v in report["transforms"].items())
        + "; values: distinct rewards (+: continuous)",
    )
    for col in ("stream", "count", "mean", "std", "min", "max", "outliers", "largest", "values"):
        rewards.add_column(col, justify="left" if col == "stream" else "right")
    for name, s in streams:
        if not s["count"]:
            rewards.add_row(name, "0", *["-"] * 7)
            continue
        largest = s["outliers"]["largest"]
        rewards.add_row(
            name,
            str(s["count"]),
            _g(s["mean"]),
            _g(s["std"]),
            _g(s["min"]),
            _g(s["max"]),
            str(s["outliers"]["count"]),
            "-" if largest is None else f"{largest['value']:.3g} z{largest['z']:+.0f}",
            f"{s['distinct']}{'+' if s['continuous'] else ''}",
        )
    values = Table(title="most frequent reward values")
    for col in ("stream", "value", "count", "freq"):
        values.add_column(col, justify="left" if col == "stream" else "right")
    for name, s in streams:
        for v in s.get("top_values", []):
            values.add_row(name, f"{v['value']:.6g}", str(v["count"]), f"{v['freq']:.2%}")
    episodes = Table(title="episodes")
    for col in ("", "count", "mean", "std", "min", "median", "max"):
        episodes.add_column(col, justify="left" if not col else "right")
    for side in ("raw", "learner"):
        for what in ("return", "length"):
            d = report[f"{side}_episodes"][what]
            episodes.add_row(
                f"{side} {what}",
                str(d["count"]),
                *(_g(d[k]) for k in ("mean", "std", "min", "median", "max")),
            )
    return [rewards, values, episodes]


# ----------------------------------------------------------------------------- CLI
def _add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--steps", type=int, default=DEFAULT_STEPS, help=f"env steps (default {DEFAULT_STEPS})"
    )
    p.add_argument(
        "--agent",
        metavar="CHECKPOINT",
        help="act with this run folder's or checkpoint's agent and its own env config "
        "(default: a uniformly random policy)",
    )
    p.add_argument("--out", metavar="DIR", help="output folder (default audit-<env id>)")
    p.add_argument("--seed", type=int, help="env and policy seed (default: the config's seed)")


def _parser() -> argparse.ArgumentParser:
    """Parses what follows ``reprl audit``: overrides and options in any order."""
    p = argparse.ArgumentParser(prog="reprl audit")
    p.add_argument("overrides", nargs="*")
    _add_options(p)
    return p


def _cmd(args: argparse.Namespace) -> int:
    from rich.console import Console

    from reprl.config import load_config

    # As for ``reprl suite``: options may follow the overrides, so what follows ``reprl audit``
    # is parsed again by a parser without subcommands.
    _parser().parse_intermixed_args(args.rest, namespace=args)
    if args.agent and args.overrides:
        raise ReprlError(
            "--agent audits with the checkpoint's own config: drop the overrides "
            f"({' '.join(args.overrides)})"
        )
    cfg = load_config(args.overrides)
    data = collect(cfg, args.steps, args.agent, args.seed)
    report = summarize(data)
    out = Path(args.out) if args.out else default_out(data.env_id)
    json_path, png_path = write_report(data, report, out)
    console = Console(highlight=False)
    for table in render(report):
        console.print(table)
    for note in report["notes"]:
        console.print(f"note: {note}")
    console.print(f"wrote {json_path} and {png_path}")
    return 0


def add_parser(sub: Any) -> None:
    """Add ``reprl audit`` to the CLI's subparsers."""
    p = sub.add_parser(
        "audit",
        help="reward audit of an env as training builds it: reprl audit env=X [k=v] "
        "[--steps N] [--agent CKPT]",
        description="Per-step reward and episode statistics of an env built as for training, "
        "raw and as the learner sees them (after clipping/normalisation); writes audit.json "
        "and audit.png.",
    )
    p.add_argument(
        "rest",
        nargs=argparse.REMAINDER,
        metavar="overrides",
        help="the overrides of train (env=..., experiment=..., key=value), options in any order",
    )
    _add_options(p)
    p.set_defaults(fn=_cmd)

"""Every shipped experiment trains end to end for an iteration or two (shrunk), and a short
Atari run works with each available vector backend."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from reprl.config import list_group, load_config
from reprl.errors import ConfigError
from reprl.runs import checkpoint as ckpt
from reprl.train import train

TINY = [
    "logger.progress=false",
    "logger.tensorboard=false",
    "eval.episodes=2",
    "eval.every_steps=0",
]


HAS_MARIO = importlib.util.find_spec("nes_py") is not None
HAS_VIZDOOM = importlib.util.find_spec("vizdoom") is not None
HAS_JAX = all(importlib.util.find_spec(m) for m in ("jax", "gymnax", "craftax"))
NEEDS_CHECKPOINT = "pretrained"  # presets whose backbone comes from a run: see below


def experiment_params() -> list:
    params = []
    for name in list_group("experiment"):
        if "atari" in name or NEEDS_CHECKPOINT in name:
            continue
        marks = []
        if "mario" in name:
            marks = [pytest.mark.skipif(not HAS_MARIO, reason="mario extra not installed")]
        if "vizdoom" in name:
            marks = [pytest.mark.skipif(not HAS_VIZDOOM, reason="vizdoom extra not installed")]
        if "craftax" in name or "gymnax" in name:
            marks = [pytest.mark.skipif(not HAS_JAX, reason="jax extra not installed")]
        params.append(pytest.param(name, marks=marks))
    return params


@pytest.mark.parametrize("name", experiment_params())
def test_experiment_runs(name: str, tmp_path: Path) -> None:
    shrink = ["env.num_envs=2", "total_steps=64"]
    full = load_config([f"experiment={name}"])
    agent = full.agent["name"]
    if "rnd" in full.aux:  # reach the intrinsic rewards within the tiny budget
        shrink += ["aux.rnd.obs_norm_init_steps=16"]
    if agent in ("dqn", "sac", "td3", "ddpg", "r2d2"):  # off-policy: shrink collection and updates
        shrink += [
            "agent.train_freq=16",
            "agent.learning_starts=16",
            "agent.batch_size=8",
            "agent.gradient_steps=2",
        ]
        if full.env.max_episode_steps is None or full.env.max_episode_steps > 100:
            shrink += ["env.max_episode_steps=50"]  # short evaluation episodes (MuJoCo, DMC)
    elif agent == "alphazero":  # self-play: few short searches, no arena
        shrink = ["total_steps=64", "agent.num_games=2", "agent.num_simulations=4"]
        shrink += ["agent.batch_size=8", "agent.learning_starts=8", "agent.arena_every=0"]
    else:
        shrink += ["agent.num_steps=16"]
    if agent == "ppo":
        shrink += ["agent.num_minibatches=2", "agent.num_epochs=1"]
    cfg = load_config([f"experiment={name}", *shrink, *TINY, f"run_dir={tmp_path}"])
    result = train(cfg)
    # self-play iterations add whole games, so AlphaZero may pass the budget by a game
    assert result.global_step == 64 or (agent == "alphazero" and result.global_step > 64)
    assert (tmp_path / "config.yaml").is_file() and (tmp_path / "metrics.jsonl").is_file()
    saved = ckpt.load(ckpt.resolve(tmp_path))["run_state"]["global_step"]
    assert saved == result.global_step


@pytest.mark.atari
@pytest.mark.parametrize(
    "name", [n for n in list_group("experiment") if NEEDS_CHECKPOINT in n and "atari" not in n]
)
def test_pretrained_backbone_presets_run_from_a_checkpoint(name: str, tmp_path: Path) -> None:
    """The pretrained presets start from another run's backbone (here a tiny run of their
    base preset): the backbone is loaded and, frozen, still equals the source's after
    training."""
    base = name.replace("pretrained_", "")
    tiny = ["env.num_envs=2", "agent.num_steps=16", "agent.num_minibatches=2"]
    tiny += ["agent.num_epochs=1", "total_steps=32", "eval.at_end=false", *TINY]
    train(load_config([f"experiment={base}", *tiny, f"run_dir={tmp_path / 'source'}"]))
    with pytest.raises(ConfigError, match="init_from"):
        load_config([f"experiment={name}"])
    cfg = load_config(
        [
            f"experiment={name}",
            f"model.backbone.init_from={tmp_path / 'source'}",
            "model.backbone.freeze=true",
            *tiny,
            f"run_dir={tmp_path / 'run'}",
        ]
    )
    assert train(cfg).global_step == 32
    source = ckpt.load(ckpt.resolve(tmp_path / "source"))["agent"]["model"]
    run = ckpt.load(ckpt.resolve(tmp_path / "run"))["agent"]["model"]
    backbone = [k for k in source if k.startswith("backbone.")]
    assert backbone and all(torch.equal(source[k], run[k]) for k in backbone)


BACKENDS = ["sync", "async", "ale"] + (["envpool"] if importlib.util.find_spec("envpool") else [])


@pytest.mark.atari
@pytest.mark.parametrize("backend", BACKENDS)
def test_short_atari_run(backend: str, tmp_path: Path) -> None:
    cfg = load_config(
        [
            "experiment=ppo_atari",
            f"env.backend={backend}",
            "env.num_envs=2",
            "agent.num_steps=32",
            "agent.num_minibatches=2",
            "agent.num_epochs=1",
            "total_steps=128",
            "eval.episodes=1",
            "eval.every_steps=0",
            "eval.at_end=false",
            *TINY[:2],
            f"run_dir={tmp_path}",
        ]
    )
    result = train(cfg)
    assert result.global_step == 128
    records = [
        r for r in map(yaml.safe_load, (tmp_path / "metrics.jsonl").read_text().splitlines())
    ]
    assert all("losses/rl_policy" in r for r in records)


def test_torchrun_two_processes_keep_identical_parameters(tmp_path: Path) -> None:
    run = tmp_path / "ddp"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            "-m",
            "reprl",
            "train",
            "experiment=ppo_cartpole",
            "total_steps=4096",
            "eval.episodes=2",
            *TINY[:2],
            f"run_dir={run}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = yaml.safe_load((run / "summary.yaml").read_text())
    assert summary["world_size"] == 2
    assert summary["global_step"] == 4096  # both ranks' envs count
    assert summary["param_divergence_across_ranks"] == 0.0
    # rank 0 alone writes: one metrics file, one set of checkpoints
    assert len(list(tmp_path.rglob("metrics.jsonl"))) == 1

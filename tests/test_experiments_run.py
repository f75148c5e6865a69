"""Every shipped experiment trains end to end for an iteration or two (shrunk), and a short
Atari run works with each available vector backend."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from reprl.config import list_group, load_config
from reprl.runs import checkpoint as ckpt
from reprl.train import train

TINY = [
    "logger.progress=false",
    "logger.tensorboard=false",
    "eval.episodes=2",
    "eval.every_steps=0",
]


@pytest.mark.parametrize("name", [n for n in list_group("experiment") if "atari" not in n])
def test_experiment_runs(name: str, tmp_path: Path) -> None:
    shrink = ["env.num_envs=2", "total_steps=64"]
    full = load_config([f"experiment={name}"])
    agent = full.agent["name"]
    if agent in ("dqn", "sac", "td3", "ddpg"):  # off-policy: shrink collection and updates
        shrink += [
            "agent.train_freq=16",
            "agent.learning_starts=16",
            "agent.batch_size=8",
            "agent.gradient_steps=2",
        ]
        if full.env.max_episode_steps is None or full.env.max_episode_steps > 100:
            shrink += ["env.max_episode_steps=50"]  # short evaluation episodes (MuJoCo, DMC)
    else:
        shrink += ["agent.num_steps=16"]
    if agent == "ppo":
        shrink += ["agent.num_minibatches=2", "agent.num_epochs=1"]
    cfg = load_config([f"experiment={name}", *shrink, *TINY, f"run_dir={tmp_path}"])
    result = train(cfg)
    assert result.global_step == 64
    assert (tmp_path / "config.yaml").is_file() and (tmp_path / "metrics.jsonl").is_file()
    assert ckpt.load(ckpt.resolve(tmp_path))["run_state"]["global_step"] == 64


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

"""Agents learn: PPO and A2C solve CartPole for a fixed seed within their step budgets."""

from __future__ import annotations

from pathlib import Path

import pytest

from reprl.config import load_config
from reprl.train import train

QUIET = ["logger.progress=false", "logger.tensorboard=false"]


def test_ppo_solves_cartpole(tmp_path: Path) -> None:
    cfg = load_config(["experiment=ppo_cartpole", "seed=1", *QUIET, f"run_dir={tmp_path}"])
    result = train(cfg)
    assert result.solved_step is not None and result.solved_step <= 100_000
    assert result.final_eval is not None and result.final_eval["mean_return"] >= 475


def test_a2c_solves_cartpole(tmp_path: Path) -> None:
    cfg = load_config(["experiment=a2c_cartpole", "seed=1", *QUIET, f"run_dir={tmp_path}"])
    result = train(cfg)
    assert result.solved_step is not None and result.solved_step <= 500_000
    assert result.final_eval is not None and result.final_eval["mean_return"] >= 475


@pytest.mark.slow
def test_ppo_solves_acrobot(tmp_path: Path) -> None:
    cfg = load_config(["experiment=ppo_acrobot", "seed=1", *QUIET, f"run_dir={tmp_path}"])
    result = train(cfg)
    assert result.final_eval is not None and result.final_eval["mean_return"] >= -100


@pytest.mark.slow
def test_ppo_learns_pendulum(tmp_path: Path) -> None:
    cfg = load_config(["experiment=ppo_pendulum", "seed=1", *QUIET, f"run_dir={tmp_path}"])
    result = train(cfg)
    assert result.final_eval is not None and result.final_eval["mean_return"] >= -400

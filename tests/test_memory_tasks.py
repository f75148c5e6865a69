"""Memory: on bsuite's memory-length task (a cue seen once, judged 6 steps later) R2D2 solves
what its feed-forward twin (DQN, same network without the LSTM, same budget) cannot: the
feed-forward agent never sees the cue when it acts and stays at chance.

Recurrent PPO's memory test is ``test_recurrent_ppo.py`` (CartPole with velocities hidden)."""

from __future__ import annotations

from pathlib import Path

import pytest

from reprl.config import load_config
from reprl.train import train

QUIET = ["logger.progress=false", "logger.tensorboard=false", "seed=0"]


@pytest.mark.slow
def test_r2d2_remembers_where_dqn_cannot(tmp_path: Path) -> None:
    """Measured (seed 0): R2D2 solves at 6k steps (~30 s); DQN's evaluations stay at +-0.04
    over 20k steps (it always answers the same)."""
    r2d2 = train(
        load_config(["experiment=r2d2_memory_length", *QUIET, f"run_dir={tmp_path / 'r'}"])
    )
    assert r2d2.final_eval is not None and r2d2.final_eval["mean_return"] >= 0.9
    dqn = train(
        load_config(
            ["experiment=dqn_memory_length", "total_steps=12000", *QUIET, f"run_dir={tmp_path}/d"]
        )
    )
    assert dqn.final_eval is not None and dqn.final_eval["mean_return"] <= 0.3

"""Epsilon-greedy evaluation (``eval.epsilon``): each env takes a uniformly random action with
that probability instead of the agent's, reproducibly for a seed, and discrete actions only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from reprl.cli import main
from reprl.config import load_config
from reprl.envs.config import EnvConfig
from reprl.errors import ConfigError
from reprl.evaluation.evaluate import evaluate
from reprl.train import train


class AlwaysLeft:
    """An agent that always pushes the cart left (action 0)."""

    def initial_state(self, n: int) -> None:
        return None

    def act(self, obs: torch.Tensor, state: None, is_first: torch.Tensor, deterministic: bool):
        return torch.zeros(obs.shape[0], 1, dtype=torch.long), {}, state


def played_actions(epsilon: float, seed: int = 0) -> list[int]:
    """Env 0's actions over its first episode (the recorder sees each one)."""
    actions: list[int] = []

    def record(frame: np.ndarray, action: np.ndarray | None, reward: float) -> None:
        if action is not None:
            actions.append(int(action))

    evaluate(
        AlwaysLeft(), EnvConfig(id="CartPole-v1"), 1, seed=seed, recorder=record, epsilon=epsilon
    )
    return actions


def test_epsilon_replaces_the_agents_actions() -> None:
    assert set(played_actions(0.0)) == {0}  # greedy: the agent's actions only
    random = played_actions(1.0)
    # all random: both actions, each about half the time; the episode outlives always-left's
    assert len(random) > len(played_actions(0.0))
    assert 0.3 < np.mean(random) < 0.7
    some = [a for seed in range(5) for a in played_actions(0.2, seed)]
    assert 0.02 < np.mean(some) < 0.2  # random w.p. 0.2, of which half push right


def test_epsilon_is_reproducible_for_a_seed() -> None:
    cfg = EnvConfig(id="CartPole-v1")
    first = evaluate(AlwaysLeft(), cfg, 4, seed=3, epsilon=0.5)["returns"]
    assert evaluate(AlwaysLeft(), cfg, 4, seed=3, epsilon=0.5)["returns"] == first
    assert evaluate(AlwaysLeft(), cfg, 4, seed=4, epsilon=0.5)["returns"] != first


def test_continuous_actions_fail_before_training(tmp_path: Path) -> None:
    run = tmp_path / "r"
    cfg = load_config(
        ["experiment=sac_pendulum", "eval.epsilon=0.1", "logger.progress=false", f"run_dir={run}"]
    )
    with pytest.raises(ConfigError, match="needs discrete actions; Pendulum-v1 has continuous"):
        train(cfg)
    assert not (run / "metrics.jsonl").exists()


def test_run_and_eval_cli_use_epsilon(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "r"
    overrides = ["experiment=dqn_cartpole", "total_steps=300", "agent.learning_starts=100"]
    result = train(
        load_config(
            [
                *overrides,
                "eval.epsilon=1.0",
                "eval.episodes=3",
                "logger.progress=false",
                f"run_dir={run}",
            ]
        )  # fmt: skip
    )
    assert result.final_eval is not None and len(result.final_eval["lengths"]) == 3
    # the eval CLI: the run's eval.epsilon unless --epsilon is given
    args = ["eval", str(run), "--episodes", "3", "--seed", "5"]
    assert main([*args, "--epsilon", "1.0", "--json"]) == 0
    forced = capsys.readouterr().out.strip().splitlines()[-1]
    assert main([*args, "--json"]) == 0  # the run's own eval.epsilon (1.0)
    assert capsys.readouterr().out.strip().splitlines()[-1] == forced
    assert main([*args, "--epsilon", "0", "--json"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] != forced
    assert main([*args, "--epsilon", "2"]) == 2
    assert "--epsilon must be in [0, 1], got 2.0" in capsys.readouterr().err

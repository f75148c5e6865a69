"""reprl.make_train: each replaceable part takes effect, parts preload with functools.partial,
and the worked example (REINFORCE in one file) learns."""

from __future__ import annotations

import functools
import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from reprl import make_train
from reprl.runs import checkpoint as ckpt

ROOT = Path(__file__).resolve().parent.parent
TINY = [
    "experiment=ppo_cartpole",
    "total_steps=1024",
    "eval.episodes=3",
    "logger.progress=false",
    "logger.tensorboard=false",
]


class ListLogger:
    """A logger that keeps every record in memory."""

    def __init__(self, run_dir, logger_cfg, config_dict) -> None:
        self.records: list[tuple[int, dict]] = []
        self.closed = False
        ListLogger.last = self

    def log(self, metrics: dict, step: int) -> None:
        self.records.append((step, dict(metrics)))

    def close(self) -> None:
        self.closed = True


def test_logger_optimizer_and_actor_parts(tmp_path: Path) -> None:
    class CountingSGD(torch.optim.SGD):
        steps = 0

        def step(self, closure=None):
            CountingSGD.steps += 1
            return super().step(closure)

    def sgd(agent, cfg):
        return CountingSGD(agent.model.parameters(), lr=0.1)  # lr follows agent.lr's schedule

    def always_left(agent, cfg):
        def act(obs, state, is_first, deterministic=False):
            action = torch.zeros(obs.shape[0], 1, dtype=torch.long)
            return action, agent.act_extras(agent.model(obs)[0][0], action), state

        return act

    train = functools.partial(make_train, make_logger=ListLogger)(
        make_optimizer=sgd, make_actor=always_left
    )
    result = train([*TINY, f"run_dir={tmp_path}"])
    logger = ListLogger.last
    assert logger.closed and any("losses/rl_policy" in m for _, m in logger.records)
    assert not (tmp_path / "metrics.jsonl").exists()  # the default logger was replaced
    # 1024 steps = 4 rollouts of 8 envs x 32 steps, 20 epochs of one minibatch each
    assert CountingSGD.steps == 4 * 20
    assert (
        ckpt.load(ckpt.resolve(tmp_path))["agent"]["optimizer"]["param_groups"][0]["momentum"] == 0
    )
    assert result.final_eval["mean_length"] < 15  # always pushing left falls at once


def test_dict_config_and_loss_part(tmp_path: Path) -> None:
    calls = []

    def make_loss_fn(agent, cfg):
        def loss_fn(mb):
            calls.append(mb.shape)
            return agent.__class__.compute_loss(agent, mb)

        return loss_fn

    train = make_train(make_loss_fn=make_loss_fn)
    train(
        {
            "experiment": "ppo_cartpole",
            "total_steps": 512,
            "eval.at_end": "false",
            "logger.progress": "false",
            "run_dir": str(tmp_path),
        }
    )
    assert calls  # the loss function saw every minibatch


@pytest.mark.slow
def test_worked_example_reinforce_learns_cartpole(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("reinforce", ROOT / "examples" / "reinforce.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["reinforce"] = module
    spec.loader.exec_module(module)
    result = module.train(
        [*module.DEFAULTS, "total_steps=30720", "logger.progress=false", f"run_dir={tmp_path}"]
    )
    assert result.final_eval["mean_return"] >= 100  # random play: about 20

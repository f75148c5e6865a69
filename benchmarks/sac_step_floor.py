"""Where a SAC gradient step's time goes (RL Zoo's Pendulum settings: batch 256, actor and twin
critics 256-256 ReLU MLPs, automatic entropy tuning, Adam), in one process, 1 torch thread,
interleaved:

- ``sb3``: Stable-Baselines3's ``SAC.train`` (one gradient step per call, as its settings);
- ``reprl``: reprl's gradient step (``minibatches`` -> ``compute_loss`` -> ``update`` ->
  ``after_update``) for the ``sac_pendulum`` experiment;
- ``products, reprl's``: the step's 15 products of 256 x 256 x 256 alone (target critics
  and actor on the next observations; critics forward, weight and input gradients; actor
  forward, weight and input gradients; critics on the actor's actions forward and input
  gradients), a floor for any implementation of the same step;
- ``products, SB3's``: SB3's 18 such products (its actor-loss backward also computes the
  critics' weight gradients, which it discards);
- on two cores: SB3 with 2 torch threads, reprl with 2 torch threads, and reprl with
  ``agent.parallel_actor`` (the actor's part of the step on a second thread, 1 torch thread
  each): compare these with each other.

Prints ms per gradient step and each one's ratio to SB3 (1 thread). On a CPU where PyTorch's
products run near the core's peak for both libraries, the products alone bound how much
faster than SB3 any implementation of SAC can be.

    python benchmarks/sac_step_floor.py
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import torch

STEPS = 32
HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]  # reprl from this checkout; sb3_offpolicy

from dqn_step_floor import print_table, reprl_phase  # noqa: E402


def sb3_steps() -> Callable[[], int]:
    from sb3_offpolicy import TASKS  # the benchmark's SB3 SAC: RL Zoo's Pendulum settings

    task = TASKS["sac_pendulum"]
    model = task["algo"]("MlpPolicy", gym.make(task["env"]), seed=0, **task["kwargs"])
    model.learn(400)

    def run() -> int:
        for _ in range(STEPS):
            model.train(gradient_steps=1, batch_size=256)
        return STEPS

    return run


def products(count: int) -> Callable[[], int]:
    """``count`` products of 256 x 256 x 256 per step (forward, ``grad @ W`` and ``grad^T @ x``
    shapes in turn, as a step has them)."""
    x, w = torch.randn(256, 256), torch.randn(256, 256)
    shapes = [lambda: torch.mm(x, w.t()), lambda: torch.mm(x, w), lambda: torch.mm(x.t(), x)]

    def run() -> int:
        for _ in range(STEPS):
            for i in range(count):
                shapes[i % 3]()
        return STEPS

    return run


def threads(count: int, run: Callable[[], int]) -> Callable[[], int]:
    """``run`` with ``count`` torch threads (1 again afterwards)."""

    def with_threads() -> int:
        torch.set_num_threads(count)
        try:
            return run()
        finally:
            torch.set_num_threads(1)

    return with_threads


def main() -> None:
    torch.set_num_threads(1)
    sb3 = sb3_steps()
    reprl = reprl_phase("sac_pendulum", fills=400, repeats=STEPS)
    parallel = ("agent.parallel_actor=true",)
    print_table(
        {
            "sb3": sb3,
            "reprl": reprl,
            "products, reprl's (15)": products(15),
            "products, SB3's (18)": products(18),
            "sb3, 2 torch threads": threads(2, sb3),
            "reprl, 2 torch threads": threads(2, reprl),
            "reprl, parallel_actor": reprl_phase("sac_pendulum", 400, STEPS, parallel),
        }
    )


if __name__ == "__main__":
    main()

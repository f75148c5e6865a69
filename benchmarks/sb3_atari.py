"""SB3 side of the Atari throughput benchmark: PPO CnnPolicy (NatureCNN) on Breakout,
8 envs x 128 steps, 4 epochs, 4 minibatches. Prints one JSON line with training SPS."""

from __future__ import annotations

import json
import sys
import time

import ale_py
import gymnasium as gym
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_atari_env
from stable_baselines3.common.vec_env import VecFrameStack

gym.register_envs(ale_py)


class RolloutClock(BaseCallback):
    """Time and step count at the end of each rollout (to exclude the first, warm-up one)."""

    def __init__(self) -> None:
        super().__init__()
        self.marks: list[tuple[float, int]] = []

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        self.marks.append((time.perf_counter(), self.num_timesteps))


def main() -> None:
    steps, threads = int(sys.argv[1]), int(sys.argv[2])
    torch.set_num_threads(threads)
    env = VecFrameStack(make_atari_env("BreakoutNoFrameskip-v4", n_envs=8, seed=1), n_stack=4)
    model = PPO(
        "CnnPolicy",
        env,
        n_steps=128,
        n_epochs=4,
        batch_size=256,
        learning_rate=2.5e-4,
        clip_range=0.1,
        ent_coef=0.01,
        vf_coef=0.5,
        seed=1,
        verbose=0,
    )
    start = time.perf_counter()
    model.learn(total_timesteps=steps)
    elapsed = time.perf_counter() - start
    print(
        json.dumps(
            {
                "steps": model.num_timesteps,
                "train_time": elapsed,
                "sps": model.num_timesteps / elapsed,
            }
        )
    )


if __name__ == "__main__":
    main()

"""SB3 side of the CartPole benchmark: RL Zoo's tuned PPO, stop when the 10-episode
deterministic evaluation mean first reaches 475. Prints one JSON line."""

from __future__ import annotations

import json
import sys
import time

import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import EvalCallback, StopTrainingOnRewardThreshold
from stable_baselines3.common.env_util import make_vec_env


def linear(start: float):
    return lambda progress_remaining: progress_remaining * start


def main() -> None:
    seed, eval_every, threads = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    torch.set_num_threads(threads)
    env = make_vec_env("CartPole-v1", n_envs=8, seed=seed)
    eval_env = make_vec_env("CartPole-v1", n_envs=1, seed=seed + 1000)
    stop = StopTrainingOnRewardThreshold(reward_threshold=475, verbose=0)
    cb = EvalCallback(
        eval_env,
        callback_on_new_best=stop,
        n_eval_episodes=10,
        eval_freq=eval_every // 8,
        deterministic=True,
        verbose=0,
    )
    model = PPO(
        "MlpPolicy",
        env,
        n_steps=32,
        batch_size=256,
        gae_lambda=0.8,
        gamma=0.98,
        n_epochs=20,
        ent_coef=0.0,
        learning_rate=linear(0.001),
        clip_range=linear(0.2),
        seed=seed,
        verbose=0,
    )
    start = time.perf_counter()
    model.learn(total_timesteps=100_000, callback=cb)
    train_time = time.perf_counter() - start
    solved = cb.best_mean_reward >= 475
    print(
        json.dumps(
            {
                "steps": model.num_timesteps if solved else None,
                "train_time": train_time,
                "sps": model.num_timesteps / train_time,
                "final": float(cb.best_mean_reward),
            }
        )
    )


if __name__ == "__main__":
    main()

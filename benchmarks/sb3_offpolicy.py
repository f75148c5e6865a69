"""SB3 side of the off-policy benchmark (``bench_offpolicy.py``): DQN on CartPole-v1 or SAC on
Pendulum-v1 with RL Zoo's hyperparameters (rl-baselines3-zoo 2.9.2, ``hyperparams/dqn.yml``
and ``sac.yml``), the same as reprl's experiments ``dqn_cartpole`` and ``sac_pendulum``.

Evaluation as reprl's: 10 deterministic episodes on a vector env of 10 envs (one episode
each, as SB3's ``evaluate_policy`` splits them), every ``eval_every`` env steps *after* that
many steps' updates have run, stopping when the mean reaches the threshold. SB3 calls
callbacks during collection, before the update phase that follows it, so the evaluation of
step ``k * eval_every`` runs at the first callback after that phase (the first step of the
next collection) and is reported at step ``k * eval_every``; reprl evaluates after each
loop iteration's updates. Prints one JSON line: ``steps`` (None if not solved),
``train_time`` (``learn`` wall seconds), ``eval_time`` (seconds inside evaluations),
``sps`` (env steps per second of training, evaluation time excluded), ``final``.

    python benchmarks/sb3_offpolicy.py dqn_cartpole SEED EVAL_EVERY THREADS
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import torch
from stable_baselines3 import DQN, SAC
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

TASKS: dict[str, dict[str, Any]] = {
    "dqn_cartpole": {
        "env": "CartPole-v1",
        "threshold": 475.0,
        "total_steps": 50_000,
        "algo": DQN,
        "kwargs": {
            "learning_rate": 2.3e-3,
            "batch_size": 64,
            "buffer_size": 100_000,
            "learning_starts": 1000,
            "gamma": 0.99,
            "target_update_interval": 10,
            "train_freq": 256,
            "gradient_steps": 128,
            "exploration_fraction": 0.16,
            "exploration_final_eps": 0.04,
            "policy_kwargs": {"net_arch": [256, 256]},
        },
    },
    "sac_pendulum": {
        "env": "Pendulum-v1",
        "threshold": -200.0,
        "total_steps": 20_000,
        "algo": SAC,
        "kwargs": {"learning_rate": 1e-3},  # the rest: SB3's SAC defaults (= the Zoo's)
    },
}


class EvalAfterUpdates(BaseCallback):
    """Evaluates once the updates following each ``every``-th env step have run; stops at
    ``threshold``. Records the solved step and the time spent evaluating."""

    def __init__(self, eval_env: Any, every: int, threshold: float, episodes: int = 10) -> None:
        super().__init__()
        self.eval_env, self.every, self.threshold, self.episodes = (
            eval_env,
            every,
            threshold,
            episodes,
        )
        self.next_eval = every
        self.eval_time = 0.0
        self.solved_step: int | None = None
        self.best = -float("inf")

    def _on_step(self) -> bool:
        # num_timesteps counts this (new) step: the previous one ended the collection whose
        # update phase has just run.
        if self.num_timesteps - 1 < self.next_eval:
            return True
        step, self.next_eval = self.next_eval, self.next_eval + self.every
        start = time.perf_counter()
        mean, _ = evaluate_policy(
            self.model, self.eval_env, n_eval_episodes=self.episodes, deterministic=True
        )
        self.eval_time += time.perf_counter() - start
        self.best = max(self.best, float(mean))
        if mean >= self.threshold:
            self.solved_step = step
            return False
        return True


def main() -> None:
    task, seed, eval_every, threads = (
        sys.argv[1],
        int(sys.argv[2]),
        int(sys.argv[3]),
        int(sys.argv[4]),
    )
    spec = TASKS[task]
    torch.set_num_threads(threads)
    env = make_vec_env(spec["env"], n_envs=1, seed=seed)
    eval_env = make_vec_env(spec["env"], n_envs=10, seed=seed + 1000)
    cb = EvalAfterUpdates(eval_env, eval_every, spec["threshold"])
    model = spec["algo"]("MlpPolicy", env, seed=seed, verbose=0, **spec["kwargs"])
    start = time.perf_counter()
    model.learn(total_timesteps=spec["total_steps"], callback=cb)
    train_time = time.perf_counter() - start
    print(
        json.dumps(
            {
                "steps": cb.solved_step,
                "train_time": train_time,
                "eval_time": cb.eval_time,
                "sps": model.num_timesteps / (train_time - cb.eval_time),
                "final": cb.best,
            }
        )
    )


if __name__ == "__main__":
    main()

"""MCTS simulations per second at batch sizes 1, 16 and 64 (roots searched together, leaves
evaluated in one network call) on tic-tac-toe and Connect Four with a small MLP
(2 x 64 hidden units), CPU. Prints a markdown table.

    python benchmarks/bench_mcts.py [--simulations 50] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from reprl.envs.games import make_game
from reprl.search import MCTS, MCTSConfig


def small_net(env_id: str) -> torch.nn.Module:
    game = make_game(env_id)
    size = int(np.prod(game.observation_space.shape))
    return torch.nn.Sequential(
        torch.nn.Flatten(),
        torch.nn.Linear(size, 64),
        torch.nn.ReLU(),
        torch.nn.Linear(64, 64),
        torch.nn.ReLU(),
        torch.nn.Linear(64, game.action_space.n + 1),
    )


def bench(env_id: str, batch: int, sims: int, min_time: float = 1.0) -> tuple[float, float]:
    """(simulations per second, share of time in the network)."""
    net = small_net(env_id)
    net_time = [0.0]

    @torch.inference_mode()
    def evaluate(obs: np.ndarray, legal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        t0 = time.perf_counter()
        out = net(torch.from_numpy(obs))
        net_time[0] += time.perf_counter() - t0
        return out[:, :-1].numpy(), torch.tanh(out[:, -1]).numpy()

    game = make_game(env_id)
    game.reset(seed=0)
    roots = [game.get_state()] * batch
    mcts = MCTS(make_game(env_id), evaluate, MCTSConfig(num_simulations=sims))
    rngs = [np.random.default_rng(i) for i in range(batch)]
    mcts.search(roots, rngs)  # warm-up
    net_time[0], done, start = 0.0, 0, time.perf_counter()
    while time.perf_counter() - start < min_time:
        mcts.search(roots, rngs)
        done += batch * sims
    elapsed = time.perf_counter() - start
    return done / elapsed, net_time[0] / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--simulations", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"MCTS, {args.simulations} simulations per search, MLP 2x64, {args.threads} thread(s)\n")
    print("| game | batch size | simulations/s | network share |")
    print("|---|---:|---:|---:|")
    for env_id in ("TicTacToe-v0", "ConnectFour-v0"):
        for batch in (1, 16, 64):
            sps, share = bench(env_id, batch, args.simulations)
            print(f"| {env_id} | {batch} | {sps:,.0f} | {share:.0%} |")


if __name__ == "__main__":
    main()

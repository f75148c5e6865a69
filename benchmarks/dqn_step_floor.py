"""Where a DQN gradient step's time goes (RL Zoo's CartPole settings: batch 64, MLP 256-256,
Huber loss, grad-norm clip 10, Adam), in one process, 1 torch thread, interleaved:

- ``sb3``: Stable-Baselines3's ``DQN.train`` (128 gradient steps per call, as its update phase);
- ``reprl``: reprl's update phase (``minibatches`` -> ``compute_loss`` -> ``update`` ->
  ``after_update``) for the ``dqn_cartpole`` experiment;
- ``eager``: a minimal hand-written PyTorch step (target forward, forward, loss, backward,
  clip, torch's fused Adam kernel), no framework;
- ``eager, target precomputed``: the same without the target network's forward (what a phase
  could save where the target is frozen during it, as in these settings);
- ``no autograd``: forward and backward written out by hand with ``addmm``, no autograd graph;
- ``arithmetic``: the three layers' matrix products alone (forward, target forward, the
  backward's two products per layer), a floor for any implementation.

Prints ms per gradient step and each one's ratio to SB3. This is the evidence for the
off-policy speed target in the README (2x SB3 per env step): at this size the step is bound by
the network's arithmetic and PyTorch's per-op dispatch, not by framework code.

    python benchmarks/dqn_step_floor.py
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.adam import adam as adam_kernel

STEPS = 128
HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]  # reprl from this checkout; sb3_offpolicy


def phase_timer(run: Callable[[], int]) -> float:
    """ms per gradient step of one call of ``run`` (which returns its number of steps)."""
    start = time.perf_counter()
    n = run()
    return (time.perf_counter() - start) / n * 1e3


def sb3_phase() -> Callable[[], int]:
    from sb3_offpolicy import TASKS  # the benchmark's SB3 DQN: RL Zoo's CartPole settings

    task = TASKS["dqn_cartpole"]
    model = task["algo"]("MlpPolicy", gym.make(task["env"]), seed=0, **task["kwargs"])
    model.learn(3000)

    def run() -> int:
        model.train(gradient_steps=STEPS, batch_size=64)
        return STEPS

    return run


def reprl_phase(
    experiment: str = "dqn_cartpole", fills: int = 12, repeats: int = 1, overrides: tuple = ()
) -> Callable[[], int]:
    """reprl's update phases of ``experiment`` (with config ``overrides``) after ``fills``
    collections (DQN CartPole's 12 store 3072 steps, as SB3's side); one call runs
    ``repeats`` phases."""
    from reprl.config import load_config
    from reprl.envs import make_vector_env
    from reprl.train import make_agent

    cfg = load_config([f"experiment={experiment}", "logger.progress=false", *overrides])
    envs = make_vector_env(cfg.env, seed=0)
    agent = make_agent(cfg, envs.spec, torch.device("cpu"))
    source = agent.make_source(envs, 0, torch.device("cpu"))
    agent.on_iteration_start(0.5)
    batch = None
    for _ in range(fills):
        batch = source.next(agent)

    def run() -> int:
        n = 0
        for _ in range(repeats):
            for mb in agent.minibatches(source, agent.prepare(batch)):
                losses, info = agent.compute_loss(mb)
                info |= agent.update(losses)
                agent.after_update(mb, info)
                n += 1
        return n

    return run


class Minimal:
    """The same step written directly in PyTorch, three ways."""

    def __init__(self) -> None:
        torch.manual_seed(0)

        def mlp() -> nn.Sequential:
            return nn.Sequential(
                nn.Linear(4, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 2)
            )

        self.net, self.target = mlp(), mlp()
        self.params = list(self.net.parameters())
        self.moments = [[torch.zeros_like(p) for p in self.params] for _ in range(2)]
        self.counts = [torch.zeros(()) for _ in self.params]
        self.obs, self.next_obs = torch.randn(64, 4), torch.randn(64, 4)
        self.action = torch.randint(0, 2, (64, 1))
        self.reward, self.done = torch.randn(64), torch.zeros(64)

    def adam(self, grads: list[torch.Tensor]) -> None:
        adam_kernel(
            self.params,
            grads,
            self.moments[0],
            self.moments[1],
            [],
            self.counts,
            amsgrad=False,
            beta1=0.9,
            beta2=0.999,
            lr=1e-3,
            weight_decay=0.0,
            eps=1e-8,
            maximize=False,
            fused=True,
        )

    def target_values(self) -> torch.Tensor:
        with torch.no_grad():
            best = self.target(self.next_obs).max(1).values
        return self.reward + 0.99 * (1 - self.done) * best

    def eager(self, target: torch.Tensor | None = None) -> None:
        target = self.target_values() if target is None else target
        q = self.net(self.obs).gather(1, self.action).squeeze(1)
        loss = F.smooth_l1_loss(q, target)
        for p in self.params:
            p.grad = None
        loss.backward()
        nn.utils.clip_grad_norm_(self.params, 10.0, foreach=True)
        self.adam([p.grad for p in self.params])  # type: ignore[misc]

    @torch.no_grad()
    def no_autograd(self) -> None:
        w1, b1, w2, b2, w3, b3 = self.params
        target = self.target_values()
        h1 = torch.addmm(b1, self.obs, w1.t()).relu_()
        h2 = torch.addmm(b2, h1, w2.t()).relu_()
        q = torch.addmm(b3, h2, w3.t())
        diff = q.gather(1, self.action).squeeze(1) - target
        dq = torch.zeros_like(q).scatter_(1, self.action, diff.clamp(-1, 1)[:, None] / 64)
        dh2 = (dq @ w3).mul_(h2 > 0)
        dh1 = (dh2 @ w2).mul_(h1 > 0)
        grads = [dh1.t() @ self.obs, dh1.sum(0), dh2.t() @ h1, dh2.sum(0), dq.t() @ h2, dq.sum(0)]
        norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
        torch._foreach_mul_(grads, (10.0 / (norm + 1e-6)).clamp(max=1.0))
        self.adam(grads)

    @torch.no_grad()
    def arithmetic(self) -> None:
        x = torch.randn(64, 256)
        for _ in range(2):  # online and target forward: the 256x256 product dominates
            torch.mm(x, self.params[2].t())
        torch.mm(x.t(), x)  # weight gradient
        torch.mm(x, self.params[2])  # input gradient

    def phase(self, step: Callable[[], None]) -> Callable[[], int]:
        def run() -> int:
            for _ in range(STEPS):
                step()
            return STEPS

        return run


def main() -> None:
    torch.set_num_threads(1)
    minimal = Minimal()
    fixed_target = minimal.target_values()
    print_table(
        {
            "sb3": sb3_phase(),
            "reprl": reprl_phase(),
            "eager": minimal.phase(minimal.eager),
            "eager, target precomputed": minimal.phase(lambda: minimal.eager(fixed_target)),
            "no autograd": minimal.phase(minimal.no_autograd),
            "arithmetic": minimal.phase(minimal.arithmetic),
        }
    )


def print_table(variants: dict[str, Callable[[], int]]) -> None:
    """Time the variants interleaved (7 rounds, the first dropped) and print a markdown table
    of ms per gradient step (medians) with each one's ratio to ``sb3``."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(7):  # interleaved; the first round warms up and is dropped
        for name, run in variants.items():
            times[name].append(phase_timer(run))
    sb3 = statistics.median(times["sb3"][1:])
    print("| step | ms per gradient step | SB3 / this |")
    print("|---|---|---|")
    for name, values in times.items():
        ms = statistics.median(values[1:])
        print(f"| {name} | {ms:.3f} | {sb3 / ms:.2f}x |")


if __name__ == "__main__":
    main()

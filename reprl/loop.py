"""THE loop, shared by every agent and trainer.

    batch = source.next(algo)                 # collect: Batch, every field (N, T, ...)
    batch = algo.prepare(batch)               # no grad: returns, targets
    for mb in algo.minibatches(source, batch):
        losses, info = algo.compute_loss(mb)  # {"loss_<group>_<name>"}, {"stats/..."}
        info |= algo.update(losses)           # sum -> one backward -> clip -> step
        algo.after_update(mb, info)           # target syncs, priorities, early stop
    callbacks(metrics)                        # log, eval, checkpoint, early stop

Metrics are kept on the device and synced once per iteration; each is the mean over the
updates that reported it (an actor loss every other step: the mean of those steps). A
non-finite loss stops the run naming the loss and step (the last good checkpoint stays on
disk).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from reprl import dist
from reprl.errors import ReprlError


class NonFiniteLossError(ReprlError):
    """A loss became NaN or infinite."""


@dataclass
class RunState:
    """Counters of a run (saved in checkpoints)."""

    global_step: int = 0
    """Env steps so far, all envs and ranks."""
    iteration: int = 0
    """Completed loop iterations."""
    total_steps: int = 0
    """Steps to train for."""
    stop: bool = False
    """Set by callbacks (solved) or signals to end after this iteration."""
    stop_reason: str = ""
    """Why the run stopped early."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Callback state that must survive a resume (e.g. solved step)."""


class Callback:
    """Called after every iteration with its metrics; may log, evaluate, save or stop."""

    def on_iteration(self, state: RunState, metrics: dict[str, float]) -> None:
        """After each loop iteration."""

    def on_end(self, state: RunState) -> None:
        """When the loop ends normally (not after an error)."""


def _accumulate(acc: dict[str, list[torch.Tensor]], values: dict[str, torch.Tensor]) -> None:
    """Keep each update's values (reduced once per iteration: no tensor op per update)."""
    for k, v in values.items():
        acc.setdefault(k, []).append(v.detach())


def _means(acc: dict[str, list[torch.Tensor]]) -> dict[str, float]:
    """Each key's mean over the updates that reported it (one sync per key; a key reported
    once, as in SAC's one-update iterations, is read as it is: two ops less per key)."""
    return {
        k: vs[0].item() if len(vs) == 1 else torch.stack(vs).float().mean().item()
        for k, vs in acc.items()
    }


def run(algo: Any, source: Any, state: RunState, callbacks: list[Callback]) -> RunState:
    """Run iterations until ``state.total_steps`` env steps or a callback stops the run."""
    world = dist.world_size()
    while state.global_step < state.total_steps and not state.stop:
        t_start = time.perf_counter()
        algo.on_iteration_start(state.global_step / state.total_steps)

        # collect
        batch = source.next(algo)
        n, t = batch.shape
        state.global_step += n * t * world
        t_collect = time.perf_counter()

        # prepare (targets, advantages)
        batch = algo.prepare(batch)
        batch.require(*algo.requires)

        # update
        acc: dict[str, list[torch.Tensor]] = {}
        updates = 0
        for mb in algo.minibatches(source, batch):
            losses, info = algo.compute_loss(mb)
            info |= algo.update(losses)
            algo.after_update(mb, info)
            _accumulate(acc, {f"losses/{k[5:]}": v for k, v in losses.items()})
            _accumulate(acc, info)
            updates += 1
            if algo.stop_updates:
                break
        state.iteration += 1
        t_end = time.perf_counter()

        # metrics: one sync per iteration
        metrics = _means(acc)
        for k, v in metrics.items():
            if k.startswith("losses/") and not math.isfinite(v):
                raise NonFiniteLossError(
                    f"loss_{k[7:]} became {v} at step {state.global_step}; "
                    "stopping (the last good checkpoint is kept)"
                )
        metrics |= source.pop_metrics()
        learn_time = t_end - t_collect
        metrics |= {
            "perf/learn_time": learn_time,
            "perf/iteration_time": t_end - t_start,
            "perf/updates": float(updates),
            "perf/sps": n * t * world / max(t_end - t_start, 1e-9),
            "charts/learning_rate": algo.optimizer.param_groups[0]["lr"],
        }
        metrics |= algo.iteration_metrics()
        for cb in callbacks:
            cb.on_iteration(state, metrics)
        if world > 1:  # rank 0 may have decided to stop (solved); every rank must agree
            state.stop = dist.any_rank(state.stop)
    for cb in callbacks:
        cb.on_end(state)
    return state

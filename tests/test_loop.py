"""The one loop's metric bookkeeping: per-iteration means and the non-finite loss stop."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from reprl.loop import Callback, NonFiniteLossError, RunState, run


class _Batch:
    shape = (1, 4)

    def require(self, *keys: str) -> None:
        """Nothing to check."""


class _Source:
    def next(self, algo: Any) -> _Batch:
        return _Batch()

    def pop_metrics(self) -> dict[str, float]:
        return {}


class _Algo:
    """Four updates per iteration; ``stats/delayed`` only on every other one (as TD3's actor
    statistics), the loss ``values[i]`` on update ``i``."""

    requires: tuple[str, ...] = ()
    stop_updates = False

    def __init__(self, values: list[float]) -> None:
        self.values = values
        self.optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)

    def on_iteration_start(self, progress: float) -> None:
        self.i = 0

    def prepare(self, batch: _Batch) -> _Batch:
        return batch

    def minibatches(self, source: Any, batch: _Batch) -> range:
        return range(len(self.values))

    def compute_loss(self, mb: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        info = {"stats/every": torch.tensor(float(mb))}
        if mb % 2 == 1:
            info["stats/delayed"] = torch.tensor(10.0 * mb)
        return {"loss_rl_x": torch.tensor(self.values[mb])}, info

    def update(self, losses: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {}

    def after_update(self, mb: int, info: dict[str, torch.Tensor]) -> None:
        """Nothing after an update."""

    def iteration_metrics(self) -> dict[str, float]:
        return {}


class _Keep(Callback):
    def __init__(self) -> None:
        self.metrics: list[dict[str, float]] = []

    def on_iteration(self, state: RunState, metrics: dict[str, float]) -> None:
        self.metrics.append(metrics)


def test_metrics_are_means_over_the_updates_that_report_them() -> None:
    keep = _Keep()
    run(_Algo([1.0, 2.0, 3.0, 6.0]), _Source(), RunState(total_steps=4), [keep])
    (metrics,) = keep.metrics
    assert metrics["losses/rl_x"] == pytest.approx(3.0)
    assert metrics["stats/every"] == pytest.approx(1.5)  # updates 0, 1, 2, 3
    assert metrics["stats/delayed"] == pytest.approx(20.0)  # updates 1 and 3 only
    assert metrics["perf/updates"] == 4.0


def test_non_finite_loss_stops_the_run() -> None:
    with pytest.raises(NonFiniteLossError, match="loss_rl_x became nan"):
        run(_Algo([1.0, math.nan, 1.0, 1.0]), _Source(), RunState(total_steps=4), [])

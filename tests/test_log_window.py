"""Training metrics are written once per ``logger.log_every_steps`` env steps, as means over
the iterations since the previous record (LogCallback); 0 writes every iteration."""

from __future__ import annotations

from typing import Any

import pytest

from reprl.config import load_config
from reprl.errors import ConfigError
from reprl.loop import RunState
from reprl.runs.callbacks import LogCallback, Progress


class Recorder:
    """A Logger stand-in that keeps the records."""

    def __init__(self) -> None:
        self.records: list[tuple[int, dict[str, float]]] = []

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.records.append((step, dict(metrics)))


def drive(every: int, steps_per_iteration: int, iterations: int) -> list[tuple[int, Any]]:
    """Feed ``iterations`` iterations' metrics (loss = the iteration index, a return every
    other iteration, 0.5 s each) through a LogCallback; the records it wrote."""
    rec = Recorder()
    cb = LogCallback(rec, Progress(0, 0, enabled=False), every)  # type: ignore[arg-type]
    state = RunState()
    for i in range(iterations):
        state.global_step += steps_per_iteration
        metrics = {"losses/x": float(i), "perf/iteration_time": 0.5, "perf/sps": 1.0}
        if i % 2 == 1:
            metrics["charts/episodic_return"] = 10.0 * i
        cb.on_iteration(state, metrics)
    cb.on_end(state)
    return rec.records


def test_every_iteration_when_zero() -> None:
    records = drive(0, 10, 5)
    assert [s for s, _ in records] == [10, 20, 30, 40, 50]
    assert [m["losses/x"] for _, m in records] == [0, 1, 2, 3, 4]


def test_window_means_and_rate() -> None:
    # 10-step iterations, a record when the step crosses a multiple of 25 and at the end
    records = drive(25, 10, 8)
    assert [s for s, _ in records] == [30, 50, 80]
    (_, first), (_, second), (_, last) = records
    assert first["losses/x"] == pytest.approx((0 + 1 + 2) / 3)
    assert first["charts/episodic_return"] == pytest.approx(10.0)  # only iteration 1 had one
    assert second["losses/x"] == pytest.approx((3 + 4) / 2)
    assert second["charts/episodic_return"] == pytest.approx(30.0)
    assert last["losses/x"] == pytest.approx((5 + 6 + 7) / 3)
    assert last["charts/episodic_return"] == pytest.approx((50.0 + 70.0) / 2)
    # the window's rate: its steps over its summed iteration time
    assert first["perf/sps"] == pytest.approx(30 / 1.5)
    assert second["perf/sps"] == pytest.approx(20 / 1.0)


def test_nothing_left_at_the_end_writes_nothing_more() -> None:
    records = drive(20, 10, 4)  # records at 20 and 40; the end has an empty window
    assert [s for s, _ in records] == [20, 40]


def test_negative_cadence_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="log_every_steps"):
        load_config(["experiment=ppo_cartpole", "logger.log_every_steps=-1"])

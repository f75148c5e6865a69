"""Callbacks of the loop: logging and progress, evaluation and "solved", checkpoints."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reprl.loop import Callback, RunState
from reprl.runs import checkpoint as ckpt
from reprl.runs.logger import Logger

if TYPE_CHECKING:
    from reprl.tools.video import TrainingVideo


class Progress:
    """A live progress bar: steps, SPS, latest return, ETA (rich)."""

    def __init__(self, total: int, start: int, enabled: bool) -> None:
        self.enabled = enabled
        self.last_return = float("nan")
        if not enabled:
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as RichProgress

        self._bar = RichProgress(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[sps]:>6.0f} SPS"),
            TextColumn("return {task.fields[ret]:>8.2f}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            transient=False,
        )
        self._task = self._bar.add_task(
            "train", total=total, completed=start, sps=0.0, ret=float("nan")
        )
        self._bar.start()

    def update(self, step: int, metrics: dict[str, float]) -> None:
        """Advance to ``step`` with this iteration's SPS and latest mean return."""
        if "charts/episodic_return" in metrics:
            self.last_return = metrics["charts/episodic_return"]
        if self.enabled:
            self._bar.update(
                self._task, completed=step, sps=metrics.get("perf/sps", 0.0), ret=self.last_return
            )

    def close(self) -> None:
        """Stop rendering."""
        if self.enabled:
            self._bar.stop()


class LogCallback(Callback):
    """Drives the progress bar every iteration and writes the training metrics once per
    ``every_steps`` env steps (when ``global_step`` crosses a multiple of it, and at the end).

    A record holds, per metric, its mean over the iterations since the previous record that
    reported it, and ``perf/sps`` over the whole window (steps / summed iteration time);
    ``every_steps`` 0 writes every iteration's metrics as they are. Short iterations (SAC's one
    env step) then cost no record each: a JSON line and a TensorBoard scalar per metric per
    step took ~20% of SAC Pendulum's training time. The window's sums live in
    ``state.extra`` (saved in checkpoints), so a resumed run writes the uninterrupted run's
    records.
    """

    def __init__(self, logger: Logger | None, progress: Progress, every_steps: int) -> None:
        self.logger, self.progress, self.every_steps = logger, progress, max(every_steps, 0)

    def on_iteration(self, state: RunState, metrics: dict[str, float]) -> None:
        self.progress.update(state.global_step, metrics)
        if self.logger is None:
            return
        if self.every_steps == 0:
            self.logger.log(metrics, state.global_step)
            return
        window: dict[str, list[float]] = state.extra.setdefault("log_window", {})
        for key, value in metrics.items():
            sums = window.get(key)
            if sums is None:
                window[key] = [value, 1.0]
            else:
                sums[0] += value
                sums[1] += 1.0
        last = state.extra.get("log_step", 0)
        if state.global_step // self.every_steps > last // self.every_steps:
            self._write(state)

    def _write(self, state: RunState) -> None:
        """Write the window's means (if any iteration is in it) and start a new window."""
        window = state.extra.pop("log_window", None)
        if window and self.logger is not None:
            means = {key: total / count for key, (total, count) in window.items()}
            busy = window.get("perf/iteration_time", [0.0])[0]
            if "perf/sps" in means and busy > 0:
                means["perf/sps"] = (state.global_step - state.extra.get("log_step", 0)) / busy
            self.logger.log(means, state.global_step)
        state.extra["log_step"] = state.global_step

    def on_end(self, state: RunState) -> None:
        if self.every_steps > 0:
            self._write(state)


class EvalCallback(Callback):
    """Evaluates every ``every_steps``; logs ``eval/*`` and ``eval/solved`` at the threshold.

    With ``video``, ``evaluate`` is also called as ``evaluate(step, recorder)`` on the
    evaluations that ``video`` records (``eval.video_every``).
    """

    def __init__(
        self,
        evaluate: Callable[..., dict[str, Any]],
        every_steps: int,
        threshold: float | None,
        stop_on_solved: bool,
        logger: Logger | None,
        at_end: bool = True,
        video: TrainingVideo | None = None,
    ) -> None:
        self.evaluate, self.every_steps, self.threshold = evaluate, every_steps, threshold
        self.stop_on_solved, self.logger, self.at_end = stop_on_solved, logger, at_end
        self.video = video
        self.last: dict[str, Any] | None = None
        self._last_eval_step = -1

    def _run(self, state: RunState) -> None:
        start = time.perf_counter()
        video, recorder = self.video, None
        if video is not None:
            state.extra["eval_runs"] = state.extra.get("eval_runs", 0) + 1
            recorder = video.start(state.global_step, state.extra["eval_runs"])
        if video is None or recorder is None:
            result = self.evaluate(state.global_step)
        else:
            result = self.evaluate(state.global_step, recorder)
            video.finish(recorder, state.global_step)
        self.last, self._last_eval_step = result, state.global_step
        metrics = {
            "eval/mean_return": result["mean_return"],
            "eval/std_return": result["std_return"],
            "eval/mean_length": result["mean_length"],
        }
        if self.threshold is not None and result["mean_return"] >= self.threshold:
            if "solved_step" not in state.extra:
                state.extra["solved_step"] = state.global_step
            metrics["eval/solved"] = 1.0
            metrics["eval/solved_step"] = float(state.extra["solved_step"])
            if self.stop_on_solved:
                state.stop, state.stop_reason = True, "solved"
        elif self.threshold is not None:
            metrics["eval/solved"] = 0.0
        metrics["perf/eval_time"] = time.perf_counter() - start
        if self.logger is not None:
            self.logger.log(metrics, state.global_step)

    def on_iteration(self, state: RunState, metrics: dict[str, float]) -> None:
        if self.every_steps <= 0:
            return
        done = state.extra.get("eval_count", 0)
        if state.global_step >= (done + 1) * self.every_steps:
            state.extra["eval_count"] = state.global_step // self.every_steps
            self._run(state)

    def on_end(self, state: RunState) -> None:
        if (
            self.at_end
            and self._last_eval_step != state.global_step
            and state.stop_reason != "interrupted"
        ):
            self._run(state)


class CheckpointCallback(Callback):
    """Saves ``step_<n>.pt`` every ``every_steps`` (rotated), and ``latest.pt`` at the end."""

    def __init__(
        self, ckpt_dir: Path, every_steps: int, keep_last: int, make_state: Callable[[], dict]
    ) -> None:
        self.ckpt_dir, self.every_steps, self.keep_last = ckpt_dir, every_steps, keep_last
        self.make_state = make_state
        self.last_path: Path | None = None

    def save(self, state: RunState, final: bool = False) -> Path:
        """Write a checkpoint now; ``latest.pt`` always points at the newest one."""
        payload = self.make_state()
        path = ckpt.save(self.ckpt_dir / f"step_{state.global_step}.pt", payload)
        latest = self.ckpt_dir / "latest.pt"
        tmp = self.ckpt_dir / ".latest.pt.link"
        tmp.unlink(missing_ok=True)
        try:
            os.link(path, tmp)  # no second write: a hard link, renamed atomically
            os.replace(tmp, latest)
        except OSError:
            ckpt.save(latest, payload)
        if not final:
            ckpt.rotate(self.ckpt_dir, self.keep_last)
        self.last_path = path
        return path

    def on_iteration(self, state: RunState, metrics: dict[str, float]) -> None:
        if self.every_steps <= 0:
            return
        done = state.extra.get("ckpt_count", 0)
        if state.global_step >= (done + 1) * self.every_steps:
            state.extra["ckpt_count"] = state.global_step // self.every_steps
            self.save(state)

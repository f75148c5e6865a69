"""``reprl sweep``: a hyperparameter search with Optuna, one ``reprl train`` process per trial.

1. **Validate once.** The spec (:mod:`reprl.tools.sweep.spec`) and the command's overrides are
   checked before anything starts: the base config and configs with every parameter at its
   bounds and at each of its choices are loaded, so a misspelt key fails in one line.
2. **Study.** An Optuna study named after the sweep folder, in ``sqlite:///<out>/optuna.db``
   or ``--storage URL`` (any database; several machines running the same command with one
   URL share the sweep). The spec and the base overrides are saved with the study: rerunning
   with other ones fails in one line instead of mixing results.
3. **Trials.** Up to ``--jobs`` at a time; each asks Optuna for parameters and runs
   ``python -m reprl train <overrides> <params> run_dir=<out>/trial_<n>``. Every value of the
   metric the run logs is reported to Optuna as it appears; a pruned run is stopped cleanly
   (SIGINT: it saves a checkpoint and exits). A run's last value of the metric is the trial's
   value; a crash fails the trial (its log's last line is kept) and the sweep goes on, unless
   :data:`MAX_CONSECUTIVE_FAILURES` trials fail in a row.
4. **Resume.** The sweep runs until the study holds ``--trials`` finished (complete or
   pruned) trials: rerunning the same command continues it. Trials left running by a sweep
   that died (its process gone, or no heartbeat for
   :data:`~reprl.tools.sweep.study.STALE_AFTER_S` seconds) are marked failed; they, and those
   stopped by Ctrl-C, are retried with the same parameters (from scratch, in a new run
   folder). A grid sweep also retries its crashed points.
5. **Results.** ``trials.csv``, ``best.yaml`` (the best trial's ``reprl train`` overrides)
   and a table of the best trials.
"""

from __future__ import annotations

import dataclasses
import math
import os
import socket
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from reprl.errors import ConfigError, ReprlError
from reprl.runs.processes import StopRequests, last_line
from reprl.suite.runner import INTERRUPTED, available_cores, exclusive
from reprl.tools.sweep import report
from reprl.tools.sweep.spec import SweepSpec, list_specs, load_spec, param_overrides
from reprl.tools.sweep.study import (
    build_pruner,
    build_sampler,
    distributions,
    open_study,
    recover,
    require_optuna,
)
from reprl.tools.sweep.trial import TrialProcess, set_aside, start_trial

RESERVED_KEYS = ("run_dir", "resume")
"""Keys the sweep sets for every trial (a command or spec may not set them)."""
TRIAL_DEFAULTS = ("logger.progress=false",)
"""Overrides every trial gets after the command's own (logs are files, not terminals)."""
MAX_CONSECUTIVE_FAILURES = 3
"""The sweep stops starting trials after this many failed trials in a row."""
HEARTBEAT_S = 30.0
"""Each running trial's ``heartbeat`` user attribute is refreshed this often."""


@dataclasses.dataclass
class SweepRequest:
    """A ``reprl sweep`` command line."""

    overrides: list[str]
    """``sweep=SPEC`` plus the overrides of ``reprl train`` every trial gets."""
    trials: int | None = None
    """Finished trials wanted (default: the spec's ``trials``, the grid's size, or 20)."""
    jobs: int = 1
    """Trials run at a time."""
    storage: str | None = None
    """Optuna storage URL (default ``sqlite:///<out>/optuna.db``)."""
    out: Path | None = None
    """Sweep folder (default ``runs/sweep-<experiment name>-<spec name>``)."""


@dataclasses.dataclass
class SweepPlan:
    """A validated request: what :func:`run_sweep` runs."""

    spec: SweepSpec
    """The search space and settings."""
    base: list[str]
    """The command's overrides without ``sweep=`` (every trial's, and ``best.yaml``'s)."""
    out: Path
    """The sweep folder."""
    trials: int
    """Finished trials wanted in the study."""
    jobs: int
    """Trials run at a time by this process."""
    storage: str
    """Optuna storage URL."""
    study_name: str
    """The study's name: the sweep folder's name."""


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def prepare(request: SweepRequest) -> SweepPlan:
    """Validate a request once (spec, overrides, configs) -> a :class:`SweepPlan`."""
    specs = [o.split("=", 1)[1] for o in request.overrides if _key(o) == "sweep"]
    if not specs or not specs[-1]:
        raise ConfigError(
            f"sweep=SPEC is required: a YAML file or a shipped spec ({', '.join(list_specs())})"
        )
    spec = load_spec(specs[-1])
    base = [o for o in request.overrides if _key(o) != "sweep"]
    for text in base:
        if _key(text) in RESERVED_KEYS:
            raise ConfigError(f"{_key(text)}: set by the sweep for each trial")
        if _key(text) in spec.params:
            raise ConfigError(f"{_key(text)}: searched by the sweep spec, also set on the command")
    for key in spec.params:
        if key in RESERVED_KEYS:
            raise ConfigError(f"params.{key}: set by the sweep for each trial")
    if request.jobs < 1:
        raise ConfigError(f"--jobs: must be >= 1, got {request.jobs}")
    trials = spec.default_trials() if request.trials is None else request.trials
    if trials < 1:
        raise ConfigError(f"--trials: must be >= 1, got {trials}")
    if spec.sampler == "grid" and trials > spec.grid_size:
        raise ConfigError(f"--trials {trials}: the grid has {spec.grid_size} points")
    require_optuna()
    from reprl.config import load_config  # after the spec: its mistakes need no torch

    cfg = load_config(base)
    for overrides in _probe_overrides(spec):  # every parameter at its bounds and choices
        load_config([*base, *overrides])
    if spec.metric.startswith("eval/") and cfg.eval.every_steps <= 0 and not cfg.eval.at_end:
        raise ConfigError(
            f"metric {spec.metric}: the runs never evaluate (eval.every_steps=0, eval.at_end=false)"
        )
    out = request.out or Path("runs") / f"sweep-{cfg.name}-{spec.name}"
    storage = request.storage or f"sqlite:///{(out / 'optuna.db').resolve()}"
    return SweepPlan(spec, base, out, trials, request.jobs, storage, out.resolve().name)


def _probe_overrides(spec: SweepSpec) -> list[list[str]]:
    """Parameter settings that together touch every bound and every choice."""
    n = max([2, *(len(p.choices) for p in spec.params.values())])
    probes = []
    for i in range(n):
        values = {}
        for key, p in spec.params.items():
            values[key] = p.choices[i % len(p.choices)] if p.choices else (p.low, p.high)[i % 2]
        probes.append(param_overrides(values))
    return probes


# ----------------------------------------------------------------------------- running


class _Scheduler:
    """Runs trials until the study holds the wanted number of finished ones."""

    def __init__(self, study: Any, plan: SweepPlan, echo: Callable[[str], None]) -> None:
        self.study, self.plan, self.echo = study, plan, echo
        self.distributions = distributions(plan.spec)
        self.running: dict[int, tuple[Any, TrialProcess]] = {}
        self.failures_in_a_row = 0
        self.interrupted = False
        self.host, self.pid = socket.gethostname(), os.getpid()
        threads = max(1, available_cores() // plan.jobs)
        self.env = dict(os.environ)
        self.env.update(
            OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1"
        )

    def counts(self) -> tuple[int, int]:
        """(finished, running) trials in the study, from every machine."""
        from optuna.trial import TrialState

        states = [t.state for t in self.study.get_trials(deepcopy=False)]
        finished = sum(s in (TrialState.COMPLETE, TrialState.PRUNED) for s in states)
        return finished, states.count(TrialState.RUNNING)

    def can_start(self) -> bool:
        if self.interrupted or len(self.running) >= self.plan.jobs:
            return False
        if self.failures_in_a_row >= MAX_CONSECUTIVE_FAILURES:
            return False
        finished, running = self.counts()
        if finished + running >= self.plan.trials:
            return False
        sampler = self.study.sampler
        if self.plan.spec.sampler == "grid" and sampler.is_exhausted(self.study):
            from optuna.trial import TrialState

            return bool(self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
        return True

    def start(self) -> None:
        trial = self.study.ask(self.distributions)
        run_dir = self.plan.out / f"trial_{trial.number}"
        moved = set_aside(run_dir)
        if moved is not None:
            self.echo(f"  {run_dir} existed (an older study?): moved to {moved}")
        overrides = param_overrides(trial.params)
        for key, value in (
            ("run_dir", str(run_dir)),
            ("host", self.host),
            ("pid", self.pid),
            ("heartbeat", time.time()),
        ):
            trial.set_user_attr(key, value)
        quoted = "'" + str(run_dir).replace("\\", "\\\\").replace("'", "\\'") + "'"
        argv = [sys.executable, "-m", "reprl", "train", *self.plan.base, *overrides]
        argv += [*TRIAL_DEFAULTS, f"run_dir={quoted}"]
        try:
            proc = start_trial(trial.number, run_dir, argv, self.plan.spec.metric, self.env)
        except OSError as exc:
            trial.set_user_attr("error", f"cannot start: {exc}")
            self.study.tell(trial, state=_state("FAIL"))
            raise ReprlError(f"cannot start a trial: {exc}") from None
        self.running[trial.number] = (trial, proc)
        retry = trial.user_attrs.get("retry_of")
        again = f" (retrying trial {retry})" if retry is not None else ""
        self.echo(f"{self._progress()} trial {trial.number}{again}: {' '.join(overrides)}")

    def _progress(self) -> str:
        finished, _ = self.counts()
        return f"[{finished}/{self.plan.trials} finished, {len(self.running)} running]"

    def watch(self, trial: Any, proc: TrialProcess) -> None:
        """Report the run's new metric values; prune it when Optuna says so."""
        new = proc.metrics.read()
        proc.values.extend(new)
        if proc.pruned:
            return
        for step, value in new:
            if math.isfinite(value):
                trial.report(value, step)
        if new and proc.proc.poll() is None and not self.interrupted and trial.should_prune():
            proc.pruned = True
            self.study.tell(trial, state=_state("PRUNED"))
            proc.request_stop()
            step, value = new[-1]
            self.echo(
                f"{self._progress()} trial {trial.number}: pruned at step {step} "
                f"({self.plan.spec.metric} = {value:.4g}); stopping its run"
            )

    def finish(self, trial: Any, proc: TrialProcess) -> None:
        """Tell Optuna how a trial whose process has exited ended."""
        proc.close()
        del self.running[trial.number]
        elapsed = f"{proc.elapsed_s:.1f}s"
        if proc.pruned:
            return
        rc, value, metric = proc.proc.returncode, proc.final_value(), self.plan.spec.metric
        if proc.stopped_by_signal() or (self.interrupted and rc != 0):
            self.study.tell(trial, state=_state("FAIL"))  # no error: retried next time
            self.echo(f"{self._progress()} trial {trial.number}: stopped after {elapsed}")
        elif rc == 0 and value is not None:
            self.study.tell(trial, value)
            self.failures_in_a_row = 0
            self.echo(
                f"{self._progress()} trial {trial.number}: {metric} = {value:.4g} in {elapsed}"
            )
        else:
            reason = (
                last_line(proc.log_path)
                if rc != 0
                else f"no finite value of {metric} in {proc.metrics.path}"
            )
            trial.set_user_attr("error", reason[:500])
            self.study.tell(trial, state=_state("FAIL"))
            self.failures_in_a_row += 1
            self.echo(
                f"{self._progress()} trial {trial.number}: FAILED (exit {rc}): {reason} "
                f"(log: {proc.log_path})"
            )

    def run(self, poll_s: float = 0.5) -> None:
        """Start, watch and finish trials until done (or stopped by Ctrl-C)."""
        last_beat = time.monotonic()
        with StopRequests() as stop:
            try:
                while True:
                    # stop requests: every run saves a checkpoint and exits
                    if stop.count and not self.interrupted:
                        self.interrupted = True
                        self.echo(
                            f"stopping: {len(self.running)} running trials save a checkpoint "
                            "and exit (Ctrl-C again to stop them at once); run the same "
                            "command to continue"
                        )
                    # watch: report new values, prune, record the trials that ended
                    for trial, proc in list(self.running.values()):
                        if self.interrupted:
                            proc.request_stop(force=stop.count >= 2)
                        proc.escalate()
                        exited = proc.proc.poll() is not None
                        self.watch(trial, proc)
                        if exited:
                            self.finish(trial, proc)
                    # start: fill the free slots while the study needs trials
                    while self.can_start():
                        self.start()
                    if not self.running:
                        break
                    if time.monotonic() - last_beat > HEARTBEAT_S:
                        last_beat = time.monotonic()
                        for trial, proc in self.running.values():
                            if not proc.pruned:  # a pruned trial is finished already
                                trial.set_user_attr("heartbeat", time.time())
                    time.sleep(poll_s)
            finally:  # only after an unexpected error: never leave runs behind as orphans
                for _, proc in self.running.values():
                    proc.request_stop(force=True)
                for _, proc in self.running.values():
                    proc.wait_or_kill()


def _state(name: str) -> Any:
    from optuna.trial import TrialState

    return TrialState[name]


# ----------------------------------------------------------------------------- the command


def run_sweep(request: SweepRequest, echo: Callable[[str], None] | None = None) -> int:
    """Run (or continue) a sweep and write its results; returns the exit code (0: the study
    holds the wanted finished trials; 1: fewer, after failures; 130: interrupted)."""
    echo = echo or (lambda line: print(line, flush=True))
    plan = prepare(request)
    spec = plan.spec
    with warnings.catch_warnings():
        # Optuna warns about its experimental features and grid re-evaluations in ways that
        # say nothing to a sweep user; the sweep reports what happens itself.
        warnings.simplefilter("ignore")
        sampler, pruner = build_sampler(spec), build_pruner(spec)  # bad options fail here
    with exclusive(plan.out, "reprl sweep"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = open_study(plan.storage, plan.study_name, spec, plan.base, sampler, pruner)
        (plan.out / "sweep.yaml").write_text(
            yaml.safe_dump(
                {
                    "study": plan.study_name,
                    "storage": plan.storage,
                    "overrides": plan.base,
                    **spec.to_dict(),
                },
                sort_keys=False,
            )
        )
        stale, retries = recover(study, spec.sampler == "grid")
        scheduler = _Scheduler(study, plan, echo)
        finished, _ = scheduler.counts()
        echo(
            f"sweep '{plan.study_name}': {spec.sampler} sampler, {spec.pruner} pruner, "
            f"{spec.direction} {spec.metric}; {finished}/{plan.trials} trials finished, "
            f"{plan.jobs} at a time; storage {plan.storage}"
        )
        if stale or retries:
            echo(f"{stale} trials left running marked failed; {retries} to retry")
        scheduler.run()
        code = _write_results(study, plan, echo)
    if scheduler.interrupted:
        echo(f"interrupted: run the same command to continue ({plan.out})")
        return INTERRUPTED
    if scheduler.failures_in_a_row >= MAX_CONSECUTIVE_FAILURES:
        echo(f"stopped after {MAX_CONSECUTIVE_FAILURES} failed trials in a row; see their logs")
        return 1
    return code


def _write_results(study: Any, plan: SweepPlan, echo: Callable[[str], None]) -> int:
    """trials.csv, best.yaml and the table; 0 when the wanted finished trials exist."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    report.write_trials_csv(plan.out / "trials.csv", trials, plan.spec)
    counts = {s: sum(t.state == s for t in trials) for s in TrialState}
    finished = counts[TrialState.COMPLETE] + counts[TrialState.PRUNED]
    echo(
        f"{finished} finished trials ({counts[TrialState.COMPLETE]} complete, "
        f"{counts[TrialState.PRUNED]} pruned), {counts[TrialState.FAIL]} failed, "
        f"{counts[TrialState.RUNNING]} running elsewhere; {plan.out / 'trials.csv'}"
    )
    if counts[TrialState.COMPLETE]:
        echo(report.format_table(trials, plan.spec))
        best = study.best_trial
        overrides = report.write_best_yaml(plan.out / "best.yaml", best, plan.base, plan.spec)
        echo(f"best: trial {best.number}, {plan.spec.metric} = {best.value:.4g}")
        echo(
            f"best.yaml: {plan.out / 'best.yaml'}; train it with: reprl train {' '.join(overrides)}"
        )
    return 0 if finished >= plan.trials else 1

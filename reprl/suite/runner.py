"""A generic job runner: many reprl runs as parallel subprocesses, resumable, fault tolerant.

A :class:`Job` is one command with its own folder. Its state on disk decides what happens:

- **done**: its result file exists (written last, atomically, by the job itself): skipped;
- **resume**: no result but a checkpoint (``checkpoints/latest.pt`` or ``step_<n>.pt``): run
  ``resume_argv`` (e.g. ``train resume=<run_dir>``), which continues from that checkpoint;
- **new**: neither: run ``argv``. Anything a previous attempt left without a checkpoint
  (config, metrics of a run that crashed before its first checkpoint) is moved aside into
  ``stale_attempt_<n>/`` so the new run starts in a clean folder and nothing is deleted.

Why subprocesses (``sys.executable -m ...``) rather than a multiprocessing pool: each run is a
whole program with its own process state (signal handlers, torch threads, CUDA context,
open envs), exactly as ``reprl train`` runs it; a crash, a segfault in an emulator or a
memory kill ends only that run (a pool's worker dying breaks the pool); each run's stdout
and stderr go straight to ``<run_dir>/run.log`` (appended, one header per attempt); and a
run can be stopped with a signal and resumed later from its own checkpoint. Process start
(~2 s of imports) is negligible next to a training run.

Parallelism: at most ``workers`` jobs at once (default: the cores this process may use),
each told to use ``max(1, cores // workers)`` threads through ``OMP_NUM_THREADS`` /
``MKL_NUM_THREADS``, which torch reads at start-up: N runs with torch's default thread count
each on N cores oversubscribe the machine (measured here: DER acting 1.7 ms per step with 1
thread, ~125 ms with torch's default on a busy 2-core machine).

Stopping: jobs run in their own session, so a terminal's Ctrl-C reaches only the runner,
which forwards one SIGINT to every running job (reprl's training loop then saves a
checkpoint and exits) and waits for them; a second Ctrl-C (or SIGTERM) forwards a second
SIGINT (the run stops at once, keeping its last checkpoint) and kills what is left after
:data:`KILL_AFTER_S` seconds. Jobs not yet started stay as they are; running the same jobs
again continues them.

Failures: a job that exits non-zero, or exits 0 without its result file, is reported with
its key, exit code, the last line of its log and the log's path; the other jobs go on.
Jobs may name others that must finish first (``after``: pretrain -> probe -> finetune); a
job whose prerequisite failed is reported as blocked.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO

from reprl.errors import ReprlError
from reprl.runs.processes import StopRequests, last_line

LOG_NAME = "run.log"
"""Each job's stdout and stderr, appended over attempts, in its folder."""
RESULT_NAME = "result.json"
"""Default result file: a job is done when it exists."""
INTERRUPTED = 130
"""Exit code of a job stopped by a signal after saving its checkpoint (128 + SIGINT)."""
KILL_AFTER_S = 15.0
"""After a second stop request, seconds before jobs still running are killed."""
STALE_PREFIX = "stale_attempt_"


@dataclass(frozen=True)
class Job:
    """One command run in its own folder."""

    key: str
    """Unique name, used in messages and by ``after`` (e.g. ``Pong/seed_1``)."""
    run_dir: Path
    """The job's folder: its outputs, its checkpoints, its log and its result file."""
    argv: tuple[str, ...]
    """Command that starts the job from scratch."""
    resume_argv: tuple[str, ...] | None = None
    """Command that continues from the folder's checkpoint (None: always start from scratch)."""
    result_name: str = RESULT_NAME
    """File in ``run_dir`` the job writes last; its existence means done."""
    after: tuple[str, ...] = ()
    """Keys of jobs that must be done before this one starts."""

    @property
    def result(self) -> Path:
        """The result file."""
        return self.run_dir / self.result_name

    @property
    def log(self) -> Path:
        """The log file (stdout and stderr of every attempt)."""
        return self.run_dir / LOG_NAME


@dataclass(frozen=True)
class Failure:
    """A job that did not produce its result."""

    key: str
    returncode: int
    reason: str
    """Last line of the log (or why the runner gave up on the job)."""
    log: Path


@dataclass
class RunReport:
    """What happened to each job of one :func:`run_jobs` call."""

    skipped: list[str] = field(default_factory=list)
    """Done before this call."""
    finished: list[str] = field(default_factory=list)
    """Done by this call."""
    failed: list[Failure] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    """Not started because a prerequisite failed (or the prerequisites form a cycle)."""
    stopped: list[str] = field(default_factory=list)
    """Running when a stop was requested (they saved a checkpoint when they could)."""
    not_started: list[str] = field(default_factory=list)
    """Still waiting when a stop was requested."""
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        """Every job is done."""
        return not (
            self.failed or self.blocked or self.stopped or self.not_started or self.interrupted
        )


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, which honours ``taskset`` and cgroup
    cpusets, unlike ``os.cpu_count()``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def has_checkpoint(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a reprl checkpoint to resume from."""
    ckpt_dir = run_dir / "checkpoints"
    return (ckpt_dir / "latest.pt").is_file() or any(ckpt_dir.glob("step_*.pt"))


def job_state(job: Job) -> str:
    """``done`` (result file exists), ``resume`` (a checkpoint, and a way to resume) or ``new``."""
    if job.result.is_file():
        return "done"
    if job.resume_argv is not None and has_checkpoint(job.run_dir):
        return "resume"
    return "new"


@contextlib.contextmanager
def exclusive(folder: Path, what: str = "suite") -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (one runner per output folder); the lock goes
    away with the process, also when it is killed."""
    import fcntl

    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            pid = f.read().strip() or "?"
            raise ReprlError(
                f"another {what} (pid {pid}) is running in {folder}: wait for it or stop it"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def set_aside(run_dir: Path, keep: Sequence[str] = (LOG_NAME,)) -> Path | None:
    """Move a previous attempt's files (all but ``keep`` and earlier stale attempts) into
    ``stale_attempt_<n>/``; returns that folder, or None when there was nothing to move."""
    if not run_dir.is_dir():
        return None
    leftovers = [
        p for p in run_dir.iterdir() if p.name not in keep and not p.name.startswith(STALE_PREFIX)
    ]
    if not leftovers:
        return None
    n = 1 + sum(1 for p in run_dir.iterdir() if p.name.startswith(STALE_PREFIX))
    target = run_dir / f"{STALE_PREFIX}{n}"
    target.mkdir()
    for p in leftovers:
        p.rename(target / p.name)
    return target


def _duration(seconds: float) -> str:
    """``1h02m03s`` / ``2m03s`` / ``3.4s``."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


@dataclass
class _Running:
    job: Job
    proc: subprocess.Popen[bytes]
    log: IO[bytes]
    start: float
    signals_sent: int = 0


def _check_jobs(jobs: Sequence[Job]) -> None:
    keys = [j.key for j in jobs]
    if len(set(keys)) != len(keys):
        raise ValueError("job keys must be unique")
    unknown = {d for j in jobs for d in j.after} - set(keys)
    if unknown:
        raise ValueError(f"jobs depend on unknown jobs: {sorted(unknown)}")


def run_jobs(
    jobs: Sequence[Job],
    workers: int | None = None,
    threads_per_job: int | None = None,
    echo: Callable[[str], None] = lambda line: print(line, flush=True),
    poll_s: float = 0.2,
) -> RunReport:
    """Run ``jobs`` (skipping done ones, resuming started ones) with at most ``workers`` at once.

    ``workers`` defaults to :func:`available_cores`; ``threads_per_job`` to
    ``max(1, cores // workers)``. Returns what happened to each job; never raises for a
    failing job. See the module docstring for the states, signals and logs.
    """
    _check_jobs(jobs)
    cores = available_cores()
    workers = max(1, workers or cores)
    threads = threads_per_job or max(1, cores // workers)
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")

    report = RunReport()
    status: dict[str, str] = {}
    pending: list[Job] = []
    for job in jobs:
        if job_state(job) == "done":
            status[job.key] = "done"
            report.skipped.append(job.key)
        else:
            pending.append(job)
    n_resume = sum(job_state(j) == "resume" for j in pending)
    echo(
        f"{len(jobs)} runs: {len(report.skipped)} done already, {n_resume} to resume, "
        f"{len(pending) - n_resume} to start; {min(workers, max(1, len(pending)))} at a time, "
        f"{threads} thread{'s' if threads > 1 else ''} each"
    )
    running: dict[str, _Running] = {}
    total = len(jobs)

    def progress() -> str:
        done = sum(1 for v in status.values() if v == "done")
        return f"[{done}/{total} done, {len(running)} running]"

    def start(job: Job) -> None:
        state = job_state(job)
        argv = job.resume_argv if state == "resume" and job.resume_argv else job.argv
        if state == "new":
            moved = set_aside(job.run_dir)
            if moved is not None:
                echo(f"  {job.key}: a previous attempt without checkpoint moved to {moved}")
        job.run_dir.mkdir(parents=True, exist_ok=True)
        log = open(job.log, "ab")  # noqa: SIM115 (closed when the job ends)
        stamp = datetime.now().isoformat(timespec="seconds")
        log.write(f"\n===== {stamp} {state}: {shlex.join(argv)}\n".encode())
        log.flush()
        try:
            proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        except OSError as exc:  # e.g. the program does not exist
            log.close()
            status[job.key] = "failed"
            report.failed.append(Failure(job.key, -1, f"cannot start: {exc}", job.log))
            echo(f"{progress()} {job.key}: FAILED to start: {exc}")
            return
        running[job.key] = _Running(job, proc, log, time.monotonic())
        how = "resuming from its checkpoint" if state == "resume" else "started"
        echo(f"{progress()} {job.key}: {how}")

    def finish(r: _Running, rc: int, stopping: bool) -> None:
        r.log.close()
        del running[r.job.key]
        elapsed = _duration(time.monotonic() - r.start)
        if rc == 0 and r.job.result.is_file():
            status[r.job.key] = "done"
            report.finished.append(r.job.key)
            echo(f"{progress()} {r.job.key}: done in {elapsed}")
        elif stopping and rc in (INTERRUPTED, -signal.SIGINT, -signal.SIGKILL):
            status[r.job.key] = "stopped"
            report.stopped.append(r.job.key)
            echo(f"{progress()} {r.job.key}: stopped after {elapsed}")
        else:
            status[r.job.key] = "failed"
            reason = (
                last_line(r.job.log) if rc != 0 else f"exited 0 without writing {r.job.result_name}"
            )
            report.failed.append(Failure(r.job.key, rc, reason, r.job.log))
            echo(f"{progress()} {r.job.key}: FAILED (exit {rc}): {reason} (log: {r.job.log})")

    with StopRequests() as stop:
        stopping_since: float | None = None
        forced_at: float | None = None
        try:
            while pending or running:
                if stop.count and stopping_since is None:
                    stopping_since = time.monotonic()
                    report.interrupted = True
                    report.not_started = [j.key for j in pending]
                    pending = []
                    echo(
                        f"stopping: {len(running)} running runs save a checkpoint and exit "
                        "(Ctrl-C again to stop them at once); run the same command to continue"
                    )
                if stopping_since is not None:
                    for r in running.values():
                        if r.signals_sent < min(stop.count, 2):
                            r.proc.send_signal(signal.SIGINT)
                            r.signals_sent += 1
                    if stop.count >= 2 and forced_at is None:
                        forced_at = time.monotonic()
                    if forced_at is not None and time.monotonic() - forced_at > KILL_AFTER_S:
                        for r in running.values():
                            r.proc.kill()
                started = False
                for job in list(pending):
                    if len(running) >= workers:
                        break
                    deps = [status.get(d) for d in job.after]
                    if any(d in ("failed", "blocked", "stopped") for d in deps):
                        pending.remove(job)
                        status[job.key] = "blocked"
                        report.blocked.append(job.key)
                        echo(f"{progress()} {job.key}: blocked (a prerequisite did not finish)")
                    elif all(d == "done" for d in deps):
                        pending.remove(job)
                        start(job)
                        started = True
                if pending and not running and not started:
                    # Free slots, yet nothing could start: the prerequisites form a cycle.
                    for job in pending:
                        status[job.key] = "blocked"
                        report.blocked.append(job.key)
                    pending = []
                for r in list(running.values()):
                    rc = r.proc.poll()
                    if rc is not None:
                        finish(r, rc, stopping_since is not None)
                if running:
                    time.sleep(poll_s)
        finally:  # only after an unexpected error: never leave runs behind as orphans
            for r in running.values():
                r.proc.send_signal(signal.SIGINT)
            for r in running.values():
                try:
                    r.proc.wait(KILL_AFTER_S)
                except subprocess.TimeoutExpired:
                    r.proc.kill()
    return report

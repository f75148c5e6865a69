"""One trial as a ``reprl train`` subprocess, watched through its run folder.

The sweep reads the run's ``metrics.jsonl`` while it is written (:class:`MetricsTail`: only
whole lines, from where the last read stopped), reports each new value of the metric to
Optuna, and stops the run when Optuna prunes it: SIGINT, on which reprl's loop saves a
checkpoint and exits (the same clean stop as Ctrl-C); a second SIGINT after
:data:`~reprl.suite.runner.KILL_AFTER_S` seconds stops it at once, and a run still alive
after as long again is killed.
"""

from __future__ import annotations

import json
import math
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import yaml

from reprl.suite.runner import INTERRUPTED, KILL_AFTER_S, LOG_NAME


class MetricsTail:
    """The values of one key in a ``metrics.jsonl`` that another process is appending to."""

    def __init__(self, path: Path, key: str) -> None:
        self.path, self.key = path, key
        self._offset = 0

    def read(self) -> list[tuple[int, float]]:
        """``(global_step, value)`` of the records written since the last call, in order.
        A line still being written is left for the next call; non-finite values (written as
        strings by the logger) are returned as floats (nan, inf)."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                chunk = f.read()
        except FileNotFoundError:
            return []
        end = chunk.rfind(b"\n") + 1
        self._offset += end
        values = []
        for line in chunk[:end].decode(errors="replace").splitlines():
            if not line.strip():
                continue
            record = json.loads(line)
            if self.key in record:
                values.append((int(record["global_step"]), float(record[self.key])))
        return values


@dataclass
class TrialProcess:
    """A running trial: its process, log and metric reader."""

    number: int
    """Optuna trial number."""
    run_dir: Path
    """The run folder (``<sweep>/trial_<number>``)."""
    proc: subprocess.Popen[bytes]
    log: IO[bytes]
    metrics: MetricsTail
    start: float = field(default_factory=time.monotonic)
    values: list[tuple[int, float]] = field(default_factory=list)
    """Every ``(global_step, value)`` of the metric read so far."""
    pruned: bool = False
    """Optuna pruned it; it is being stopped."""
    stop_requested_at: float | None = None
    signals_sent: int = 0

    @property
    def elapsed_s(self) -> float:
        """Seconds since the process started."""
        return time.monotonic() - self.start

    @property
    def log_path(self) -> Path:
        """The run's log (stdout and stderr)."""
        return self.run_dir / LOG_NAME

    def request_stop(self, force: bool = False) -> None:
        """Ask the run to save a checkpoint and exit (SIGINT, as Ctrl-C does); with ``force``
        a second SIGINT, on which it stops at once."""
        if self.stop_requested_at is None:
            self.stop_requested_at = time.monotonic()
        if self.signals_sent < (2 if force else 1):
            self._signal()

    def escalate(self) -> None:
        """Push a run that ignores its stop request: a second SIGINT (stop at once) after
        KILL_AFTER_S seconds, SIGKILL after twice that."""
        if self.stop_requested_at is None or self.proc.poll() is not None:
            return
        waited = time.monotonic() - self.stop_requested_at
        if waited > 2 * KILL_AFTER_S:
            self.proc.kill()
        elif waited > KILL_AFTER_S and self.signals_sent < 2:
            self._signal()

    def wait_or_kill(self) -> None:
        """Wait for a run asked to stop; kill it if it is still alive after KILL_AFTER_S."""
        try:
            self.proc.wait(KILL_AFTER_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def _signal(self) -> None:
        self.signals_sent += 1
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)

    def stopped_by_signal(self) -> bool:
        """Whether the run ended because it was interrupted (its summary says so, or a
        signal ended the process)."""
        rc = self.proc.returncode
        if rc is not None and (rc < 0 or rc == INTERRUPTED):
            return True
        return self.summary().get("stop_reason") == "interrupted"

    def summary(self) -> dict[str, Any]:
        """The run's ``summary.yaml`` (written when it ends), or {}."""
        path = self.run_dir / "summary.yaml"
        try:
            return yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError):
            return {}

    def final_value(self) -> float | None:
        """The metric's last finite value, or None."""
        if not self.values or not math.isfinite(self.values[-1][1]):
            return None
        return self.values[-1][1]

    def close(self) -> None:
        """Close the log once the process has exited."""
        self.log.close()


def start_trial(
    number: int, run_dir: Path, argv: list[str], metric: str, env: dict[str, str]
) -> TrialProcess:
    """Start ``argv`` (a ``reprl train`` command writing into ``run_dir``) in its own session
    (a Ctrl-C in the terminal reaches the sweep, which forwards it), logging stdout and
    stderr to ``run_dir/run.log``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    log = open(run_dir / LOG_NAME, "ab")  # noqa: SIM115 (closed when the trial ends)
    stamp = datetime.now().isoformat(timespec="seconds")
    log.write(f"\n===== {stamp} trial {number}: {shlex.join(argv)}\n".encode())
    log.flush()
    try:
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    except OSError:
        log.close()
        raise
    return TrialProcess(number, run_dir, proc, log, MetricsTail(run_dir / "metrics.jsonl", metric))


def set_aside(run_dir: Path) -> Path | None:
    """Move an existing folder out of the way (``trial_3`` -> ``trial_3.old1``): a trial
    number can come back when the study's storage was replaced."""
    if not run_dir.exists():
        return None
    n = 1
    while run_dir.with_name(f"{run_dir.name}.old{n}").exists():
        n += 1
    target = run_dir.with_name(f"{run_dir.name}.old{n}")
    run_dir.rename(target)
    return target

"""A sweep's results: ``trials.csv``, ``best.yaml`` and the table printed at the end."""

from __future__ import annotations

import csv
import math
import shlex
from pathlib import Path
from typing import Any

import yaml

from reprl.tools.sweep.spec import SweepSpec, param_overrides

TABLE_ROWS = 10
"""Trials shown in the printed table (the best ones)."""


def _value(trial: Any) -> float | None:
    return None if trial.value is None or not math.isfinite(trial.value) else float(trial.value)


def _duration_s(trial: Any) -> float | None:
    if trial.datetime_start is None or trial.datetime_complete is None:
        return None
    return round((trial.datetime_complete - trial.datetime_start).total_seconds(), 1)


def write_trials_csv(path: Path, trials: list[Any], spec: SweepSpec) -> None:
    """One row per trial: number, state, value (a pruned trial's is its last reported value),
    each parameter, duration and run folder."""
    keys = list(spec.params)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["number", "state", "value", *keys, "duration_s", "run_dir"])
        for t in trials:
            value = _value(t)
            writer.writerow(
                [
                    t.number,
                    t.state.name,
                    "" if value is None else value,
                    *(t.params.get(k, "") for k in keys),
                    _duration_s(t) or "",
                    t.user_attrs.get("run_dir", ""),
                ]
            )
    tmp.replace(path)


def best_overrides(best: Any, base: list[str]) -> list[str]:
    """The sweep's own overrides followed by the best trial's parameters: what
    ``reprl train`` needs to train the best configuration again."""
    return [*base, *param_overrides(best.params)]


def write_best_yaml(path: Path, best: Any, base: list[str], spec: SweepSpec) -> list[str]:
    """``best.yaml``: the best trial's number, value, parameters and its ``reprl train``
    overrides; returns those overrides."""
    overrides = best_overrides(best, base)
    data = {
        "trial": best.number,
        "value": float(best.value),
        "metric": spec.metric,
        "direction": spec.direction,
        "params": dict(best.params),
        "overrides": overrides,
    }
    header = (
        f"# Best trial of the sweep '{path.parent.name}' ({spec.metric}, {spec.direction}).\n"
        f"# Train it again with: reprl train {shlex.join(overrides)}\n"
    )
    tmp = path.with_suffix(".tmp")
    tmp.write_text(header + yaml.safe_dump(data, sort_keys=False))
    tmp.replace(path)
    return overrides


def format_table(trials: list[Any], spec: SweepSpec) -> str:
    """The best finished trials (at most :data:`TABLE_ROWS`), best first, as aligned text."""
    done = [t for t in trials if t.state.name == "COMPLETE" and _value(t) is not None]
    done.sort(key=lambda t: t.value, reverse=spec.direction == "maximize")
    keys = list(spec.params)
    header = ["trial", spec.metric, *keys]
    rows = [
        [str(t.number), f"{t.value:.4g}", *(_short(t.params.get(k)) for k in keys)]
        for t in done[:TABLE_ROWS]
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in [header, *rows]]
    if len(done) > TABLE_ROWS:
        lines.append(f"({len(done) - TABLE_ROWS} more in trials.csv)")
    return "\n".join(lines)


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)

"""Schedules as data (``{type: linear, start: 1e-3, end: 0}``), never lambdas.

A schedule is a typed config evaluated at a training fraction, so checkpoints store only
the step counter and loading never unpickles a closure (SB3 issues #171, #1122).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from reprl.errors import ConfigError

SCHEDULE_TYPES = ("constant", "linear", "cosine", "exponential")


@dataclass
class Schedule:
    """A value that changes with training progress. A plain number means constant."""

    type: str = "constant"
    """constant, linear, cosine or exponential (from start to end)."""
    start: float = 0.0
    """Value at the beginning of training."""
    end: float | None = None
    """Value at end_frac of training (None: same as start)."""
    end_frac: float = 1.0
    """Fraction of training at which the value reaches end, then stays there."""

    @classmethod
    def from_value(cls, value: Any, path: str) -> Schedule:
        """Accept a number (constant) or a mapping; fail with a message naming the key."""
        if isinstance(value, Schedule):
            return value
        if isinstance(value, bool):
            raise ConfigError(f"{path}: expected a number or a schedule, got {value!r}")
        if isinstance(value, (int, float)):
            return cls("constant", float(value))
        if isinstance(value, dict):
            unknown = set(value) - {"type", "start", "end", "end_frac"}
            if unknown:
                raise ConfigError(
                    f"{path}.{sorted(unknown)[0]}: unknown key; valid: end, end_frac, start, type"
                )
            sched = cls(**{k: float(v) if k != "type" else v for k, v in value.items()})
            if sched.type not in SCHEDULE_TYPES:
                valid = ", ".join(SCHEDULE_TYPES)
                raise ConfigError(f"{path}.type: unknown schedule '{sched.type}'; valid: {valid}")
            return sched
        raise ConfigError(f"{path}: expected a number or a schedule, got {value!r}")

    def __call__(self, frac: float) -> float:
        """Value at training fraction ``frac`` in [0, 1]."""
        end = self.start if self.end is None else self.end
        if self.type == "constant":
            return self.start
        p = min(max(frac / self.end_frac, 0.0), 1.0) if self.end_frac > 0 else 1.0
        if self.type == "linear":
            return self.start + p * (end - self.start)
        if self.type == "cosine":
            return end + 0.5 * (self.start - end) * (1.0 + math.cos(math.pi * p))
        # exponential: geometric interpolation (both values must share a sign and be non-zero)
        return self.start * (end / self.start) ** p

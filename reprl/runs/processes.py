"""Helpers of the commands that drive training runs as child processes (``reprl suite``,
``reprl sweep``): signal handling around child start-up, reading a child's log, and telling
which saved setting a rerun changed."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any


class StopRequests:
    """Counts SIGINT/SIGTERM while installed (main thread only) instead of raising, so a
    signal never lands between starting a child and recording it; the driver polls
    :attr:`count` and stops its children itself."""

    def __init__(self) -> None:
        self.count = 0
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.count += 1

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)


def last_line(path: Path, max_bytes: int = 8192) -> str:
    """The last non-empty line of a (possibly large) log file ('' when there is none)."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - max_bytes))
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return ""
    return next((ln.strip() for ln in reversed(lines) if ln.strip()), "")


def first_difference(saved: Any, new: Any, saved_label: str, prefix: str = "") -> str | None:
    """The first dotted key whose value differs between ``saved`` settings (described as
    ``saved_label``, e.g. "the saved suite") and this command's, with both values; None when
    equal."""
    import json

    if isinstance(saved, dict) and isinstance(new, dict):
        for key in list(saved) + [k for k in new if k not in saved]:
            path = f"{prefix}.{key}" if prefix else str(key)
            if key not in saved or key not in new:
                return f"{path}: only in {'this command' if key not in saved else saved_label}"
            diff = first_difference(saved[key], new[key], saved_label, path)
            if diff:
                return diff
        return None
    if saved != new:
        return f"{prefix}: {json.dumps(saved)} saved, {json.dumps(new)} now"
    return None

"""User-facing errors.

Anything raised as a :class:`ReprlError` is a mistake the user can fix (a bad config key,
an unknown env id, a missing checkpoint). The CLI prints its message on one line and exits
with code 2, without a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ReprlError(Exception):
    """A user mistake: printed as one line by the CLI, exit code 2."""


class ConfigError(ReprlError):
    """An invalid configuration: unknown key or name, wrong type, inconsistent options."""


class CheckpointError(ReprlError):
    """A missing, corrupt or incompatible checkpoint."""


class EnvError(ReprlError):
    """An environment that cannot be made or that crashed."""


def choices_hint(name: str, valid: Iterable[str]) -> str:
    """Return `"did you mean 'x'? valid: a, b, c"` for an unknown `name` among `valid`."""
    valid = sorted(valid)
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return f"{hint}valid: {', '.join(valid)}"

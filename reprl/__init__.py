"""reprl: deep RL research where representation learning, exploration and RL compose freely.

The command line (``reprl train ...``) is the main interface; :func:`make_train` is the same
pipeline as a Python function with replaceable parts (imported on first use, so that the
command line starts without it)."""

from typing import Any

__all__ = ["make_train"]


def __getattr__(name: str) -> Any:
    if name == "make_train":
        from reprl.functional import make_train

        return make_train
    raise AttributeError(f"module 'reprl' has no attribute {name!r}")

"""Checkpoints: state dicts plus the resolved config, written atomically, loaded safely.

Writes go to a temp file in the same folder and are renamed over the target, so a crash
never leaves half a checkpoint. Loading uses ``torch.load(weights_only=True)``: it never
executes code from the file. NumPy arrays are stored as tensors (weights_only refuses
NumPy's pickled arrays) and turned back into arrays where the reader wants them.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reprl.errors import CheckpointError

CKPT_RE = re.compile(r"step_(\d+)\.pt$")


def to_storable(obj: Any) -> Any:
    """NumPy arrays/scalars -> tensors/Python numbers, recursively."""
    if isinstance(obj, np.ndarray):
        if obj.dtype == np.uint32:  # torch has no full uint32 support: widen losslessly
            obj = obj.astype(np.int64)
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {k: to_storable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_storable(v) for v in obj)
    return obj


def to_numpy(obj: Any) -> Any:
    """Tensors -> NumPy arrays, recursively (for env states that were NumPy)."""
    if isinstance(obj, torch.Tensor):
        return obj.numpy()
    if isinstance(obj, dict):
        return {k: to_numpy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_numpy(v) for v in obj)
    return obj


def save(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(to_storable(state), f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint file without executing code; clear errors when missing or corrupt.

    Tensors are memory-mapped from the file (private, copy-on-write: writing to them never
    changes the file), so a checkpoint holding a replay buffer of gigabytes is read only
    where it is used (reading a run's config touches the config alone) and is not held in
    memory a second time while it is copied into the buffer.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True, mmap=True)
    except Exception as exc:  # torch raises several types for damaged files
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"corrupt or unreadable checkpoint {path}: {reason}") from None
    if not isinstance(state, dict) or "config" not in state or "agent" not in state:
        raise CheckpointError(f"not a reprl checkpoint: {path}")
    return state


def list_checkpoints(ckpt_dir: str | Path) -> list[Path]:
    """Periodic checkpoints ``step_<n>.pt`` in ``ckpt_dir``, oldest first."""
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in ckpt_dir.iterdir() if (m := CKPT_RE.search(p.name))]
    return [p for _, p in sorted(found)]


def resolve(path_or_run: str | Path) -> Path:
    """A checkpoint file, or a run folder -> its latest checkpoint (``final.pt`` first)."""
    p = Path(path_or_run)
    if p.is_file():
        return p
    if p.is_dir():
        ckpt_dir = p / "checkpoints" if (p / "checkpoints").is_dir() else p
        latest = ckpt_dir / "latest.pt"
        if latest.is_file():
            return latest
        found = list_checkpoints(ckpt_dir)
        if found:
            return found[-1]
        raise CheckpointError(f"no checkpoint in {p} (expected {ckpt_dir}/latest.pt)")
    raise CheckpointError(f"no such run folder or checkpoint: {p}")


def rotate(ckpt_dir: str | Path, keep_last: int) -> None:
    """Delete all but the ``keep_last`` newest periodic checkpoints."""
    found = list_checkpoints(ckpt_dir)
    for old in found[: max(len(found) - keep_last, 0)]:
        old.unlink(missing_ok=True)


def round_trip(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` as a checkpoint gives it back, in memory: NumPy arrays stored as tensors and
    loaded without unpickling code (``weights_only=True``). For checking that a component's
    state survives saving (env snapshots, buffers, normalisers)."""
    import io

    buffer = io.BytesIO()
    torch.save(to_storable(state), buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def normalizer_of(state: dict[str, Any]) -> dict[str, Any] | None:
    """The training envs' normaliser statistics (NumPy) saved in a checkpoint state, or None.

    They sit under the experience source's env state, ``source.env`` for on-policy agents and
    ``source.rollout.env`` for off-policy ones: the first ``normalizer`` entry is taken."""
    stack = [state.get("source", {})]
    while stack:
        node = stack.pop(0)
        if "normalizer" in node:
            return to_numpy(node["normalizer"])
        stack += [v for v in node.values() if isinstance(v, dict)]
    return None

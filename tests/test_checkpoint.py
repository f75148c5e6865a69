"""Checkpoint files: atomic writes, safe loading, NumPy round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from reprl.errors import CheckpointError
from reprl.runs import checkpoint as ckpt


def payload(value: float) -> dict:
    return {"config": {}, "agent": {"w": torch.full((3,), value)}, "np": np.arange(4)}


def test_crash_during_write_keeps_the_previous_checkpoint(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "latest.pt"
    ckpt.save(path, payload(1.0))

    def broken_save(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        ckpt.save(path, payload(2.0))
    monkeypatch.undo()
    assert ckpt.load(path)["agent"]["w"][0].item() == 1.0
    assert [p.name for p in tmp_path.iterdir()] == ["latest.pt"]  # no temp file left


def test_numpy_round_trip_and_no_code_execution(tmp_path: Path) -> None:
    path = ckpt.save(tmp_path / "a.pt", payload(3.0))
    state = ckpt.load(path)
    np.testing.assert_array_equal(ckpt.to_numpy(state["np"]), np.arange(4))

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    bad = tmp_path / "evil.pt"
    torch.save({"config": {}, "agent": Evil()}, bad)
    with pytest.raises(CheckpointError, match="corrupt or unreadable"):
        ckpt.load(bad)


def test_not_a_reprl_checkpoint(tmp_path: Path) -> None:
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.ones(2)}, other)
    with pytest.raises(CheckpointError, match="not a reprl checkpoint"):
        ckpt.load(other)

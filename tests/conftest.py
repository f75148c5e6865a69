"""Fixtures shared by the pretraining tests (trainers read one generated DQN-Replay
dataset)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DQN-Replay root with one checkpoint of Pong-shaped frames (``pong_like_data``)."""
    from tests.test_offline_data import write_checkpoint
    from tests.test_pretrain import pong_like_data

    root = tmp_path_factory.mktemp("dqn_replay")
    write_checkpoint(root / "Pong" / "1" / "replay_logs", 0, pong_like_data())
    return root


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One torch thread: tiny ops on a loaded 2-core machine are slower with two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

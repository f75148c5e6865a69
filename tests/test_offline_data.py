"""Offline data: DQN-Replay shards in the published layout (written here, small), memory-mapped
without holding a shard in RAM; windows inside episodes, frame stacks rebuilt by index,
return-to-go and the train/validation split by episode, against slow references."""

from __future__ import annotations

import gzip
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from reprl.data.datasets.dqn_replay import available_checkpoints, load_checkpoint, load_run
from reprl.data.datasets.windows import Segment, WindowSampler
from reprl.errors import ReprlError


def write_member(path: Path, array: np.ndarray) -> None:
    """As Dopamine saves a replay buffer: ``np.save`` into a gzip stream."""
    with open(path, "wb") as f, gzip.GzipFile(fileobj=f, mode="wb") as out:
        np.save(out, array, allow_pickle=False)


def write_checkpoint(run_dir: Path, k: int, data: dict[str, np.ndarray], add_count=None) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    for name, array in data.items():
        write_member(run_dir / f"$store$_{name}_ckpt.{k}.gz", array)
    if add_count is not None:
        write_member(run_dir / f"add_count_ckpt.{k}.gz", np.array(add_count, dtype=np.int64))


def episodes_data(lengths: list[int], size: int = 8, seed: int = 0) -> dict[str, np.ndarray]:
    """Frames that encode (episode, step): pixel [0, 0] = episode + 1, [0, 1] = step + 1."""
    rng = np.random.default_rng(seed)
    n = sum(lengths)
    obs = np.zeros((n, size, size), np.uint8)
    terminal = np.zeros(n, np.uint8)
    i = 0
    for e, length in enumerate(lengths):
        for s in range(length):
            obs[i, 0, 0], obs[i, 0, 1] = e + 1, s + 1
            i += 1
        terminal[i - 1] = 1
    return {
        "observation": obs,
        "action": rng.integers(0, 6, n).astype(np.int32),
        "reward": rng.choice([0.0, 1.0, -1.0], n).astype(np.float32),
        "terminal": terminal,
    }


# ----------------------------------------------------------------------------- DQN-Replay
def test_checkpoint_loads_memory_mapped_and_equal(tmp_path: Path) -> None:
    data = episodes_data([5, 7, 4])
    run = tmp_path / "Pong" / "1" / "replay_logs"
    write_checkpoint(run, 0, data)
    write_checkpoint(run, 3, episodes_data([6, 10], seed=1))
    assert available_checkpoints(run) == [0, 3]
    (segment,) = load_checkpoint(run, 0, tmp_path / "cache")
    assert isinstance(segment.obs.base, np.memmap) or isinstance(segment.obs, np.memmap)
    np.testing.assert_array_equal(segment.obs, data["observation"])
    np.testing.assert_array_equal(segment.action, data["action"])
    np.testing.assert_array_equal(segment.reward, data["reward"])
    np.testing.assert_array_equal(segment.terminal, data["terminal"].astype(bool))
    cached = sorted(p.name for p in (tmp_path / "cache").glob("*.npy"))
    assert len(cached) == 4
    mtime = (tmp_path / "cache" / cached[0]).stat().st_mtime_ns
    load_checkpoint(run, 0, tmp_path / "cache")  # the cache is reused, not rewritten
    assert (tmp_path / "cache" / cached[0]).stat().st_mtime_ns == mtime
    segments = load_run(tmp_path, "Pong", 1, cache_dir=tmp_path / "cache")
    assert [len(s) for s in segments] == [16, 16]


def test_circular_buffer_cursor_splits_the_shard_in_time_order(tmp_path: Path) -> None:
    data = episodes_data([4, 6])
    write_checkpoint(tmp_path, 0, data, add_count=10 + 3)  # wrapped: oldest step at 3
    first, second = load_checkpoint(tmp_path, 0)
    np.testing.assert_array_equal(first.obs, data["observation"][3:])
    np.testing.assert_array_equal(second.obs, data["observation"][:3])
    write_checkpoint(tmp_path / "b", 0, data, add_count=7)  # not full: 7 steps stored
    (only,) = load_checkpoint(tmp_path / "b", 0)
    assert len(only) == 7


def test_missing_and_corrupt_files_are_clear_errors(tmp_path: Path) -> None:
    write_checkpoint(tmp_path, 2, episodes_data([3]))
    with pytest.raises(ReprlError, match=r"missing .*ckpt\.5\.gz.*checkpoints found: \[2\]"):
        load_checkpoint(tmp_path, 5)
    (tmp_path / "$store$_reward_ckpt.2.gz").write_bytes(b"\x1f\x8b\x08garbage")
    with pytest.raises(ReprlError, match="corrupt or unreadable DQN-Replay file"):
        load_checkpoint(tmp_path, 2, tmp_path / "cache")
    with pytest.raises(ReprlError, match="no folder"):
        load_run(tmp_path, "Breakout", 1)


def test_a_shard_is_never_held_in_memory(tmp_path: Path) -> None:
    """Decompression streams to disk and the arrays are memory-mapped: Python's peak
    allocation while loading stays far below the shard's size."""
    n = 4000
    obs = np.random.default_rng(0).integers(0, 255, (n, 84, 84), dtype=np.uint8)  # 28 MB
    data = {
        "observation": obs,
        "action": np.zeros(n, np.int32),
        "reward": np.zeros(n, np.float32),
        "terminal": np.zeros(n, np.uint8),
    }
    write_checkpoint(tmp_path, 0, data)
    del obs, data
    tracemalloc.start()
    (segment,) = load_checkpoint(tmp_path, 0, tmp_path / "cache")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < n * 84 * 84 / 10
    assert segment.obs[123].shape == (84, 84)


# ----------------------------------------------------------------------------- windows
def slow_stack(obs: np.ndarray, ends: np.ndarray, i: int, k: int) -> np.ndarray:
    """The k frames ending at step i, zeros before the episode's first frame."""
    start = i
    while start > 0 and not ends[start - 1]:
        start -= 1
    frames = [obs[j] if j >= start else np.zeros_like(obs[0]) for j in range(i - k + 1, i + 1)]
    return np.stack(frames)


def slow_rtg(reward: np.ndarray, ends: np.ndarray, i: int, gamma: float) -> float:
    total, discount, j = 0.0, 1.0, i
    while True:
        total += discount * float(reward[j])
        if ends[j]:
            return total
        discount *= gamma
        j += 1


@pytest.mark.parametrize("gamma", [1.0, 0.9])
def test_windows_stay_in_episodes_with_stacks_and_returns_to_go(gamma: float) -> None:
    lengths = [3, 9, 1, 6, 12]
    data = episodes_data(lengths)
    truncated = np.zeros(sum(lengths), bool)
    truncated[2] = True  # the first episode was cut by a time limit, not terminated
    terminal = data["terminal"].astype(bool) & ~truncated
    seg = Segment(data["observation"], data["action"], data["reward"], terminal, truncated)
    ends = terminal | truncated
    ends[-1] = True
    sampler = WindowSampler([seg], seq_len=4, frame_stack=3, gamma=gamma, seed=1)
    # windows of 4 fit only in episodes of length >= 4: 9-3 + 6-3 + 12-3 = 6 + 3 + 9 starts
    assert sampler.num_windows() == (9 - 3) + (6 - 3) + (12 - 3)
    batch = sampler.sample(64)
    assert batch.obs.shape == (64, 4, 3, 8, 8) and batch.obs.dtype.is_floating_point is False
    obs = batch.obs.numpy()
    for n in range(64):
        episode = obs[n, :, -1, 0, 0]
        assert (episode == episode[0]).all()  # one episode per window
        steps = obs[n, :, -1, 0, 1].astype(int) - 1
        assert (np.diff(steps) == 1).all()  # consecutive steps
        i = int(np.flatnonzero(data["observation"][:, 0, 0] == episode[0])[0]) + steps[0]
        for t in range(4):
            np.testing.assert_array_equal(
                obs[n, t], slow_stack(data["observation"], ends, i + t, 3)
            )
            want = slow_rtg(data["reward"], ends, i + t, gamma)
            assert batch.extras["return_to_go"][n, t].item() == pytest.approx(want, rel=1e-5)
            assert batch.action[n, t].item() == data["action"][i + t]
            assert batch.is_first[n, t].item() == (steps[t] == 0)
            assert batch.terminated[n, t].item() == bool(terminal[i + t])


def test_split_is_by_episode_disjoint_and_seeded() -> None:
    lengths = list(range(2, 42))  # 40 episodes
    data = episodes_data(lengths)
    seg = Segment(data["observation"], data["action"], data["reward"], data["terminal"] == 1)
    a = WindowSampler([seg], seq_len=2, val_frac=0.25, seed=3)
    b = WindowSampler([seg], seq_len=2, val_frac=0.25, seed=3)
    assert a.num_episodes == {"train": 30, "val": 10}

    def episodes(sampler: WindowSampler, split: str) -> set[int]:
        obs = sampler.sample(2000, split).obs.numpy()
        return set(obs[:, :, 0, 0].reshape(-1).tolist())

    train, val = episodes(a, "train"), episodes(a, "val")
    assert len(val) == 10 and not train & val
    assert episodes(b, "val") == val  # the same seed makes the same split
    assert episodes(WindowSampler([seg], seq_len=2, val_frac=0.25, seed=4), "val") != val


def test_segments_of_several_checkpoints_sample_together(tmp_path: Path) -> None:
    write_checkpoint(tmp_path, 0, episodes_data([5, 5]))
    write_checkpoint(tmp_path, 1, episodes_data([8], seed=2))
    segments = load_checkpoint(tmp_path, 0) + load_checkpoint(tmp_path, 1)
    sampler = WindowSampler(segments, seq_len=5, frame_stack=4, seed=0)
    assert sampler.num_windows() == 1 + 1 + 4
    batch = sampler.sample(32)
    assert batch.obs.shape == (32, 5, 4, 8, 8)
    with pytest.raises(ReprlError, match="unknown split"):
        sampler.sample(2, "test")
    with pytest.raises(ReprlError, match="no window of 9 steps"):
        WindowSampler(segments, seq_len=9).sample(2)


# ----------------------------------------------------------------------------- Minari
def test_minari_dataset_loads_as_one_segment_of_episodes(tmp_path: Path) -> None:
    """A real Minari dataset (written with minari's own API) reads back step for step;
    windows never join its episodes."""
    minari = pytest.importorskip("minari")
    import gymnasium as gym
    from minari.data_collector import EpisodeBuffer

    from reprl.data.datasets.minari import load_minari

    rng = np.random.default_rng(0)
    episodes = []
    for e, n in enumerate([5, 8, 3]):
        obs = rng.normal(size=(n + 1, 4)).astype(np.float32)
        obs[:, 0] = e  # the episode's id in the first feature
        end = np.zeros(n, bool)
        end[-1] = True
        episodes.append(
            EpisodeBuffer(
                observations=obs,
                actions=rng.integers(0, 2, n),
                rewards=rng.normal(size=n),
                terminations=end if e != 1 else np.zeros(n, bool),
                truncations=end if e == 1 else np.zeros(n, bool),
            )
        )
    root = tmp_path / "minari"
    import os

    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    try:
        minari.create_dataset_from_buffers(
            "cartpole/reprl-test-v0", episodes, env=gym.make("CartPole-v1"), algorithm_name="x"
        )
    finally:
        if old is None:
            os.environ.pop("MINARI_DATASETS_PATH")
        else:
            os.environ["MINARI_DATASETS_PATH"] = old
    seg = load_minari("cartpole/reprl-test-v0", root=root)
    assert len(seg) == 16 and seg.obs.shape == (16, 4)
    np.testing.assert_array_equal(seg.obs[:5], episodes[0].observations[:5])
    np.testing.assert_array_equal(seg.action[5:13], episodes[1].actions)
    assert seg.truncated[12] and not seg.terminal[12] and seg.terminal[4] and seg.terminal[15]
    batch = WindowSampler([seg], seq_len=3).sample(100)
    ids = batch.obs[..., 0].numpy()
    assert (ids == ids[:, :1]).all()
    with pytest.raises(ReprlError, match="no local Minari dataset 'nope/x-v0'"):
        load_minari("nope/x-v0", root=root)

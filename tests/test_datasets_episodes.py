"""reprl's episode dataset format: writer -> loader round trips and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from reprl.data.datasets import (
    FORMAT_NAME,
    FORMAT_VERSION,
    DatasetError,
    EpisodeWriter,
    load_episodes,
    load_metadata,
)
from reprl.errors import ReprlError

DISCRETE = {"type": "discrete", "n": 4, "meanings": ["NOOP", "FIRE", "RIGHT", "LEFT"]}
CONTINUOUS = {"type": "continuous", "shape": [2], "low": [-1.0, -1.0], "high": [1.0, 1.0]}


def _write_image_dataset(path: Path, lengths: tuple[int, ...] = (5, 3)) -> list[dict]:
    """Episodes of uint8 (4, 8, 8) stacks with raw rewards; returns what was written."""
    rng = np.random.default_rng(0)
    written = []
    with EpisodeWriter(
        path, "ALE/Breakout-v5", {"id": "ALE/Breakout-v5"}, (4, 8, 8), "uint8", DISCRETE,
        source="human", frame_stack=4,
    ) as writer:  # fmt: skip
        for t_len in lengths:
            obs = rng.integers(0, 256, (t_len + 1, 4, 8, 8), dtype=np.uint8)
            action = rng.integers(0, 4, t_len)
            raw = rng.integers(0, 8, t_len).astype(np.float32)
            term = np.zeros(t_len, bool)
            term[-1] = True
            for t in range(t_len):
                writer.append(
                    obs[t], int(action[t]), float(np.sign(raw[t])), term[t], False, raw[t]
                )
            writer.end_episode(obs[-1])
            written.append({"obs": obs, "action": action, "raw_reward": raw, "terminated": term})
    return written


def test_round_trip_uint8_discrete(tmp_path: Path) -> None:
    written = _write_image_dataset(tmp_path / "ds")
    meta = load_metadata(tmp_path / "ds")
    assert (meta["format"], meta["version"]) == (FORMAT_NAME, FORMAT_VERSION)
    assert meta["num_episodes"] == 2 and meta["num_steps"] == 8
    assert meta["observation"] == {"shape": [4, 8, 8], "dtype": "uint8"}
    assert meta["frame_stack"] == 4 and meta["action_space"] == DISCRETE
    assert meta["source"] == {"kind": "human", "checkpoint": None}
    assert "raw_reward" in meta["fields"]
    assert [e["length"] for e in meta["episodes"]] == [5, 3]
    episodes = load_episodes(tmp_path / "ds")
    assert len(episodes) == 2
    for ep, ref in zip(episodes, written, strict=True):
        assert ep["obs"].dtype == np.uint8 and ep["obs"].shape == ref["obs"].shape
        np.testing.assert_array_equal(ep["obs"], ref["obs"])
        assert ep["action"].dtype == np.int64
        np.testing.assert_array_equal(ep["action"], ref["action"])
        np.testing.assert_array_equal(ep["raw_reward"], ref["raw_reward"])
        np.testing.assert_array_equal(ep["reward"], np.sign(ref["raw_reward"]))
        assert ep["reward"].dtype == np.float32
        assert ep["terminated"].dtype == bool and ep["truncated"].dtype == bool
        np.testing.assert_array_equal(ep["terminated"], ref["terminated"])
        assert not ep["truncated"].any()
    assert meta["episodes"][0]["return"] == pytest.approx(float(written[0]["raw_reward"].sum()))


def test_round_trip_float_continuous_without_raw_reward(tmp_path: Path) -> None:
    writer = EpisodeWriter(
        tmp_path, "Pendulum-v1", {}, (3,), np.float32, CONTINUOUS, "agent", checkpoint="ck.pt"
    )
    obs = np.arange(12, dtype=np.float32).reshape(4, 3) / 7
    for t in range(3):
        writer.append(obs[t], np.array([0.5, -0.25 * t]), -1.5 * t, False, t == 2)
    writer.end_episode(obs[3])
    writer.append(obs[0], np.zeros(2), 0.0, False, False)
    assert writer.discard_episode() == 1
    writer.close()
    meta = load_metadata(tmp_path)
    assert "raw_reward" not in meta["fields"] and meta["num_episodes"] == 1
    assert meta["source"] == {"kind": "agent", "checkpoint": "ck.pt"}
    (ep,) = load_episodes(tmp_path)
    assert "raw_reward" not in ep
    np.testing.assert_array_equal(ep["obs"], obs)
    assert ep["obs"].dtype == np.float32
    assert ep["action"].shape == (3, 2) and ep["action"].dtype == np.float32
    np.testing.assert_allclose(ep["action"][:, 1], [0.0, -0.25, -0.5])
    np.testing.assert_allclose(ep["reward"], [0.0, -1.5, -3.0])
    np.testing.assert_array_equal(ep["truncated"], [False, False, True])


def test_writer_checks_its_input(tmp_path: Path) -> None:
    writer = EpisodeWriter(tmp_path / "ds", "CartPole-v1", {}, (4,), "float32", DISCRETE, "random")
    with pytest.raises(ValueError, match="shape"):
        writer.append(np.zeros(5), 0, 1.0, False, False)
    with pytest.raises(ValueError, match="without any step"):
        writer.end_episode(np.zeros(4))
    writer.append(np.zeros(4), 0, 1.0, False, False, raw_reward=1.0)
    with pytest.raises(ValueError, match="every step or on none"):
        writer.append(np.zeros(4), 0, 1.0, False, False)
    writer.close()
    with pytest.raises(DatasetError, match="already holds a dataset"):
        EpisodeWriter(tmp_path / "ds", "CartPole-v1", {}, (4,), "float32", DISCRETE, "random")


def test_missing_and_corrupt_datasets_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not a folder"):
        load_episodes(tmp_path / "nope")
    with pytest.raises(ReprlError, match="metadata.json is missing"):
        load_metadata(tmp_path)

    _write_image_dataset(tmp_path / "ds")
    meta_file = tmp_path / "ds" / "metadata.json"
    meta = json.loads(meta_file.read_text())

    meta_file.write_text(json.dumps({**meta, "version": 99}))
    with pytest.raises(DatasetError, match="unsupported reprl-episodes version 99"):
        load_episodes(tmp_path / "ds")
    meta_file.write_text("{not json")
    with pytest.raises(DatasetError, match="corrupt"):
        load_metadata(tmp_path / "ds")
    meta_file.write_text(json.dumps({"hello": 1}))
    with pytest.raises(DatasetError, match="not a reprl-episodes dataset"):
        load_metadata(tmp_path / "ds")

    meta_file.write_text(json.dumps(meta))
    (tmp_path / "ds" / "episode_1.npz").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="corrupt episode file .*episode_1.npz"):
        load_episodes(tmp_path / "ds")
    (tmp_path / "ds" / "episode_1.npz").unlink()
    with pytest.raises(DatasetError, match="episode_1.npz .* is missing"):
        load_episodes(tmp_path / "ds")

    # object arrays need pickle: refused, never unpickled
    np.savez(tmp_path / "ds" / "episode_1.npz", obs=np.array([{"a": 1}], dtype=object))
    with pytest.raises(DatasetError, match="corrupt episode file"):
        load_episodes(tmp_path / "ds")
    # arrays of inconsistent lengths
    np.savez(
        tmp_path / "ds" / "episode_1.npz",
        obs=np.zeros((4, 4, 8, 8), np.uint8),
        action=np.zeros(3, np.int64),
        reward=np.zeros(2, np.float32),
        raw_reward=np.zeros(3, np.float32),
        terminated=np.zeros(3, bool),
        truncated=np.zeros(3, bool),
    )
    with pytest.raises(DatasetError, match="lengths disagree \\(reward\\)"):
        load_episodes(tmp_path / "ds")

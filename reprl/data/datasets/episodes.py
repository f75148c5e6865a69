"""reprl's offline episode dataset format (``reprl-episodes``, version 1).

A dataset is a folder of whole episodes, written by ``reprl play`` (human, random or agent
play) and read by anything that learns offline (pretraining, imitation)::

    DATASET/
      metadata.json      what was played and how to read it (below)
      episode_0.npz      one compressed NumPy archive per episode, numbered from 0
      episode_1.npz
      ...

``metadata.json`` (plain JSON, one object):

- ``format``: ``"reprl-episodes"``; ``version``: ``1`` (readers reject other versions).
- ``env_id`` and ``env_config``: the env id and the resolved ``env`` config (as in a run's
  config.yaml) the episodes were played with; the observations are what its wrappers return.
- ``observation``: ``{"shape": [...], "dtype": "uint8" | "float32" | ...}``;
  ``frame_stack``: frames stacked along the observation's first axis (Atari: 4).
- ``action_space``: ``{"type": "discrete", "n": N, "meanings": [...]}`` or
  ``{"type": "continuous", "shape": [...], "low": [...], "high": [...]}``.
- ``fields``: the arrays every episode file holds (``raw_reward`` only when recorded).
- ``num_episodes``, ``num_steps`` and ``episodes``: one ``{"file", "length", "return"}`` per
  episode (``return``: the sum of ``raw_reward`` when recorded, else of ``reward``).
- ``source``: ``{"kind": "human" | "random" | "agent" | ..., "checkpoint": PATH | null}``.
- ``created``: ISO 8601 time the dataset was started; ``extra``: free-form details.

``episode_<k>.npz`` holds, for an episode of ``T >= 1`` steps:

=============== ================== ========= =================================================
key             shape              dtype     meaning
=============== ================== ========= =================================================
``obs``         ``(T+1, *obs)``    obs dtype ``obs[t]`` is the observation ``action[t]`` was
                                             taken in; ``obs[T]`` is the final observation
                                             (uint8 images stay uint8)
``action``      ``(T,)`` or        int64 /   discrete indices, or continuous actions as
                ``(T, *act)``      float32   sent to the env
``reward``      ``(T,)``           float32   reward as the learner sees it (after clipping or
                                             normalisation by the env's wrappers)
``raw_reward``  ``(T,)``           float32   the game's reward before those transforms
                                             (optional, see ``fields``)
``terminated``  ``(T,)``           bool      the transition ended the episode (no bootstrap)
``truncated``   ``(T,)``           bool      a time limit cut the episode (bootstrap from
                                             ``obs[T]``)
=============== ================== ========= =================================================

An episode ends where its last step has ``terminated`` or ``truncated`` set (a writer that
stops an episode early sets ``truncated``); earlier steps have both false. Episodes are
learner episodes: with Atari's episodic life a lost life ends one. Files are read with
``allow_pickle=False``: nothing in a dataset can run code.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from reprl.errors import ReprlError

FORMAT_NAME = "reprl-episodes"
"""The ``format`` value of ``metadata.json``."""
FORMAT_VERSION = 1
"""The ``version`` value this module writes and reads."""
METADATA_FILE = "metadata.json"
REQUIRED_FIELDS = ("obs", "action", "reward", "terminated", "truncated")
"""Arrays every episode file holds; ``raw_reward`` is optional."""


class DatasetError(ReprlError):
    """A missing, corrupt or incompatible episode dataset."""


def episode_file(k: int) -> str:
    """File name of episode ``k``."""
    return f"episode_{k}.npz"


def action_space_dict(spec: Any) -> dict[str, Any]:
    """The ``action_space`` entry of the metadata from an :class:`reprl.types.EnvSpec`."""
    if spec.discrete:
        return {
            "type": "discrete",
            "n": int(spec.num_actions),
            "meanings": list(spec.action_meanings),
        }
    return {
        "type": "continuous",
        "shape": list(spec.action_shape),
        "low": np.asarray(spec.action_low, np.float64).tolist(),
        "high": np.asarray(spec.action_high, np.float64).tolist(),
    }


def _write_atomic(path: Path, write: Any) -> None:
    """Write through a temporary file then rename, so a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        write(f)
    os.replace(tmp, path)


class EpisodeWriter:
    """Write episodes into a new dataset folder.

    Per episode: :meth:`append` each step (the observation the action was taken in, then
    what the step returned), then :meth:`end_episode` with the final observation (or
    :meth:`discard_episode`). ``metadata.json`` is rewritten after every episode, so an
    interrupted writer leaves a valid dataset of the episodes finished so far; :meth:`close`
    writes it a last time (also as a context manager).

    Args:
        path: the dataset folder; created, and it must not already hold a dataset.
        env_id: the env id the episodes come from.
        env_config: the resolved env config (plain data, stored as JSON).
        obs_shape, obs_dtype: one observation (after the env's wrappers).
        action_space: the ``action_space`` metadata (see :func:`action_space_dict`).
        source: who acted: ``human``, ``random``, ``agent`` ...
        checkpoint: the agent's checkpoint (source ``agent``).
        frame_stack: frames stacked along the observation's first axis.
        extra: free-form JSON-able details stored under ``extra``.
    """

    def __init__(
        self,
        path: str | Path,
        env_id: str,
        env_config: dict[str, Any],
        obs_shape: tuple[int, ...],
        obs_dtype: np.dtype | str,
        action_space: dict[str, Any],
        source: str,
        checkpoint: str | None = None,
        frame_stack: int = 1,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.path = Path(path)
        if (self.path / METADATA_FILE).exists():
            raise DatasetError(f"{self.path} already holds a dataset: choose another folder")
        if action_space.get("type") not in ("discrete", "continuous"):
            raise ValueError(f"action_space type must be discrete or continuous: {action_space}")
        self.path.mkdir(parents=True, exist_ok=True)
        self.obs_shape = tuple(int(d) for d in obs_shape)
        self.obs_dtype = np.dtype(obs_dtype)
        self.discrete = action_space["type"] == "discrete"
        self.action_shape = () if self.discrete else tuple(action_space["shape"])
        self.metadata: dict[str, Any] = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "env_id": env_id,
            "env_config": env_config,
            "observation": {"shape": list(self.obs_shape), "dtype": self.obs_dtype.name},
            "frame_stack": int(frame_stack),
            "action_space": action_space,
            "fields": list(REQUIRED_FIELDS),
            "num_episodes": 0,
            "num_steps": 0,
            "episodes": [],
            "source": {"kind": source, "checkpoint": checkpoint},
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "extra": extra or {},
        }
        self._raw: bool | None = None  # whether raw_reward is recorded: fixed by the first step
        self._steps: list[tuple[np.ndarray, Any, float, float | None, bool, bool]] = []
        self._write_metadata()

    @property
    def num_episodes(self) -> int:
        """Episodes written so far."""
        return int(self.metadata["num_episodes"])

    @property
    def episode_steps(self) -> int:
        """Steps appended to the current (unfinished) episode."""
        return len(self._steps)

    def append(
        self,
        obs: np.ndarray,
        action: Any,
        reward: float,
        terminated: bool,
        truncated: bool,
        raw_reward: float | None = None,
    ) -> None:
        """One step: ``action`` taken in ``obs``, then the reward and flags it gave.

        ``raw_reward`` is given on every step of the dataset or on none."""
        obs = np.asarray(obs)
        if obs.shape != self.obs_shape:
            raise ValueError(f"observation shape {obs.shape} != dataset's {self.obs_shape}")
        if self._raw is None:
            self._raw = raw_reward is not None
            if self._raw:
                self.metadata["fields"] = [*REQUIRED_FIELDS[:3], "raw_reward", *REQUIRED_FIELDS[3:]]
        elif self._raw != (raw_reward is not None):
            raise ValueError("raw_reward must be given on every step or on none")
        self._steps.append(
            (
                obs.astype(self.obs_dtype, copy=True),
                action,
                reward,
                raw_reward,
                terminated,
                truncated,
            )
        )

    def end_episode(self, final_obs: np.ndarray) -> Path:
        """Write the current episode with its final observation; return its file."""
        if not self._steps:
            raise ValueError("end_episode() without any step appended")
        final_obs = np.asarray(final_obs)
        if final_obs.shape != self.obs_shape:
            raise ValueError(f"observation shape {final_obs.shape} != dataset's {self.obs_shape}")
        obs, actions, rewards, raws, terms, truncs = zip(*self._steps, strict=True)
        if self.discrete:
            action = np.asarray(actions, np.int64).reshape(len(actions))
        else:
            action = np.asarray(actions, np.float32).reshape(len(actions), *self.action_shape)
        arrays = {
            "obs": np.stack([*obs, final_obs.astype(self.obs_dtype)]),
            "action": action,
            "reward": np.asarray(rewards, np.float32),
            "terminated": np.asarray(terms, bool),
            "truncated": np.asarray(truncs, bool),
        }
        if self._raw:
            arrays["raw_reward"] = np.asarray(raws, np.float32)
        k = self.num_episodes
        file = self.path / episode_file(k)
        _write_atomic(file, lambda f: np.savez_compressed(f, **arrays))
        score = arrays["raw_reward"] if self._raw else arrays["reward"]
        self.metadata["episodes"].append(
            {"file": file.name, "length": len(self._steps), "return": float(score.sum())}
        )
        self.metadata["num_episodes"] = k + 1
        self.metadata["num_steps"] += len(self._steps)
        self._steps = []
        self._write_metadata()
        return file

    def discard_episode(self) -> int:
        """Drop the unfinished episode; return how many steps it had."""
        n, self._steps = len(self._steps), []
        return n

    def close(self) -> None:
        """Write the metadata (an unfinished episode is dropped)."""
        self.discard_episode()
        self._write_metadata()

    def _write_metadata(self) -> None:
        text = json.dumps(self.metadata, indent=2) + "\n"
        _write_atomic(self.path / METADATA_FILE, lambda f: f.write(text.encode()))

    def __enter__(self) -> EpisodeWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load_metadata(path: str | Path) -> dict[str, Any]:
    """The ``metadata.json`` of the dataset folder ``path``, checked for format and version."""
    path = Path(path)
    file = path / METADATA_FILE
    if not path.is_dir():
        raise DatasetError(f"no episode dataset at {path}: not a folder")
    if not file.is_file():
        raise DatasetError(f"no episode dataset at {path}: {METADATA_FILE} is missing")
    try:
        meta = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"corrupt {file}: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise DatasetError(f"{file} is not a {FORMAT_NAME} dataset (format field missing)")
    if meta.get("version") != FORMAT_VERSION:
        raise DatasetError(
            f"{file}: unsupported {FORMAT_NAME} version {meta.get('version')!r} "
            f"(this reprl reads version {FORMAT_VERSION})"
        )
    missing = [k for k in ("observation", "action_space", "episodes", "fields") if k not in meta]
    if missing:
        raise DatasetError(f"corrupt {file}: missing {', '.join(missing)}")
    return meta


def _load_episode(path: Path, entry: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    file = path / str(entry.get("file", ""))
    if not file.is_file():
        raise DatasetError(f"episode file {file} listed in {METADATA_FILE} is missing")
    try:
        with np.load(file, allow_pickle=False) as data:
            episode = {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"corrupt episode file {file}: {exc}") from None
    missing = [k for k in meta["fields"] if k not in episode]
    if missing:
        raise DatasetError(f"corrupt episode file {file}: missing {', '.join(missing)}")
    t = len(episode["action"])
    obs_shape = tuple(meta["observation"]["shape"])
    if episode["obs"].shape != (t + 1, *obs_shape):
        raise DatasetError(
            f"corrupt episode file {file}: obs shape {episode['obs'].shape}, expected "
            f"{(t + 1, *obs_shape)} for {t} actions"
        )
    bad = [k for k in meta["fields"] if k not in ("obs", "action") and episode[k].shape != (t,)]
    if bad or t != entry.get("length", t):
        raise DatasetError(f"corrupt episode file {file}: lengths disagree ({', '.join(bad)})")
    return episode


def iter_episodes(path: str | Path) -> Iterator[dict[str, np.ndarray]]:
    """Yield the episodes of the dataset at ``path`` one at a time (see the module docstring
    for the arrays of each)."""
    path = Path(path)
    meta = load_metadata(path)
    for entry in meta["episodes"]:
        yield _load_episode(path, entry, meta)


def load_episodes(path: str | Path) -> list[dict[str, np.ndarray]]:
    """Every episode of the dataset at ``path``, in order: dicts of ``obs (T+1, ...)``,
    ``action``, ``reward``, ``terminated``, ``truncated`` and ``raw_reward`` when recorded."""
    return list(iter_episodes(path))

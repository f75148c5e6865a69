"""Which offline dataset to read (config group ``dataset``) and how it becomes
:class:`~reprl.data.datasets.windows.Segment` s.

``name``:

- ``dqn_replay``: the Atari DQN-Replay dataset (:mod:`reprl.data.datasets.dqn_replay`),
  ``root/<game>/<run>/replay_logs``; one frame per step, stacks of ``frame_stack`` rebuilt by
  index;
- ``episodes``: reprl's own format (:mod:`reprl.data.datasets.episodes`, written by
  ``reprl play`` and ``reprl collect``) in the folder ``root``; the stored observations are
  used as they are (they are already stacked);
- ``minari``: a local Minari dataset ``dataset_id`` (:mod:`reprl.data.datasets.minari`),
  ``root`` overriding ``MINARI_DATASETS_PATH``; observations as stored.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reprl.data.datasets.windows import Segment
from reprl.errors import ConfigError

KINDS = ("dqn_replay", "episodes", "minari")


@dataclass
class DatasetConfig:
    """An offline dataset and its split."""

    name: str = "dqn_replay"
    """Format: dqn_replay, episodes (reprl's) or minari."""
    root: str | None = None
    """dqn_replay: the dataset's root folder (``<root>/<Game>/<run>/replay_logs``);
    episodes: the dataset folder; minari: overrides ``MINARI_DATASETS_PATH``."""
    game: str = "Pong"
    """dqn_replay: the game's folder name (e.g. Pong, Breakout, MontezumaRevenge)."""
    run: int = 1
    """dqn_replay: the run (the published dataset has runs 1-5 per game)."""
    checkpoints: list[int] | None = None
    """dqn_replay: checkpoint indices to read (null: every complete one; the published runs
    have 0-50, 1M steps each)."""
    dataset_id: str | None = None
    """minari: the dataset id, e.g. ``mujoco/halfcheetah/expert-v0``."""
    cache_dir: str | None = None
    """dqn_replay: where decompressed arrays are memory-mapped from (default
    ``<replay_logs>/.reprl_cache``)."""
    frame_stack: int = 4
    """dqn_replay: frames per observation (the others store whole observations)."""
    val_frac: float = 0.1
    """Fraction of episodes held out for validation (probes, validation losses)."""
    seed: int = 0
    """Seeds the split by episode."""

    def validate(self, path: str) -> None:
        """Checked on load: values that are wrong whatever the run."""
        if self.name not in KINDS:
            raise ConfigError(f"{path}.name: unknown '{self.name}'; valid: {', '.join(KINDS)}")
        if not 0.0 <= self.val_frac < 1.0 or self.frame_stack < 1:
            raise ConfigError(f"{path}: val_frac in [0, 1) and frame_stack >= 1")

    def check_usable(self, path: str) -> None:
        """Checked when a run reads the dataset: a known format with what it needs."""
        if self.name not in KINDS:
            raise ConfigError(f"{path}.name: unknown '{self.name}'; valid: {', '.join(KINDS)}")
        if self.name in ("dqn_replay", "episodes") and not self.root:
            raise ConfigError(f"{path}.root: required for {self.name} (the dataset's folder)")
        if self.name == "minari" and not self.dataset_id:
            raise ConfigError(f"{path}.dataset_id: required for minari")
        if not 0.0 <= self.val_frac < 1.0 or self.frame_stack < 1:
            raise ConfigError(f"{path}: val_frac in [0, 1) and frame_stack >= 1")

    @property
    def stack(self) -> int:
        """Frames stacked by the sampler (1 when observations are stored stacked)."""
        return self.frame_stack if self.name == "dqn_replay" else 1


def load_segments(cfg: DatasetConfig) -> list[Segment]:
    """The dataset's steps as segments (memory-mapped where the format allows)."""
    if cfg.name == "dqn_replay":
        from reprl.data.datasets.dqn_replay import load_run

        return load_run(cfg.root, cfg.game, cfg.run, cfg.checkpoints, cfg.cache_dir)
    if cfg.name == "minari":
        from reprl.data.datasets.minari import load_minari

        return [load_minari(cfg.dataset_id, cfg.root)]
    from reprl.data.datasets.episodes import iter_episodes

    segments = []
    for episode in iter_episodes(cfg.root):
        n = len(episode["reward"])
        truncated = np.asarray(episode["truncated"], dtype=bool).copy()
        terminal = np.asarray(episode["terminated"], dtype=bool)
        if n and not (terminal[-1] or truncated[-1]):
            truncated[-1] = True  # a recording that stopped mid-episode
        segments.append(
            Segment(
                obs=episode["obs"][:n],
                action=episode["action"],
                reward=episode["reward"],
                terminal=terminal,
                truncated=truncated,
            )
        )
    return segments

"""Windowed sampling of offline data: ``(N, T)`` sequences of consecutive steps within
episodes, frame stacks rebuilt by index, return-to-go, and a train/validation split by
episode.

Data comes as :class:`Segment` s: runs of consecutive steps (a DQN-Replay checkpoint, a
reprl dataset, a Minari dataset) whose arrays may be memory-mapped; nothing is copied until a
minibatch gathers its indices. Within a segment, an episode ends at a step with
``terminal`` (or ``truncated``) set; the segment's end also ends its last episode (as a
truncation: the data stops, the episode may not have). Frames are stored one per step (``(L,
H, W)`` or ``(L, C, H, W)``) and the observation of step ``i`` is the stack of the
``frame_stack`` frames ending at ``i``, zero-padded before the episode's first frame, the
convention reprl's replay buffer uses; vector observations ``(L, D)`` use ``frame_stack=1``.

A window of ``T`` steps lies inside one episode; :class:`WindowSampler` draws ``N`` windows
uniformly among all valid starts of its split and returns a :class:`~reprl.types.Batch`:
``obs (N, T, k*C, H, W)`` (uint8 stays uint8), ``action``, ``reward``, ``terminated``,
``truncated``, ``is_first`` (the episode's first step), ``valid`` (all true), and
``extras["return_to_go"]``: the discounted sum of the episode's rewards from each step on
(``gamma=1``: the undiscounted return-to-go of Decision Transformer, Chen et al. 2021).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from reprl.errors import ReprlError
from reprl.types import Batch


@dataclass
class Segment:
    """Consecutive steps; every array has the same length ``L`` (``obs`` one frame per step)."""

    obs: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    terminal: np.ndarray
    """``(L,)`` bool: the episode ended with this step (no bootstrap)."""
    truncated: np.ndarray | None = None
    """``(L,)`` bool: the episode was cut after this step (time limit); None: never."""

    def __len__(self) -> int:
        return len(self.reward)


@dataclass
class _Index:
    """Per-segment episode bookkeeping, computed once."""

    episode_start: np.ndarray
    """``(L,)`` index of each step's episode's first step."""
    episode_end: np.ndarray
    """``(L,)`` index of each step's episode's last step (inclusive)."""
    episode_id: np.ndarray
    """``(L,)`` running episode number within the segment."""
    return_to_go: np.ndarray
    """``(L,)`` float32."""
    ends: np.ndarray
    """``(L,)`` bool: :func:`episode_ends`."""
    starts: dict[str, np.ndarray] = field(default_factory=dict)
    """Valid window starts per split."""


def episode_ends(segment: Segment) -> np.ndarray:
    """``(L,)`` bool: the steps that end an episode (terminal, truncated, the segment's end)."""
    ends = np.asarray(segment.terminal, dtype=bool).copy()
    if segment.truncated is not None:
        ends |= np.asarray(segment.truncated, dtype=bool)
    if len(ends):
        ends[-1] = True
    return ends


def _index(segment: Segment, gamma: float) -> _Index:
    ends = episode_ends(segment)
    length = len(ends)
    ids = np.concatenate([[0], np.cumsum(ends[:-1])]).astype(np.int64) if length else ends
    last = np.flatnonzero(ends)
    first = np.concatenate([[0], last[:-1] + 1]) if length else last
    reward = np.asarray(segment.reward, dtype=np.float64)
    if gamma == 1.0:  # suffix sums of the segment, minus what follows each episode's end
        suffix = np.concatenate([np.cumsum(reward[::-1])[::-1], [0.0]])
        rtg = suffix[:-1] - suffix[last[ids] + 1]
    else:  # y[i] = r[i] + gamma * y[i + 1], backwards, restarting at each episode's end
        rtg = np.zeros(length, dtype=np.float64)
        acc = 0.0
        for i in range(length - 1, -1, -1):
            acc = reward[i] + (0.0 if ends[i] else gamma * acc)
            rtg[i] = acc
    return _Index(first[ids], last[ids], ids, rtg.astype(np.float32), ends)


class WindowSampler:
    """Uniform ``(N, T)`` windows of steps inside episodes, from a list of :class:`Segment` s.

    Args:
        segments: the data.
        seq_len: ``T``, the steps per window.
        frame_stack: frames per observation (1: the stored observation itself).
        gamma: discount of the return-to-go.
        val_frac: fraction of episodes held out for validation (the split is by episode, so
            no window of one split shares an episode with the other).
        seed: seeds the split (a fixed permutation of the episodes) and, unless a generator
            is passed to :meth:`sample`, the sampling.
    """

    SPLITS = ("train", "val")

    def __init__(
        self,
        segments: list[Segment],
        seq_len: int = 1,
        frame_stack: int = 1,
        gamma: float = 1.0,
        val_frac: float = 0.0,
        seed: int = 0,
    ) -> None:
        if seq_len < 1 or frame_stack < 1:
            raise ReprlError(f"seq_len and frame_stack must be >= 1, got {seq_len}, {frame_stack}")
        if frame_stack > 1 and any(s.obs.ndim < 3 for s in segments):
            raise ReprlError("frame_stack > 1 needs image frames (L, [C,] H, W)")
        if not 0.0 <= val_frac < 1.0:
            raise ReprlError(f"val_frac must be in [0, 1), got {val_frac}")
        self.segments = [s for s in segments if len(s)]
        if not self.segments:
            raise ReprlError("no data: every segment is empty")
        self.seq_len, self.frame_stack, self.val_frac = seq_len, frame_stack, val_frac
        self.rng = np.random.default_rng(seed)
        self.index = [_index(s, gamma) for s in self.segments]
        # the split: every (segment, episode) gets a fixed random rank; the lowest val_frac go
        # to validation
        keys = [(si, e) for si, ix in enumerate(self.index) for e in np.unique(ix.episode_id)]
        order = np.random.default_rng(seed).permutation(len(keys))
        n_val = int(round(val_frac * len(keys)))
        val = {keys[j] for j in order[:n_val]}
        self.num_episodes = {"train": len(keys) - n_val, "val": n_val}
        for si, ix in enumerate(self.index):
            room = ix.episode_end - np.arange(len(ix.episode_end)) + 1 >= seq_len
            in_val = np.isin(ix.episode_id, [e for s, e in val if s == si])
            ix.starts = {
                "train": np.flatnonzero(room & ~in_val),
                "val": np.flatnonzero(room & in_val),
            }

    def num_windows(self, split: str = "train") -> int:
        """How many distinct window starts ``split`` holds."""
        return sum(len(ix.starts[split]) for ix in self.index)

    def sample(
        self, batch_size: int, split: str = "train", rng: np.random.Generator | None = None
    ) -> Batch:
        """``batch_size`` windows drawn uniformly (with replacement) from ``split``."""
        if split not in self.SPLITS:
            raise ReprlError(f"unknown split '{split}'; valid: {', '.join(self.SPLITS)}")
        counts = np.array([len(ix.starts[split]) for ix in self.index])
        if counts.sum() == 0:
            raise ReprlError(
                f"no window of {self.seq_len} steps in the {split} split "
                f"({self.num_episodes[split]} episodes)"
            )
        rng = rng or self.rng
        flat = rng.integers(0, counts.sum(), size=batch_size)
        bounds = np.cumsum(counts)
        seg_of = np.searchsorted(bounds, flat, side="right")
        offsets = flat - (bounds - counts)[seg_of]
        fields: dict[str, np.ndarray] = {}
        for si in np.unique(seg_of):
            rows = np.flatnonzero(seg_of == si)
            part = self._gather(si, self.index[si].starts[split][offsets[rows]])
            for key, value in part.items():
                if key not in fields:
                    fields[key] = np.empty((batch_size, *value.shape[1:]), value.dtype)
                fields[key][rows] = value
        t = torch.from_numpy
        return Batch(
            obs=t(fields["obs"]),
            action=t(fields["action"]),
            reward=t(fields["reward"]),
            terminated=t(fields["terminated"]),
            truncated=t(fields["truncated"]),
            is_first=t(fields["is_first"]),
            valid=torch.ones(fields["reward"].shape, dtype=torch.bool),
            extras={"return_to_go": t(fields["return_to_go"])},
        )

    def _gather(self, si: int, starts: np.ndarray) -> dict[str, np.ndarray]:
        """The windows starting at ``starts`` of segment ``si`` as ``(n, T, ...)`` arrays."""
        seg, ix = self.segments[si], self.index[si]
        steps = starts[:, None] + np.arange(self.seq_len)  # (n, T)
        k = self.frame_stack
        frames = steps[..., None] - np.arange(k - 1, -1, -1)  # (n, T, k), oldest first
        before_start = frames < ix.episode_start[steps][..., None]
        frames = np.where(before_start, steps[..., None], frames)  # any valid index; zeroed
        obs = np.asarray(seg.obs[frames.reshape(-1)])  # a copy: the gathered frames only
        obs = obs.reshape(*frames.shape, *seg.obs.shape[1:])
        if k > 1:  # zero frames before the episode's start; (n, T, k, [C,] H, W) -> k*C
            obs[before_start] = 0
            obs = obs.reshape(*steps.shape, -1, *seg.obs.shape[-2:])
        else:
            obs = obs.reshape(*steps.shape, *seg.obs.shape[1:])
        terminal = np.asarray(seg.terminal, dtype=bool)[steps]
        truncated = ix.ends[steps] & ~terminal
        return {
            "obs": obs,
            "action": np.asarray(seg.action)[steps].astype(np.int64)
            if np.issubdtype(np.asarray(seg.action[:1]).dtype, np.integer)
            else np.asarray(seg.action, dtype=np.float32)[steps],
            "reward": np.asarray(seg.reward, dtype=np.float32)[steps],
            "terminated": terminal,
            "truncated": truncated,
            "is_first": steps == ix.episode_start[steps],
            "return_to_go": ix.return_to_go[steps],
        }

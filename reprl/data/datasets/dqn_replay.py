"""The public Atari DQN-Replay dataset (Agarwal et al. 2020, "An Optimistic Perspective on
Offline Reinforcement Learning"), read in its published layout and memory-mapped.

Layout, per game and run (Dopamine's ``OutOfGraphReplayBuffer`` checkpoints)::

    <root>/<Game>/<run>/replay_logs/$store$_observation_ckpt.<k>.gz   (capacity, 84, 84) uint8
                                    $store$_action_ckpt.<k>.gz        (capacity,) int32
                                    $store$_reward_ckpt.<k>.gz        (capacity,) float32
                                    $store$_terminal_ckpt.<k>.gz      (capacity,) uint8
                                    add_count_ckpt.<k>.gz             () int64 (optional)

Each ``.gz`` file is a gzip stream of one ``.npy`` file (``np.save`` into ``gzip.GzipFile``).
Index ``i`` holds one step: the frame ``observation[i]`` in which ``action[i]`` was taken, the
(clipped) ``reward[i]`` it earned and whether the episode ended with it (``terminal[i]``); a
frame stack is rebuilt from the frames before ``i`` of the same episode.

**Memory:** a shard is 1M frames (7 GB as uint8). Decompressing it with ``np.load`` on the
gzip stream would hold it in RAM, and copying it again into a buffer would hold it twice.
Here each member is streamed once from gzip into an ``.npy`` file in a cache folder (chunked
copy, never whole in memory; written to a temporary name, then renamed, so an interrupted
decompression never leaves a truncated cache file), then opened with ``mmap_mode="r"``: pages
are read from disk as samples touch them. Later runs reuse the cache.

**Order:** the buffer is circular; when ``add_count`` exceeds the capacity the oldest step
sits at ``add_count % capacity``. :func:`load_checkpoint` returns the shard as segments in
time order (two segments when the cursor is inside the array), so that no episode is joined
across the write point; each segment's first episode may have started before it and its last
may continue after it (read as truncated by :mod:`reprl.data.datasets.windows`).
"""

from __future__ import annotations

import gzip
import os
import shutil
import zlib
from pathlib import Path

import numpy as np

from reprl.data.datasets.windows import Segment
from reprl.errors import ReprlError

PREFIX = "$store$_"
ELEMENTS = {
    "observation": np.uint8,
    "action": np.int32,
    "reward": np.float32,
    "terminal": np.uint8,
}
"""The stored arrays of a checkpoint and their dtypes in the published dataset."""


def shard_path(run_dir: str | Path, element: str, checkpoint: int) -> Path:
    """``<run_dir>/$store$_<element>_ckpt.<checkpoint>.gz`` (``run_dir``: the ``replay_logs``
    folder of one game and run)."""
    return Path(run_dir) / f"{PREFIX}{element}_ckpt.{checkpoint}.gz"


def available_checkpoints(run_dir: str | Path) -> list[int]:
    """Checkpoint indices with all four arrays present in ``run_dir``, ascending."""
    run_dir = Path(run_dir)
    found: set[int] | None = None
    for element in ELEMENTS:
        ks = set()
        for p in run_dir.glob(f"{PREFIX}{element}_ckpt.*.gz"):
            stem = p.name[len(f"{PREFIX}{element}_ckpt.") : -len(".gz")]
            if stem.isdigit():
                ks.add(int(stem))
        found = ks if found is None else found & ks
    return sorted(found or ())


def decompress(src: Path, cache_dir: Path, chunk_bytes: int = 1 << 20) -> Path:
    """Stream the gzip file ``src`` into ``cache_dir/<name without .gz>.npy`` (once), and
    return that path. The copy goes through a ``chunk_bytes`` buffer."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    name = src.name[: -len(".gz")] if src.name.endswith(".gz") else src.name
    out = cache_dir / f"{name}.npy"
    stamp = f"{src.stat().st_size}-{int(src.stat().st_mtime)}"
    marker = out.with_name(out.name + ".source")
    if out.is_file() and marker.is_file() and marker.read_text() == stamp:
        return out
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with gzip.open(src, "rb") as fin, open(tmp, "wb") as fout:
            shutil.copyfileobj(fin, fout, chunk_bytes)
        os.replace(tmp, out)
    except (OSError, EOFError, zlib.error) as exc:
        tmp.unlink(missing_ok=True)
        raise ReprlError(f"corrupt or unreadable DQN-Replay file {src}: {exc}") from None
    marker.write_text(stamp)
    return out


def open_array(src: Path, cache_dir: Path, dtype: type) -> np.ndarray:
    """One stored array, memory-mapped from its decompressed cache, checked for its dtype."""
    path = decompress(src, cache_dir)
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        raise ReprlError(f"{src} does not hold a NumPy array: {exc}") from None
    if array.dtype != np.dtype(dtype) and array.ndim:
        raise ReprlError(f"{src}: dtype {array.dtype}, expected {np.dtype(dtype)}")
    return array


def load_checkpoint(
    run_dir: str | Path, checkpoint: int, cache_dir: str | Path | None = None
) -> list[Segment]:
    """The steps of one checkpoint as memory-mapped :class:`Segment` s in time order.

    ``cache_dir`` (default ``<run_dir>/.reprl_cache``) receives the decompressed arrays.
    Raises:
        ReprlError: missing or corrupt files, or arrays of different lengths.
    """
    run_dir = Path(run_dir)
    cache = Path(cache_dir) if cache_dir is not None else run_dir / ".reprl_cache"
    arrays: dict[str, np.ndarray] = {}
    for element, dtype in ELEMENTS.items():
        src = shard_path(run_dir, element, checkpoint)
        if not src.is_file():
            have = available_checkpoints(run_dir)
            raise ReprlError(
                f"DQN-Replay: missing {src.name} in {run_dir} (checkpoints found: "
                f"{have if have else 'none'})"
            )
        arrays[element] = open_array(src, cache, dtype)
    lengths = {k: len(v) for k, v in arrays.items()}
    if len(set(lengths.values())) != 1:
        raise ReprlError(f"DQN-Replay checkpoint {checkpoint} in {run_dir}: lengths {lengths}")
    capacity = lengths["observation"]
    size, cursor = capacity, 0
    count_file = run_dir / f"add_count_ckpt.{checkpoint}.gz"
    if count_file.is_file():
        add_count = int(open_array(count_file, cache, np.int64))
        size = min(add_count, capacity)
        cursor = add_count % capacity if add_count > capacity else 0
    spans = [(cursor, size), (0, cursor)] if cursor else [(0, size)]
    return [
        Segment(
            obs=arrays["observation"][a:b],
            action=arrays["action"][a:b],
            reward=arrays["reward"][a:b],
            terminal=arrays["terminal"][a:b].astype(bool),
        )
        for a, b in spans
        if b > a
    ]


def load_run(
    root: str | Path,
    game: str,
    run: int = 1,
    checkpoints: list[int] | None = None,
    cache_dir: str | Path | None = None,
) -> list[Segment]:
    """Segments of ``checkpoints`` (default: all found) of ``<root>/<game>/<run>/replay_logs``
    (a ``replay_logs`` subfolder is optional: a folder holding the files directly works)."""
    base = Path(root) / game / str(run)
    run_dir = base / "replay_logs" if (base / "replay_logs").is_dir() else base
    if not run_dir.is_dir():
        raise ReprlError(f"DQN-Replay: no folder {run_dir}")
    ks = available_checkpoints(run_dir) if checkpoints is None else checkpoints
    if not ks:
        raise ReprlError(f"DQN-Replay: no complete checkpoint in {run_dir}")
    segments: list[Segment] = []
    for k in ks:
        segments += load_checkpoint(run_dir, k, cache_dir)
    return segments

"""Minari datasets (Farama's offline-RL format, HDF5) as reprl offline data.

``load_minari(dataset_id)`` reads a *local* dataset (``minari.load_dataset``: under
``MINARI_DATASETS_PATH``, default ``~/.minari/datasets``; remote downloads need network) and
returns one :class:`~reprl.data.datasets.windows.Segment` holding every episode back to back:
step ``i``'s observation, action, reward and Minari's ``terminations``/``truncations`` flags
(each episode's final observation, which Minari stores as the ``n + 1``-th, is not a step and
is dropped). An episode that ends without either flag is marked truncated, so windows never
join two episodes. Box observations only (images ``(H, W[, C])`` are moved to ``(C, H, W)``).

Needs the ``minari`` extra (``pip install -e ".[minari]"``: minari with HDF5 support).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from reprl.data.datasets.windows import Segment
from reprl.errors import ReprlError


def _minari():
    try:
        import minari
    except ImportError:
        raise ReprlError(
            'Minari datasets need the minari extra: pip install -e ".[minari]"'
        ) from None
    return minari


def load_minari(dataset_id: str, root: str | Path | None = None) -> Segment:
    """Every episode of the local Minari dataset ``dataset_id`` as one :class:`Segment`.

    ``root`` overrides ``MINARI_DATASETS_PATH`` for this call.
    """
    import os

    minari = _minari()
    previous = os.environ.get("MINARI_DATASETS_PATH")
    if root is not None:
        os.environ["MINARI_DATASETS_PATH"] = str(root)
    try:
        local = minari.list_local_datasets()
        if dataset_id not in local:
            known = ", ".join(sorted(local)) or "none"
            raise ReprlError(f"no local Minari dataset '{dataset_id}'; local: {known}")
        dataset = minari.load_dataset(dataset_id)
        parts: dict[str, list[np.ndarray]] = {k: [] for k in ("obs", "action", "reward", "t", "u")}
        for episode in dataset.iterate_episodes():
            obs = episode.observations
            if isinstance(obs, dict):
                raise ReprlError(f"{dataset_id}: dict observations are not supported")
            n = len(episode.rewards)
            obs = np.asarray(obs[:n])
            if obs.ndim == 4 and obs.shape[-1] in (1, 3, 4):  # (n, H, W, C) -> (n, C, H, W)
                obs = np.moveaxis(obs, -1, 1)
            terminal = np.asarray(episode.terminations, dtype=bool)
            truncated = np.asarray(episode.truncations, dtype=bool)
            if n and not (terminal[-1] or truncated[-1]):
                truncated = truncated.copy()
                truncated[-1] = True
            parts["obs"].append(obs)
            parts["action"].append(np.asarray(episode.actions))
            parts["reward"].append(np.asarray(episode.rewards, dtype=np.float32))
            parts["t"].append(terminal)
            parts["u"].append(truncated)
    finally:
        if root is not None:
            if previous is None:
                os.environ.pop("MINARI_DATASETS_PATH", None)
            else:
                os.environ["MINARI_DATASETS_PATH"] = previous
    if not parts["reward"]:
        raise ReprlError(f"{dataset_id}: the dataset holds no episode")
    return Segment(
        obs=np.concatenate(parts["obs"]),
        action=np.concatenate(parts["action"]),
        reward=np.concatenate(parts["reward"]),
        terminal=np.concatenate(parts["t"]),
        truncated=np.concatenate(parts["u"]),
    )

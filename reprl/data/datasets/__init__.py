"""Offline datasets on disk: reprl's episode format (:mod:`reprl.data.datasets.episodes`)."""

from reprl.data.datasets.episodes import (
    FORMAT_NAME,
    FORMAT_VERSION,
    DatasetError,
    EpisodeWriter,
    action_space_dict,
    iter_episodes,
    load_episodes,
    load_metadata,
)

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "DatasetError",
    "EpisodeWriter",
    "action_space_dict",
    "iter_episodes",
    "load_episodes",
    "load_metadata",
]

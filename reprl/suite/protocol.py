"""What a benchmark protocol is, and the registry of protocols (``reprl suite NAME``).

A :class:`Protocol` names its tasks, the reference scores that normalise them, the default
experiment, and the overrides that turn the experiment into one task's run (``env.id=...``).
Everything else (the runner, the worker, the aggregates) is shared, so a new benchmark is one
small module that registers a Protocol in :data:`SUITES`.

A :class:`Pipeline` chains two protocols over the same tasks: one pretraining run per task
(scored by its probes), then RL runs per task x seed that start from that run's backbone
(``reprl suite pretrain``, :mod:`reprl.suite.pipeline`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from reprl.errors import ConfigError, choices_hint
from reprl.registry import Registry
from reprl.suite.aggregate import Reference


@dataclass(frozen=True)
class Protocol:
    """A benchmark: tasks x seeds of one experiment, scored against reference scores."""

    name: str
    """Registry name (``reprl suite NAME``)."""
    title: str
    """Heading of the tables and the plot."""
    experiment: str
    """Experiment used unless the command names one (``experiment=...``)."""
    tasks: tuple[str, ...]
    """Every task of the benchmark, in table order."""
    references: Mapping[str, Reference]
    """Random and human scores of every task."""
    task_overrides: Callable[[str], list[str]]
    """A task -> the overrides that select it (e.g. ``["env.id=ALE/Pong-v5"]``)."""
    check_tasks: Callable[[Sequence[str]], None]
    """Raises a ReprlError when a task cannot run here (e.g. its ROM is missing)."""
    reserved: tuple[str, ...] = ()
    """Config keys the protocol sets per task (a command may not override them)."""
    task_label: str = "task"
    """What a task is called in tables (``game``)."""

    def select(self, names: Sequence[str] | None) -> list[str]:
        """The tasks to run: all of them, or ``names`` (checked, in benchmark order)."""
        if not names:
            return list(self.tasks)
        for name in names:
            if name not in self.tasks:
                raise ConfigError(
                    f"--games: unknown {self.task_label} '{name}' for {self.name}; "
                    + choices_hint(name, self.tasks)
                )
        return [t for t in self.tasks if t in names]


@dataclass(frozen=True)
class Pipeline:
    """Pretrain -> probe -> finetune over the tasks of a benchmark: per task one pretraining
    run (scored by its probes), then per task x seed one RL run initialised from it (scored
    and normalised by ``finetune``'s references)."""

    name: str
    """Registry name (``reprl suite NAME``)."""
    title: str
    """Heading of the tables and the plot."""
    pretrain: Protocol
    """The pretraining stage: its default experiment and the per-task overrides (env, data)."""
    finetune: Protocol
    """The RL stage over the same tasks: default experiment, per-task overrides, references."""
    init_key: str = "model.backbone.init_from"
    """Config key of a finetuning run that names its pretraining run."""


SUITES: Registry[Protocol | Pipeline] = Registry("suite")
"""Benchmark protocols and pipelines by name."""


def get_suite(name: str) -> Protocol | Pipeline:
    """The registered protocol or pipeline ``name``; unknown names fail listing the valid ones."""
    import reprl.suite.atari100k  # noqa: F401 (registers atari100k and pretrain)

    return SUITES.get(name).obj


def get_protocol(name: str) -> Protocol:
    """The registered single-stage protocol ``name`` (see :func:`get_suite`)."""
    suite = get_suite(name)
    if not isinstance(suite, Protocol):
        raise ConfigError(f"{name}: a pipeline, not a single-stage protocol")
    return suite

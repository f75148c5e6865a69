"""The Optuna side of a sweep: the spec's distributions, sampler and pruner, the study in its
storage, and the recovery of trials an interrupted sweep left behind.

Optuna is imported only inside functions: :func:`require_optuna` says how to install it.
"""

from __future__ import annotations

import inspect
import json
import os
import socket
import time
from typing import Any

from reprl.errors import ConfigError, ReprlError, choices_hint
from reprl.runs.processes import first_difference
from reprl.tools.sweep.spec import SweepSpec

INSTALL_HINT = "optuna is not installed: pip install -e '.[sweep]' (or pip install optuna==5.0.0)"
SETTINGS_ATTR = "reprl_sweep"
"""Study user attribute holding the spec and base overrides the study was started with."""
STALE_AFTER_S = 300.0
"""A running trial whose ``heartbeat`` user attribute is this old is marked failed."""
SAMPLERS = {"random": "RandomSampler", "tpe": "TPESampler"}
"""Spec name -> Optuna sampler class (``grid``: Optuna's GridSampler, see
:func:`_grid_sampler_class`)."""
PRUNERS = {
    "hyperband": "HyperbandPruner",
    "median": "MedianPruner",
    "none": "NopPruner",
    "successive_halving": "SuccessiveHalvingPruner",
    "threshold": "ThresholdPruner",
}
"""Spec name -> Optuna pruner class."""


def require_optuna() -> Any:
    """Import Optuna, or fail in one line saying how to install it."""
    try:
        import optuna
    except ImportError:
        raise ReprlError(INSTALL_HINT) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the sweep prints its own lines
    return optuna


def distributions(spec: SweepSpec) -> dict[str, Any]:
    """The spec's parameters as Optuna distributions."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    out: dict[str, Any] = {}
    for key, p in spec.params.items():
        if p.type == "categorical":
            out[key] = CategoricalDistribution(list(p.choices))
        elif p.type == "float":
            out[key] = FloatDistribution(p.low, p.high, log=p.log, step=p.step)  # type: ignore[arg-type]
        else:
            out[key] = IntDistribution(p.low, p.high, log=p.log, step=p.step or 1)  # type: ignore[arg-type]
    return out


def _construct(
    kind: str, name: str, cls: Any, options: dict[str, Any], args: tuple[Any, ...] = ()
) -> Any:
    """``cls(*args, **options)``; unknown or invalid options fail in one line naming them."""
    valid = list(inspect.signature(cls).parameters)[len(args) :]
    for option in options:
        if option not in valid:
            hint = choices_hint(option, valid)
            raise ConfigError(f"{kind}.{option}: unknown option of the {name} {kind}; {hint}")
    try:
        return cls(*args, **options)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{kind}: {name}: {exc}") from None


def build_sampler(spec: SweepSpec) -> Any:
    """The spec's Optuna sampler (seeded with the spec's ``seed``)."""
    import optuna

    options = {"seed": spec.seed, **spec.sampler_options}
    if spec.sampler == "grid":
        return _construct("sampler", "grid", _grid_sampler_class(), options, (spec.grid,))
    cls = getattr(optuna.samplers, SAMPLERS[spec.sampler])
    return _construct("sampler", spec.sampler, cls, options)


def build_pruner(spec: SweepSpec) -> Any:
    """The spec's Optuna pruner."""
    import optuna

    cls = getattr(optuna.pruners, PRUNERS[spec.pruner])
    return _construct("pruner", spec.pruner, cls, dict(spec.pruner_options))


def _grid_sampler_class() -> Any:
    import optuna

    class AskTellGridSampler(optuna.samplers.GridSampler):
        """Optuna's GridSampler for ask-and-tell. Its ``after_trial`` only calls
        ``study.stop()``, which raises outside ``study.optimize``; the sweep stops by itself
        once the grid is exhausted."""

        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            return None

    return AskTellGridSampler


# ----------------------------------------------------------------------------- study


def open_study(
    url: str, name: str, spec: SweepSpec, base: list[str], sampler: Any, pruner: Any
) -> Any:
    """Create or load the study ``name`` in the storage at ``url``; check that a loaded one was
    started with this spec and these base overrides (saved with the study when created)."""
    import optuna

    settings = {"spec": spec.to_dict(), "overrides": base}
    settings = json.loads(json.dumps(settings))  # plain JSON types, as the storage keeps them
    try:
        storage = optuna.storages.get_storage(url)
    except Exception as exc:  # bad URL, missing driver, unreachable database: sqlalchemy's types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ReprlError(f"--storage {url}: cannot open it: {first}") from None
    study = optuna.create_study(
        storage=storage,
        sampler=sampler,
        pruner=pruner,
        study_name=name,
        direction=spec.direction,
        load_if_exists=True,
    )
    saved = study.user_attrs.get(SETTINGS_ATTR)
    if saved is None:
        study.set_user_attr(SETTINGS_ATTR, settings)
    else:
        diff = first_difference(saved, settings, "the study")
        if diff:
            raise ConfigError(
                f"study '{name}' in {url} was started with other settings "
                f"({diff}): use the same spec and overrides to continue it, or another --out"
            )
    return study


def _pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover(study: Any, sampler_is_grid: bool) -> tuple[int, int]:
    """Fail the trials a dead sweep left running, and enqueue the trials to retry with the
    same parameters; returns (trials marked failed, trials enqueued).

    A running trial is stale when its sweep ran on this host and that process is gone, or
    when its heartbeat is older than :data:`STALE_AFTER_S`. A failed trial is retried unless
    it crashed (it has an ``error``), or, for a grid, always; once (``retry_of``)."""
    from optuna.trial import TrialState

    host, now = socket.gethostname(), time.time()
    failed = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        attrs = t.user_attrs
        if "host" not in attrs:  # not started by reprl sweep
            continue
        # This process starts no trial before this: its own pid on a trial is a reused one.
        mine = attrs["host"] == host
        dead = mine and (attrs.get("pid") == os.getpid() or not _pid_alive(attrs.get("pid")))
        if dead or now - float(attrs.get("heartbeat", now)) > STALE_AFTER_S:
            study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
            failed += 1
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    enqueued = 0
    for t in trials:
        if (
            t.state == TrialState.FAIL
            and "host" in t.user_attrs
            and (sampler_is_grid or "error" not in t.user_attrs)
            and t.number not in retried
            and t.params
        ):
            study.enqueue_trial(dict(t.params), user_attrs={"retry_of": t.number})
            enqueued += 1
    return failed, enqueued

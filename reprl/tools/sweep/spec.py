"""A sweep's search space and search settings, read from YAML and validated on load.

A spec is a file (``sweep=path/to/spec.yaml``) or the name of one shipped in
``reprl/configs/sweep/`` (``sweep=barlow_coef``)::

    params:                       # config key -> distribution
      agent.lr: {type: float, low: 1.0e-4, high: 3.0e-3, log: true}
      agent.num_epochs: {type: int, low: 4, high: 20, step: 4}
      aux.barlow.coef: {type: categorical, choices: [10, 1, 0.1]}
    sampler: tpe                  # tpe | random | grid, or {type: tpe, <options>}
    pruner: median                # median | successive_halving | hyperband | threshold | none
    metric: eval/mean_return      # a key of the runs' metrics.jsonl; its last value is scored
    direction: maximize           # maximize | minimize
    seed: 0                       # the sampler's seed (null: random)
    trials: 20                    # finished trials wanted (default of --trials)

Nothing here imports Optuna: a spec is checked (and its mistakes named in one line) before
Optuna is needed. :mod:`reprl.tools.sweep.sweep` turns it into Optuna objects.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from reprl.errors import ConfigError, choices_hint

SPEC_DIR = Path(__file__).parents[2] / "configs" / "sweep"
"""Where the shipped specs live (``sweep=NAME``)."""
PARAM_TYPES = ("categorical", "float", "int")
SAMPLERS = ("grid", "random", "tpe")
"""Optuna samplers by name (``sampler:``); ``grid`` needs categorical parameters only."""
PRUNERS = ("hyperband", "median", "none", "successive_halving", "threshold")
"""Optuna pruners by name (``pruner:``)."""
DIRECTIONS = ("maximize", "minimize")
SPEC_KEYS = ("direction", "metric", "params", "pruner", "sampler", "seed", "trials")
DEFAULT_TRIALS = 20
"""Finished trials wanted when neither ``--trials`` nor the spec's ``trials`` says (and the
sampler is not ``grid``, whose default is the grid's size)."""
_FIELDS = {
    "float": ("type", "low", "high", "log", "step"),
    "int": ("type", "low", "high", "log", "step"),
    "categorical": ("type", "choices"),
}
# PyYAML reads YAML 1.1, where "1e-4" (no dot) is a string, not a float:
# https://github.com/yaml/pyyaml/issues/173. Numbers written that way are read as floats.
_FLOAT_RE = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
_PLAIN_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_\-./]*")


@dataclass(frozen=True)
class Param:
    """One searched config key and its distribution."""

    key: str
    """Config key set by the trial's override, e.g. ``agent.lr`` or ``aux.barlow.coef``
    (group choices such as ``model/backbone`` work too, with categorical choices)."""
    type: str
    """``float``, ``int`` or ``categorical``."""
    low: float | int | None = None
    """Lower bound, included (float and int)."""
    high: float | int | None = None
    """Upper bound, included (float and int)."""
    log: bool = False
    """Sample uniformly in log space (float and int; needs ``low > 0``)."""
    step: float | int | None = None
    """Discretisation step (float: none by default; int: 1)."""
    choices: tuple[Any, ...] = ()
    """The values of a categorical parameter (numbers, strings, booleans or null)."""


@dataclass(frozen=True)
class SweepSpec:
    """A search space and how to search it."""

    name: str
    """The spec's name (its file name without ``.yaml``); part of the default sweep folder."""
    params: dict[str, Param]
    """Searched config keys, in the file's order."""
    sampler: str = "tpe"
    """Optuna sampler: ``tpe``, ``random`` or ``grid`` (every combination of the
    categorical choices, each once)."""
    sampler_options: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of the sampler (``sampler: {type: tpe, n_startup_trials: 5}``)."""
    pruner: str = "median"
    """Optuna pruner: ``median``, ``successive_halving``, ``hyperband``, ``threshold`` or
    ``none``; it sees every evaluation a run logs (``eval.every_steps``)."""
    pruner_options: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of the pruner (``pruner: {type: median, n_startup_trials: 3}``)."""
    metric: str = "eval/mean_return"
    """Key of the runs' ``metrics.jsonl`` scored: its last value is the trial's value, every
    value an intermediate value for pruning."""
    direction: str = "maximize"
    """``maximize`` or ``minimize`` the metric."""
    seed: int | None = None
    """Seed of the sampler (None: random)."""
    trials: int | None = None
    """Finished trials wanted when ``--trials`` is not given."""

    @property
    def grid(self) -> dict[str, list[Any]]:
        """The grid sampler's search space: each parameter's choices."""
        return {key: list(p.choices) for key, p in self.params.items()}

    @property
    def grid_size(self) -> int:
        """Number of points of the grid (the product of the numbers of choices)."""
        return math.prod(len(p.choices) for p in self.params.values())

    def default_trials(self) -> int:
        """Finished trials wanted without ``--trials``."""
        if self.trials is not None:
            return self.trials
        return self.grid_size if self.sampler == "grid" else DEFAULT_TRIALS

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain data, as YAML would write it (saved with the study)."""
        params = {}
        for key, p in self.params.items():
            if p.type == "categorical":
                params[key] = {"type": p.type, "choices": list(p.choices)}
            else:
                params[key] = {"type": p.type, "low": p.low, "high": p.high, "log": p.log}
                if p.step is not None:
                    params[key]["step"] = p.step
        return {
            "params": params,
            "sampler": {"type": self.sampler, **self.sampler_options},
            "pruner": {"type": self.pruner, **self.pruner_options},
            "metric": self.metric,
            "direction": self.direction,
            "seed": self.seed,
        }


def list_specs() -> list[str]:
    """Names of the shipped specs (``sweep=NAME``)."""
    return sorted(p.stem for p in SPEC_DIR.glob("*.yaml"))


def resolve_spec_path(value: str) -> Path:
    """``sweep=VALUE`` -> the spec file: an existing path, or a shipped spec's name."""
    path = Path(value).expanduser()
    if path.is_file():
        return path
    if path.suffix in (".yaml", ".yml") or "/" in value:
        raise ConfigError(f"sweep={value}: no such file")
    shipped = SPEC_DIR / f"{value}.yaml"
    if not shipped.is_file():
        raise ConfigError(
            f"sweep={value}: unknown spec (a YAML file, or a shipped one: "
            f"{choices_hint(value, list_specs())})"
        )
    return shipped


def load_spec(value: str) -> SweepSpec:
    """Read and validate the spec named by ``sweep=VALUE`` (a path or a shipped name)."""
    path = resolve_spec_path(value)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"sweep spec {path}: not valid YAML{where}") from None
    return parse_spec(data, path.stem, str(path))


def parse_spec(data: Any, name: str, source: str = "sweep spec") -> SweepSpec:
    """Validate the spec's plain data (a YAML mapping) into a :class:`SweepSpec`; mistakes
    raise :class:`ConfigError` naming the key (prefixed by ``source``) and the valid choices."""

    def fail(message: str) -> ConfigError:
        return ConfigError(f"{source}: {message}")

    if not isinstance(data, dict):
        raise fail("expected a mapping with a 'params:' mapping")
    for key in data:
        if key not in SPEC_KEYS:
            raise fail(f"unknown key '{key}'; {choices_hint(str(key), SPEC_KEYS)}")
    raw_params = data.get("params")
    if not isinstance(raw_params, dict) or not raw_params:
        raise fail(
            "params: expected a mapping of config key -> distribution, e.g. "
            "'agent.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}'"
        )
    params: dict[str, Param] = {}
    for key, raw in raw_params.items():
        try:
            params[str(key)] = _parse_param(str(key), raw)
        except ConfigError as exc:
            raise fail(f"params.{key}: {exc}") from None
    sampler, sampler_options = _parse_choice(data.get("sampler", "tpe"), "sampler", SAMPLERS, fail)
    pruner, pruner_options = _parse_choice(data.get("pruner", "median"), "pruner", PRUNERS, fail)
    if sampler == "grid":
        for key, p in params.items():
            if p.type != "categorical":
                raise fail(
                    f"params.{key}: the grid sampler needs categorical parameters "
                    f"({{type: categorical, choices: [...]}}), got type {p.type}"
                )
    metric = data.get("metric", "eval/mean_return")
    if not isinstance(metric, str) or not metric:
        raise fail(
            f"metric: expected a key of metrics.jsonl such as eval/mean_return, got {metric!r}"
        )
    direction = data.get("direction", "maximize")
    if direction not in DIRECTIONS:
        raise fail(f"direction: unknown {direction!r}; {choices_hint(str(direction), DIRECTIONS)}")
    seed = data.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise fail(f"seed: expected an integer or null, got {seed!r}")
    trials = data.get("trials")
    if trials is not None and (
        not isinstance(trials, int) or isinstance(trials, bool) or trials < 1
    ):
        raise fail(f"trials: expected a positive integer, got {trials!r}")
    return SweepSpec(
        name=name,
        params=params,
        sampler=sampler,
        sampler_options=sampler_options,
        pruner=pruner,
        pruner_options=pruner_options,
        metric=metric,
        direction=direction,
        seed=seed,
        trials=trials,
    )


def _parse_choice(
    raw: Any, key: str, valid: tuple[str, ...], fail: Any
) -> tuple[str, dict[str, Any]]:
    """``name`` or ``{type: name, <options>}`` -> (name, options)."""
    options: dict[str, Any] = {}
    if isinstance(raw, dict):
        options = {str(k): v for k, v in raw.items() if k != "type"}
        if "type" not in raw:
            raise fail(f"{key}: a mapping needs 'type' ({', '.join(valid)})")
        raw = raw["type"]
    if raw is None:  # `pruner: null` reads as no pruner
        raw = "none"
    if not isinstance(raw, str) or raw not in valid:
        raise fail(f"{key}: unknown {raw!r}; {choices_hint(str(raw), valid)}")
    return raw, options


def _number(value: Any, what: str, integer: bool) -> float | int:
    if isinstance(value, str) and _FLOAT_RE.fullmatch(value.strip()):
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{what}: expected a number, got {value!r}")
    if integer:
        if float(value) != int(value):
            raise ConfigError(f"{what}: expected an integer, got {value!r}")
        return int(value)
    return float(value)


def _parse_param(key: str, raw: Any) -> Param:
    """One entry of ``params:``; errors name the field (the caller adds the key)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"expected a mapping with 'type' ({', '.join(PARAM_TYPES)}), got {raw!r}")
    kind = raw.get("type")
    if kind not in PARAM_TYPES:
        raise ConfigError(f"type: unknown {kind!r}; {choices_hint(str(kind), PARAM_TYPES)}")
    for name in raw:
        if name not in _FIELDS[kind]:
            raise ConfigError(
                f"unknown field '{name}' for type {kind}; valid: {', '.join(_FIELDS[kind])}"
            )
    if kind == "categorical":
        choices = raw.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ConfigError("choices: expected a non-empty list")
        values = []
        for c in choices:
            if isinstance(c, str) and _FLOAT_RE.fullmatch(c.strip()):
                c = float(c)
            if c is not None and not isinstance(c, (str, int, float, bool)):
                raise ConfigError(f"choices: {c!r} is not a number, string, boolean or null")
            values.append(c)
        if len({repr(v) for v in values}) != len(values):
            raise ConfigError(f"choices: repeated values in {values}")
        return Param(key, kind, choices=tuple(values))
    integer = kind == "int"
    for name in ("low", "high"):
        if name not in raw:
            raise ConfigError(f"{name}: missing (type {kind} needs low and high)")
    low = _number(raw["low"], "low", integer)
    high = _number(raw["high"], "high", integer)
    if not low < high:
        raise ConfigError(f"low must be < high, got low={low}, high={high}")
    log = raw.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"log: expected true or false, got {log!r}")
    step = None if raw.get("step") is None else _number(raw["step"], "step", integer)
    if step is not None and step <= 0:
        raise ConfigError(f"step: must be > 0, got {step}")
    if log and low <= 0:
        raise ConfigError(f"log: needs low > 0, got low={low}")
    if log and step is not None and step != 1:
        raise ConfigError("step: cannot be combined with log: true")
    return Param(key, kind, low=low, high=high, log=log, step=step)


def format_value(value: Any) -> str:
    """A Python value as the right-hand side of a Hydra override (``key=<this>``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    if _PLAIN_RE.fullmatch(text) and text.lower() not in ("true", "false", "null", "nan", "inf"):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def param_overrides(params: dict[str, Any]) -> list[str]:
    """A trial's parameter values as ``key=value`` overrides of ``reprl train``."""
    return [f"{key}={format_value(value)}" for key, value in params.items()]

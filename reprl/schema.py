"""Typed-config validation: dict -> dataclass with one-line errors naming key and choices.

Kept apart from :mod:`reprl.config` so component packages (models, envs, agents) can use it
without importing the top-level config.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
import types
import typing
from functools import cache
from typing import Any

from reprl.errors import ConfigError, choices_hint
from reprl.optim.schedules import Schedule


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp)).replace("typing.", "")


def _convert(tp: Any, value: Any, path: str) -> Any:
    """Check ``value`` against the annotation ``tp`` (coercing int -> float)."""
    if tp is Any:
        return value
    if tp is Schedule:
        return Schedule.from_value(value, path)
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise ConfigError(f"{path}: must not be null")
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, path)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{path}: invalid value {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        return from_dict(tp, value, path)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        (item_tp, *_) = typing.get_args(tp) or (Any,)
        items = [_convert(item_tp, v, f"{path}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif tp is bool or tp is str:
        if isinstance(value, tp):
            return value
    else:
        return value
    raise ConfigError(f"{path}: expected {_type_name(tp)}, got {value!r}")


def _join(path: str, key: object) -> str:
    """Dotted key path; the top-level config has the empty path."""
    return f"{path}.{key}" if path else str(key)


def from_dict(cls: type, data: dict[str, Any], path: str) -> Any:
    """Build dataclass ``cls`` from ``data``; unknown keys and bad types raise ConfigError."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            raise ConfigError(f"{_join(path, key)}: unknown key; {choices_hint(str(key), names)}")
        kwargs[key] = _convert(hints[key], value, _join(path, key))
    obj = cls(**kwargs)
    for f in dataclasses.fields(cls):  # defaults of schedule fields may be plain numbers
        if hints[f.name] is Schedule and not isinstance(getattr(obj, f.name), Schedule):
            setattr(obj, f.name, Schedule.from_value(getattr(obj, f.name), _join(path, f.name)))
    check = getattr(obj, "validate", None)
    if callable(check):
        check(path)
    return obj


def component_config(registry: Any, data: dict[str, Any], path: str) -> tuple[Any, Any]:
    """Resolve ``{"name": ..., **options}`` through ``registry`` -> (entry, typed config)."""
    if not isinstance(data, dict) or "name" not in data:
        raise ConfigError(f"{path}.name: missing; {choices_hint('', registry.names())}")
    try:
        entry = registry.get(data["name"])
    except ConfigError as exc:
        raise ConfigError(f"{path}.name: {exc}") from None
    options = {k: v for k, v in data.items() if k != "name"}
    cfg = from_dict(entry.config_cls, options, path) if entry.config_cls else None
    return entry, cfg


@cache
def field_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings of a dataclass (the string literal after each field)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body  # type: ignore[attr-defined]
        for node, nxt in zip(body, body[1:]):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs

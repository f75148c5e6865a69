"""Explicit name -> component registries (no import paths in YAML, no if/elif factories).

Each registry maps a name used in YAML (``agent: {name: ppo}``) to a component and the typed
config dataclass that documents and validates its options.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from reprl.errors import ConfigError, choices_hint

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered component: the object (class or factory) and its config dataclass."""

    name: str
    obj: T
    config_cls: type | None


class Registry(Generic[T]):
    """A named collection of components of one kind (``"agent"``, ``"backbone"``, ...)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, config_cls: type | None = None) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name`` with its config dataclass."""

        def deco(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._entries[name] = Entry(name, obj, config_cls)
            return obj

        return deco

    def add(self, name: str, obj: T, config_cls: type | None = None) -> None:
        """Register ``obj`` under ``name`` (non-decorator form)."""
        self.register(name, config_cls)(obj)

    def get(self, name: str) -> Entry[T]:
        """Look up ``name``; unknown names raise a ConfigError naming the valid choices."""
        try:
            return self._entries[name]
        except KeyError:
            raise ConfigError(
                f"unknown {self.kind} '{name}'; {choices_hint(name, self._entries)}"
            ) from None

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"


ENVS: Registry[Any] = Registry("env")
BACKBONES: Registry[Any] = Registry("backbone")
NECKS: Registry[Any] = Registry("neck")
HEADS: Registry[Any] = Registry("head")
POLICIES: Registry[Any] = Registry("policy")
AGENTS: Registry[Any] = Registry("agent")
TRAINERS: Registry[Any] = Registry("trainer")
AUXILIARIES: Registry[Any] = Registry("auxiliary")
VECTOR_BACKENDS: Registry[Any] = Registry("vector backend")

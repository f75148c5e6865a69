"""Auxiliary components any agent can switch on: RND (exploration bonus), SSL losses.

Importing this package registers them in ``reprl.registry.AUXILIARIES``."""

from reprl.auxiliaries import barlow, byol, rnd  # noqa: F401

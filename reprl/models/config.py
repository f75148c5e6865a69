"""Typed configuration of the agent model (config group ``model``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ModelConfig:
    """An agent model: backbone -> neck -> policy, each chosen by name from its registry.

    Each part is a mapping with a ``name`` key plus that component's options, as loaded from
    YAML, e.g. ``{"name": "mlp", "hidden_sizes": [64, 64]}``; the options are validated
    against the component's config dataclass by :func:`reprl.models.build_model`. Input sizes
    are inferred from the env, so no config states a dimension twice.
    """

    backbone: dict[str, Any] = field(default_factory=lambda: {"name": "mlp"})
    """Backbone (``reprl list backbones``): observations -> features, e.g. mlp, nature_cnn.
    Every backbone also takes ``init_from`` (pretrained weights) and ``freeze``."""
    neck: dict[str, Any] = field(default_factory=lambda: {"name": "identity"})
    """Neck: temporal integration of features (identity for feed-forward agents)."""
    policy: dict[str, Any] = field(default_factory=lambda: {"name": "actor_critic"})
    """Policy: features -> action distribution and values, e.g. actor_critic."""
    orthogonal_init: bool = True
    """Orthogonal initialisation (CleanRL/SB3): gain sqrt(2) for hidden layers, 0.01 for the
    action output, 1.0 for the value output, biases 0."""
    compile: bool = False
    """Compile the model's forward with ``torch.compile`` (recompiles per new batch shape)."""

"""Agent models: backbones, necks and policies, composed by :func:`build_model`.

Importing this package registers every built-in component in ``BACKBONES``, ``NECKS`` and
``POLICIES``.
"""

from __future__ import annotations

from reprl.models import actor_q, backbones, necks, policies, qpolicy  # noqa: F401  (registration)
from reprl.models.agent import AgentModel
from reprl.models.build import build_model
from reprl.models.config import ModelConfig
from reprl.models.distributions import Categorical, DiagGaussian
from reprl.models.necks import Neck
from reprl.models.policies import PolicyOutput
from reprl.models.qpolicy import QOutput

__all__ = [
    "AgentModel",
    "Categorical",
    "DiagGaussian",
    "ModelConfig",
    "Neck",
    "PolicyOutput",
    "QOutput",
    "build_model",
]

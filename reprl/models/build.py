"""Build an :class:`AgentModel` from a :class:`ModelConfig` and an :class:`EnvSpec`.

Construction conventions: a backbone is ``cls(cfg, spec)``, a neck ``cls(cfg, in_dim)``, a
policy ``cls(cfg, in_dim, spec)``. Each ``in_dim`` is inferred by passing a zero observation
through the parts built so far, so no config states a dimension twice.

Every backbone accepts ``init_from`` and ``freeze`` (:mod:`reprl.models.pretrained`): applied
after initialisation, reported as ``model.init_report``.
"""

from __future__ import annotations

import numpy as np
import torch

from reprl.models.agent import AgentModel
from reprl.models.config import ModelConfig
from reprl.models.layers import orthogonal_init_
from reprl.models.pretrained import init_backbone_
from reprl.registry import BACKBONES, NECKS, POLICIES
from reprl.schema import component_config
from reprl.types import EnvSpec


def zero_obs(spec: EnvSpec) -> torch.Tensor:
    """A zero observation ``(1, 1, *obs_shape)`` of the env's dtype."""
    return torch.from_numpy(np.zeros((1, 1, *spec.obs_shape), dtype=spec.obs_dtype))


@torch.no_grad()
def embedding_dim(backbone: torch.nn.Module, spec: EnvSpec) -> int:
    """The size D of ``backbone``'s features ``(N, T, D)`` for the env's observations (one
    zero observation through it, on the backbone's device): what heads on the backbone
    (auxiliaries, pretraining trainers) are sized from."""
    device = next(iter(backbone.parameters()), torch.empty(0)).device
    features, _ = backbone(zero_obs(spec).to(device))
    return int(features.shape[-1])


def build_model(model_cfg: ModelConfig, spec: EnvSpec, load_pretrained: bool = True) -> AgentModel:
    """Resolve backbone, neck and policy by name, infer their input sizes and initialise.

    Then the backbone's ``init_from`` weights are loaded (unless ``load_pretrained`` is False:
    a resumed run, whose checkpoint restores every weight) and ``freeze`` applied; what was
    done is ``model.init_report`` (an :class:`~reprl.models.pretrained.InitReport`, None when
    neither option is set).

    Raises:
        ConfigError: unknown names or options, naming the key and the valid choices; a
            pretrained backbone of another architecture.
        CheckpointError: ``init_from`` missing, corrupt or not a reprl checkpoint.
    """
    entry, backbone_cfg = component_config(BACKBONES, model_cfg.backbone, "model.backbone")
    backbone = entry.obj(backbone_cfg, spec)
    with torch.no_grad():
        features, _ = backbone(zero_obs(spec))
    entry, cfg = component_config(NECKS, model_cfg.neck, "model.neck")
    neck = entry.obj(cfg, features.shape[-1])
    with torch.no_grad():
        is_first = torch.ones((1, 1), dtype=torch.bool)
        (features, _), _ = neck(features, neck.initial_state(1, features.device), is_first)
    entry, cfg = component_config(POLICIES, model_cfg.policy, "model.policy")
    policy = entry.obj(cfg, features.shape[-1], spec)

    model = AgentModel(backbone, neck, policy)
    if model_cfg.orthogonal_init:
        orthogonal_init_(model)
    # After initialisation, which would overwrite loaded weights; the RNG draws of the fresh
    # parts are the same with or without init_from.
    model.init_report = init_backbone_(model, backbone_cfg, load=load_pretrained)
    if model_cfg.compile:
        # In place, so the result stays an AgentModel (attributes, state_dict keys unchanged).
        model.compile()
    return model

"""Start a model's backbone from pretrained weights, optionally frozen.

Every backbone config inherits :class:`BackboneInit`, so ``model.backbone.init_from=PATH`` and
``model.backbone.freeze=true`` work for any backbone. :func:`init_backbone_` applies them after
the model's own initialisation (which would otherwise overwrite the loaded weights) and returns
an :class:`InitReport` that the training run logs once at start.

Sources: the ``backbone.*`` entries of a reprl checkpoint's ``agent.model`` state (any agent:
a PPO backbone can start a DQN), or ``agent.backbone`` (a backbone state dict alone, as a
pretraining trainer would save it). Only weights move: the new run's observation normaliser
(if any) starts from scratch, so a backbone trained on normalised observations sees
differently scaled inputs until the statistics settle.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from reprl.errors import CheckpointError, ConfigError
from reprl.runs import checkpoint as ckpt

PATH = "model.backbone.init_from"
"""Config key named in errors."""
MAX_NAMED = 4
"""Parameter names listed in an error before ``...``."""


@dataclass(kw_only=True)
class BackboneInit:
    """Options of every backbone: start from pretrained weights, and train or freeze them.

    Backbone configs inherit these fields rather than build.py popping them from the dict:
    the config loader validates (and ``reprl config`` documents) ``model.backbone`` against
    the backbone's own dataclass, so an option every backbone accepts is a field of each.
    ``kw_only`` keeps the backbones' own positional order unchanged.
    """

    init_from: str | None = None
    """Checkpoint file or run folder (its latest checkpoint) whose backbone weights start this
    model; the architecture must match (shapes are checked), neck and policy start fresh. A
    resumed run restores its own weights and does not read this file again."""
    freeze: bool = False
    """Keep the backbone's parameters fixed (``requires_grad=False``, so no optimizer holds
    them): a frozen pretrained encoder, or fixed random features without init_from. Buffers
    (none in the built-in backbones) are not affected."""


@dataclass
class InitReport:
    """What :func:`init_backbone_` did; names are the model's (``backbone.net.layers.0.weight``)."""

    source: str | None
    """Checkpoint the backbone was loaded from (None: not loaded)."""
    loaded: list[str] = field(default_factory=list)
    """State-dict entries copied from ``source`` (parameters and buffers)."""
    frozen: list[str] = field(default_factory=list)
    """Parameters set to ``requires_grad=False``."""
    new: list[str] = field(default_factory=list)
    """Parameters of the whole model that keep their fresh initialisation (neck, policy);
    none on resume, where the run's checkpoint restores them all."""
    skipped: str | None = None
    """Why ``init_from`` was set but not read (resume: the run's checkpoint restores all)."""

    def summary(self) -> str:
        """One line for the console."""
        if self.source is not None:
            text = f"backbone: {len(self.loaded)} tensors loaded from {self.source}"
        elif self.skipped is not None:
            text = f"backbone: init_from not read ({self.skipped})"
        else:
            text = "backbone: fresh initialisation"
        if self.frozen:
            text += f", {len(self.frozen)} parameters frozen"
        if self.new:
            parts = ", ".join(sorted({name.split(".", 1)[0] for name in self.new}))
            text += f"; newly initialised: {len(self.new)} parameters ({parts})"
        return text

    def to_yaml(self) -> str:
        """The report as YAML, fields in order (the run folder's ``backbone_init.yaml``)."""
        return yaml.safe_dump(asdict(self), sort_keys=False)


def backbone_state(state: dict[str, Any], source: Path) -> dict[str, torch.Tensor]:
    """The backbone's state dict (keys relative to the backbone) held by checkpoint ``state``.

    Raises:
        CheckpointError: the checkpoint holds neither ``agent.backbone`` nor ``agent.model``.
    """
    agent = state["agent"]
    if isinstance(agent, dict) and isinstance(agent.get("backbone"), dict):
        return dict(agent["backbone"])
    if isinstance(agent, dict) and isinstance(agent.get("model"), dict):
        prefix = "backbone."
        return {k[len(prefix) :]: v for k, v in agent["model"].items() if k.startswith(prefix)}
    raise CheckpointError(
        f"{PATH}: {source} holds no model weights (agent.model or agent.backbone)"
    )


def _first(names: list[str]) -> str:
    shown = ", ".join(names[:MAX_NAMED])
    return shown + (f", ... ({len(names)} in all)" if len(names) > MAX_NAMED else "")


def load_backbone_(backbone: nn.Module, init_from: str) -> tuple[Path, list[str]]:
    """Copy the backbone weights of checkpoint (or run folder) ``init_from`` into ``backbone``.

    Returns the resolved checkpoint path and the loaded state-dict keys (backbone-relative).

    Raises:
        CheckpointError: missing, corrupt or not a reprl checkpoint (from ``checkpoint.load``).
        ConfigError: a different architecture: missing or unexpected entries, or a shape
            mismatch, naming the parameter, both shapes and the checkpoint's backbone config.
    """
    try:
        path = ckpt.resolve(init_from)
        state = ckpt.load(path)
    except CheckpointError as exc:  # name the key that pointed there
        raise CheckpointError(f"{PATH}: {exc}") from None
    source = backbone_state(state, path)
    saved_model = state["config"].get("model") if isinstance(state["config"], dict) else None
    saved_cfg = saved_model.get("backbone") if isinstance(saved_model, dict) else None
    hint = f" (the checkpoint's backbone: {saved_cfg})" if saved_cfg else ""
    target = backbone.state_dict()
    missing = [k for k in target if k not in source]
    unexpected = [k for k in source if k not in target]
    if missing or unexpected:
        detail = "; ".join(
            f"{what} {_first(names)}"
            for what, names in (("missing", missing), ("unexpected", unexpected))
            if names
        )
        raise ConfigError(f"{PATH}: {path} does not fit this backbone: {detail}{hint}")
    for key, value in target.items():
        if tuple(source[key].shape) != tuple(value.shape):
            raise ConfigError(
                f"{PATH}: backbone.{key} has shape {tuple(source[key].shape)} in {path} but "
                f"{tuple(value.shape)} in this model{hint}"
            )
    backbone.load_state_dict(source)  # copies (and casts) into the existing tensors
    return path, list(target)


def init_backbone_(model: nn.Module, cfg: Any, load: bool = True) -> InitReport | None:
    """Apply the :class:`BackboneInit` options of backbone config ``cfg`` to ``model``.

    Call after the model's initialisation. ``load=False`` (a resumed run, whose checkpoint
    overwrites every weight) skips reading ``init_from`` but still freezes. Returns None when
    neither option is set.
    """
    init_from = getattr(cfg, "init_from", None)
    freeze = bool(getattr(cfg, "freeze", False))
    if not init_from and not freeze:
        return None
    backbone: nn.Module = model.backbone
    report = InitReport(source=None)
    if init_from and load:
        path, keys = load_backbone_(backbone, init_from)
        report.source, report.loaded = str(path), [f"backbone.{k}" for k in keys]
    elif init_from:
        report.skipped = "resumed run: its checkpoint restores every weight"
    if freeze:
        backbone.requires_grad_(False)
        report.frozen = [f"backbone.{name}" for name, _ in backbone.named_parameters()]
    if load:
        loaded = set(report.loaded)
        report.new = [name for name, _ in model.named_parameters() if name not in loaded]
    return report

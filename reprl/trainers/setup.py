"""Build a pretraining run's parts from its config: the trainer (backbone -> head), the
offline Source over the dataset's train split, and the probes on its validation split."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from reprl.data.datasets.config import load_segments
from reprl.data.datasets.windows import WindowSampler
from reprl.envs import make_env_spec
from reprl.errors import ConfigError
from reprl.evaluation.probes import run_probes
from reprl.registry import BACKBONES, TRAINERS
from reprl.schema import component_config
from reprl.trainers.base import OfflineSource, Trainer, TrainerModel
from reprl.types import EnvSpec


def make_pretraining(
    cfg: Any, device: torch.device
) -> tuple[EnvSpec, Trainer, OfflineSource, Callable[[], dict[str, float]]]:
    """``(spec, trainer, source, probe)`` for ``cfg.trainer`` on ``cfg.dataset``.

    The env config gives the spec (observation shape, action count) the pretrained backbone
    will later serve; the dataset's observations must have that shape.
    """
    spec = make_env_spec(cfg.env)
    entry, tcfg = component_config(TRAINERS, cfg.trainer, "trainer")
    if tcfg.debug:  # one batch through forward, backward and update, then one evaluation
        cfg.total_steps = tcfg.batch_size * tcfg.seq_len
        cfg.probe.num_samples = min(cfg.probe.num_samples, 200)
    if cfg.model.backbone.get("init_from") or cfg.model.backbone.get("freeze"):
        raise ConfigError("model.backbone.init_from/freeze: not used by pretraining trainers")
    cfg.dataset.check_usable("dataset")
    segments = load_segments(cfg.dataset)
    stack = cfg.dataset.stack
    split = {"val_frac": cfg.dataset.val_frac, "seed": cfg.dataset.seed}
    sampler = WindowSampler(segments, tcfg.seq_len, stack, **split)
    probe_sampler = WindowSampler(segments, 1, stack, **split)  # the same split by episode
    obs = probe_sampler.sample(1).obs
    if tuple(obs.shape[2:]) != tuple(spec.obs_shape):
        raise ConfigError(
            f"dataset observations are shaped {tuple(obs.shape[2:])} but env {cfg.env.id} "
            f"gives {tuple(spec.obs_shape)} (check env.* and dataset.frame_stack)"
        )
    largest = max(int(s.action.max()) for s in segments if len(s))
    if spec.discrete and largest >= spec.num_actions:
        raise ConfigError(
            f"dataset actions go up to {largest} but env {cfg.env.id} has {spec.num_actions} "
            "actions (full vs minimal action set? see env.atari.full_action_space)"
        )
    b_entry, b_cfg = component_config(BACKBONES, cfg.model.backbone, "model.backbone")
    model = TrainerModel(b_entry.obj(b_cfg, spec)).to(device)
    trainer = entry.obj.build(tcfg, spec, model, device)
    source = OfflineSource(sampler, tcfg.batch_size, device)
    num_actions = spec.num_actions if spec.discrete else 0

    def probe() -> dict[str, float]:
        if not num_actions:
            return {}
        return run_probes(model.backbone, probe_sampler, num_actions, cfg.probe)

    return spec, trainer, source, probe

"""``reprl probe CHECKPOINT|random [experiment=NAME] [dataset=... dataset.K=V probe.K=V]
[--json]``: the light-weight probes (:mod:`reprl.evaluation.probes`) on the frozen backbone of
any checkpoint (a pretraining run's, or an agent's), or on the randomly initialised backbone
of ``experiment`` (``random``: the random-encoder baseline of Zhang et al. 2022).

``experiment=probe_atari`` (or any pretraining experiment) supplies the dataset and probe
settings in place of the run's own.

The dataset is the run's own (``dataset`` in its config, for pretraining runs) unless
overrides choose another: ``dataset=dqn_replay dataset.root=/data dataset.game=Pong``. The
backbone is rebuilt from the run's ``model.backbone`` config for the run's env spec, and loaded
from the checkpoint's ``backbone.*`` weights.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from reprl.errors import ConfigError

DESCRIPTION = (
    "Reward and action linear probes (Zhang et al. 2022) on a checkpoint's frozen backbone: "
    "reprl probe CHECKPOINT [dataset=NAME dataset.root=...] [probe.num_samples=N] [--json]"
)


def _settings(saved: dict[str, Any], overrides: list[str]) -> tuple[Any, Any]:
    """(DatasetConfig, ProbeConfig) from the run's config (or ``experiment=NAME``'s) and
    ``dataset.*``/``probe.*`` overrides."""
    import yaml

    from reprl.data.datasets.config import DatasetConfig
    from reprl.evaluation.probes import ProbeConfig
    from reprl.schema import from_dict

    experiments = [o.split("=", 1)[1] for o in overrides if o.startswith("experiment=")]
    if experiments:
        from reprl.config import compose

        saved = compose([f"experiment={experiments[-1]}"])
    dataset = dict(saved.get("dataset") or {})
    probe = dict(saved.get("probe") or {})
    for text in (o for o in overrides if not o.startswith("experiment=")):
        if "=" not in text:
            raise ConfigError(f"{text}: overrides are dataset=NAME, dataset.KEY=V or probe.KEY=V")
        key, raw = text.split("=", 1)
        value = yaml.safe_load(raw) if raw else None
        if key == "dataset":
            dataset = {"name": value}
        elif key.startswith("dataset."):
            dataset[key[len("dataset.") :]] = value
        elif key.startswith("probe."):
            probe[key[len("probe.") :]] = value
        else:
            raise ConfigError(f"{key}: unknown; valid: dataset, dataset.<key>, probe.<key>")
    data_cfg = from_dict(DatasetConfig, dataset, "dataset")
    data_cfg.check_usable("dataset")
    return data_cfg, from_dict(ProbeConfig, probe, "probe")


def probe_checkpoint(path: str, overrides: list[str]) -> dict[str, float]:
    """The probe scores of the checkpoint's backbone on the chosen dataset."""
    import torch

    from reprl.config import config_from_saved
    from reprl.data.datasets.config import load_segments
    from reprl.data.datasets.windows import WindowSampler
    from reprl.envs import make_env_spec
    from reprl.evaluation.probes import run_probes
    from reprl.registry import BACKBONES
    from reprl.runs import checkpoint as ckpt
    from reprl.schema import component_config

    if path == "random":  # the random-encoder baseline: the experiment's backbone, untrained
        from reprl.config import load_config

        if not any(o.startswith("experiment=") for o in overrides):
            raise ConfigError("probe random needs experiment=NAME (its env and backbone)")
        cfg = load_config(overrides)
        state = {"agent": None}
        data_cfg, probe_cfg = cfg.dataset, cfg.probe
        data_cfg.check_usable("dataset")
    else:
        state = ckpt.load(ckpt.resolve(path))
        cfg = config_from_saved(state["config"])
        data_cfg, probe_cfg = _settings(state["config"], overrides)
    spec = make_env_spec(cfg.env)
    if not spec.discrete:
        raise ConfigError(f"{cfg.env.id}: the action probe needs discrete actions")
    entry, b_cfg = component_config(BACKBONES, cfg.model.backbone, "model.backbone")
    torch.manual_seed(cfg.seed)
    backbone = entry.obj(b_cfg, spec)
    if state["agent"] is None:
        model = backbone.state_dict()
    else:
        model = state["agent"].get("backbone") or {
            k[len("backbone.") :]: v
            for k, v in state["agent"]["model"].items()
            if k.startswith("backbone.")
        }
    try:
        backbone.load_state_dict({k: torch.as_tensor(v) for k, v in model.items()})
    except RuntimeError as exc:
        raise ConfigError(
            f"{path}: backbone weights do not fit: {str(exc).splitlines()[0]}"
        ) from None
    sampler = WindowSampler(
        load_segments(data_cfg), 1, data_cfg.stack, val_frac=data_cfg.val_frac, seed=data_cfg.seed
    )
    return run_probes(backbone, sampler, spec.num_actions, probe_cfg)


def _handler(args: argparse.Namespace) -> int:
    p = argparse.ArgumentParser(prog="reprl probe", description=DESCRIPTION)
    p.add_argument("path", help="run folder or checkpoint, or 'random' (with experiment=)")
    p.add_argument("overrides", nargs="*", help="dataset=NAME dataset.KEY=V probe.KEY=V")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.parse_intermixed_args(args.rest, namespace=args)
    scores = probe_checkpoint(args.path, args.overrides)
    if args.json:
        print(json.dumps(scores))
    else:
        print(
            f"reward probe F1 {scores['probe/reward_f1']:.3f} "
            f"(positive fraction {scores['probe/reward_pos_frac']:.3f}), "
            f"action probe weighted F1 {scores['probe/action_f1']:.3f}"
        )
    return 0


def add_parser(sub: Any) -> None:
    """Add ``reprl probe`` to the ``reprl`` command."""
    p = sub.add_parser(
        "probe",
        help="linear reward/action probes on a checkpoint's frozen backbone: "
        "reprl probe CHECKPOINT [dataset=... ] [--json]",
        description=DESCRIPTION,
    )
    p.add_argument("rest", nargs=argparse.REMAINDER, metavar="args")
    p.set_defaults(fn=_handler)

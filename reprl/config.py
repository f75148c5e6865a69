"""Compose packaged YAML groups with Hydra, then validate them into typed dataclasses.

YAML only composes; every option lives in a dataclass with a docstring per field. Unknown
keys, wrong types and unknown component names fail here, at load time, with one line that
names the key and the valid choices.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reprl.data.datasets.config import DatasetConfig
from reprl.envs.config import EnvConfig
from reprl.errors import ConfigError, choices_hint
from reprl.evaluation.probes import ProbeConfig
from reprl.models.config import ModelConfig
from reprl.optim.schedules import Schedule
from reprl.schema import component_config, field_docs, from_dict

CONFIG_DIR = Path(__file__).parent / "configs"


@dataclass
class EvalConfig:
    """Periodic evaluation on separate envs with the same wrappers (minus score-changing ones)."""

    every_steps: int = 10_000
    """Evaluate every this many env steps (0: only at the end)."""
    episodes: int = 10
    """Episodes per evaluation (run in parallel, one per env)."""
    deterministic: bool = True
    """Act with the distribution's mode instead of sampling."""
    epsilon: float = 0.0
    """Epsilon-greedy evaluation: at each step, each env takes a uniformly random action with
    this probability instead of the agent's (discrete actions only; Dopamine's Atari protocol
    uses 0.001, which also keeps a greedy agent from idling a whole episode away)."""
    at_end: bool = True
    """Also evaluate when training ends."""
    video_every: int = 0
    """Record one evaluation episode every K evaluations (the K-th, 2K-th, ...) to
    ``<run_dir>/videos/step_<n>.mp4``, TensorBoard and wandb; 0: never."""


@dataclass
class CheckpointConfig:
    """Atomic checkpoints in ``<run_dir>/checkpoints``."""

    every_steps: int = 0
    """Save every this many env steps (0: only at the end and on interrupt)."""
    keep_last: int = 3
    """Keep this many most recent periodic checkpoints (the final one is always kept)."""


@dataclass
class LoggerConfig:
    """Where metrics go: metrics.jsonl always, TensorBoard, wandb, the console."""

    tensorboard: bool = True
    """Write TensorBoard event files in the run folder."""
    wandb: bool = False
    """Log to Weights & Biases (the key only ever comes from WANDB_API_KEY)."""
    wandb_project: str = "reprl"
    """wandb project name."""
    wandb_mode: str = "online"
    """wandb mode: online or offline."""
    progress: bool = True
    """Show a live progress bar (steps, SPS, latest return, ETA)."""
    log_every_steps: int = 1000
    """Write the training metrics once per this many env steps, each the mean over the
    iterations since the previous record (0: every iteration, as it is)."""


@dataclass
class TrainConfig:
    """A training run: environment, model, agent and how the run is driven and recorded."""

    name: str = "run"
    """Experiment name (the run folder is runs/<name>-<timestamp>)."""
    seed: int = 1
    """Seed for torch, numpy and the envs (env i of rank r gets seed + r * num_envs + i)."""
    total_steps: int = 100_000
    """Env steps to train for (all envs and ranks together)."""
    device: str = "auto"
    """cpu, cuda, cuda:N, or auto (cuda when available)."""
    torch_threads: int = 0
    """torch intra-op threads (0: torch's default)."""
    cpu_matmul: str = "auto"
    """Kernel of large float32 matrix products on CPU: onednn, default (PyTorch's, MKL) or
    auto (oneDNN on non-Intel x86 CPUs with AVX-512, where MKL runs its AVX2 code; see
    reprl.models.kernels)."""
    run_dir: str | None = None
    """Run folder (default runs/<name>-<timestamp>)."""
    resume: str | None = None
    """Run folder or checkpoint to continue (same run folder, same config)."""
    init_from: str | None = None
    """Checkpoint whose model weights start a new run."""
    init_optimizer: bool = False
    """With init_from: also load the optimizer state."""
    stop_on_solved: bool = False
    """Stop once the evaluation mean reaches the env's reward threshold."""
    env: EnvConfig = field(default_factory=EnvConfig)
    """The environment (config group env)."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """The agent model (config groups model/backbone, model/neck, model/policy)."""
    agent: dict[str, Any] = field(default_factory=lambda: {"name": "ppo"})
    """The RL algorithm with its registry name (config group agent, ``reprl list agents``)."""
    aux: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Auxiliary components by name with their options (``reprl list auxiliaries``), e.g.
    ``aux.rnd.coef=1`` switches RND on; none by default."""
    trainer: dict[str, Any] = field(default_factory=dict)
    """A self-supervised pretraining trainer with its registry name (config group trainer,
    ``reprl list trainers``), e.g. ``trainer=byol``: the run pretrains ``model.backbone`` on
    ``dataset`` instead of training ``agent`` on ``env`` (whose spec still gives the
    observation shape and action count). Empty: RL training."""
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    """The offline dataset pretraining reads (config group dataset)."""
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    """The light-weight probes that evaluate pretraining (Zhang et al. 2022)."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """Periodic evaluation."""
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    """Checkpointing."""
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    """Logging."""


def validate(cfg: TrainConfig) -> None:
    """Resolve every named component so unknown names and options fail at load time."""
    from reprl.envs.factory import check_config as check_env_config
    from reprl.registry import AGENTS, BACKBONES, NECKS, POLICIES

    component_config(AGENTS, cfg.agent, "agent")
    component_config(BACKBONES, cfg.model.backbone, "model.backbone")
    if cfg.model.backbone.get("init_from") == "???":  # an experiment that needs a checkpoint
        raise ConfigError(
            "model.backbone.init_from: required by this experiment; "
            "set model.backbone.init_from=RUN_DIR_OR_CHECKPOINT"
        )
    component_config(NECKS, cfg.model.neck, "model.neck")
    component_config(POLICIES, cfg.model.policy, "model.policy")
    for name, options in cfg.aux.items():
        aux_config(name, options)
    if cfg.trainer:
        from reprl.registry import TRAINERS

        component_config(TRAINERS, cfg.trainer, "trainer")
    check_env_config(cfg.env)  # unknown id/backend, backend that cannot run this id, ...
    if cfg.total_steps <= 0:
        raise ConfigError(f"total_steps: must be positive, got {cfg.total_steps}")
    if cfg.env.num_envs < 1:
        raise ConfigError(f"env.num_envs: must be >= 1, got {cfg.env.num_envs}")
    if cfg.eval.episodes < 1:
        raise ConfigError(f"eval.episodes: must be >= 1, got {cfg.eval.episodes}")
    if not 0.0 <= cfg.eval.epsilon <= 1.0:
        raise ConfigError(f"eval.epsilon: must be in [0, 1], got {cfg.eval.epsilon}")
    if cfg.eval.video_every < 0:
        raise ConfigError(f"eval.video_every: must be >= 0 (0: never), got {cfg.eval.video_every}")
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", cfg.device):
        raise ConfigError(f"device: unknown '{cfg.device}'; valid: auto, cpu, cuda, cuda:N, mps")
    from reprl.models.kernels import check_cpu_matmul

    check_cpu_matmul(cfg.cpu_matmul)
    if cfg.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(f"device={cfg.device} but CUDA is not available here; use device=cpu")
    if cfg.logger.log_every_steps < 0:
        raise ConfigError(
            f"logger.log_every_steps: must be >= 0 (0: every iteration), got "
            f"{cfg.logger.log_every_steps}"
        )
    if cfg.logger.wandb_mode not in ("online", "offline", "disabled"):
        mode = cfg.logger.wandb_mode
        raise ConfigError(f"logger.wandb_mode: unknown '{mode}'; valid: disabled, offline, online")
    if cfg.resume and cfg.init_from:
        raise ConfigError("resume and init_from are exclusive: resume continues a run")


def aux_config(name: str, options: Any) -> tuple[Any, Any]:
    """Resolve auxiliary ``name`` with its ``options`` -> (registry entry, typed config)."""
    from reprl.registry import AUXILIARIES

    if not isinstance(options, dict):
        raise ConfigError(f"aux.{name}: expected a mapping of options, got {options!r}")
    try:
        entry = AUXILIARIES.get(name)
    except ConfigError as exc:
        raise ConfigError(f"aux.{name}: {exc}") from None
    return entry, from_dict(entry.config_cls, options, f"aux.{name}")


# ----------------------------------------------------------------------------- composition


def list_group(group: str) -> list[str]:
    """Options of a packaged config group (``experiment``, ``env``, ``model/backbone`` ...)."""
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def _hydra_error(exc: Exception) -> ConfigError:
    """Turn Hydra/OmegaConf composition errors into one line with the valid choices."""
    msg = str(exc).strip()
    first = msg.splitlines()[0] if msg else type(exc).__name__
    if "Could not find" in msg or "Could not load" in msg:
        # "Could not find 'agent/foo'" or "In 'config': Could not find 'experiment/x'"
        m = re.search(r"Could not (?:find|load) '([^']+)/([^'/]+)'", msg)
        if m:
            group, opt = m.group(1), m.group(2)
            return ConfigError(
                f"{group}={opt}: unknown option; {choices_hint(opt, list_group(group))}"
            )
    if "Key '" in msg and ("not in struct" in msg or "Could not override" in msg):
        m = re.search(r"Could not (?:override|append to) '([^']+)'", msg) or re.search(
            r"full_key: (\S+)", msg
        )
        key = m.group(1) if m else first
        return ConfigError(f"{key}: unknown key; {_valid_keys_hint(key)}")
    return ConfigError(f"invalid override: {first}")


def _valid_keys_hint(key: str) -> str:
    """Valid keys at the parent of a dotted ``key``, from the typed dataclasses."""
    parts = key.split(".")
    cls: Any = TrainConfig
    for part in parts[:-1]:
        hints = typing.get_type_hints(cls) if dataclasses.is_dataclass(cls) else {}
        cls = hints.get(part)
        if cls is None or not dataclasses.is_dataclass(cls):
            return "see `reprl config` for the valid keys"
    names = [f.name for f in dataclasses.fields(cls)]
    return choices_hint(parts[-1], names)


GROUPS = (
    "env",
    "agent",
    "experiment",
    "model/backbone",
    "model/neck",
    "model/policy",
    "trainer",
    "dataset",
)


def _split_overrides(overrides: list[str]) -> tuple[list[str], list[tuple[str, Any]]]:
    """Group choices go to Hydra; ``key=value`` pairs are applied after composition so that
    unknown keys reach the typed validation (which names the valid keys)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    groups: list[str] = []
    values: list[tuple[str, Any]] = []
    for text in overrides:
        if "=" not in text:
            raise ConfigError(f"{text}: overrides are key=value or group=option")
        try:
            (ov,) = parser.parse_overrides([text])
        except Exception as exc:  # hydra's grammar errors
            raise ConfigError(
                f"{text}: cannot parse override ({str(exc).splitlines()[0]})"
            ) from None
        key = ov.key_or_group
        if key in GROUPS or text.startswith(("+", "~")) or "/" in key:
            groups.append(text)
        else:
            values.append((key, ov.value()))
    return groups, values


def compose(overrides: list[str]) -> dict[str, Any]:
    """Compose the packaged YAML groups with Hydra's compose API (no output folders)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    groups, values = _split_overrides(overrides)
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            composed = hydra_compose(config_name="config", overrides=groups)
    except Exception as exc:  # hydra raises many types; all are user mistakes here
        raise _hydra_error(exc) from None
    finally:
        GlobalHydra.instance().clear()
    data = OmegaConf.to_container(composed, resolve=True)
    assert isinstance(data, dict)
    _apply_values(data, values)
    return data


def _apply_values(data: dict[str, Any], values: list[tuple[str, Any]]) -> None:
    """Set dotted ``key=value`` overrides in a nested dict (validated afterwards)."""
    for key, value in values:
        node = data
        *parents, leaf = key.split(".")
        for i, part in enumerate(parents):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"{'.'.join(parents[: i + 1])}: is a value, not a group of keys")
            node = child
        node[leaf] = _plain(value)


def _plain(value: Any) -> Any:
    """Hydra's parsed values (ListConfig-like containers) -> plain Python."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def load_config(overrides: list[str]) -> TrainConfig:
    """Compose ``overrides`` and validate them into a :class:`TrainConfig`.

    With ``resume=RUN_DIR_OR_CHECKPOINT`` the run's saved config is the base instead of the
    YAML groups, and only ``key=value`` overrides apply on top (e.g. ``total_steps=`` to extend
    a run); changing a group choice of a run being continued is an error.
    """
    _import_components()
    resume = [o.split("=", 1)[1] for o in overrides if o.startswith("resume=")]
    if not resume:
        cfg = from_dict(TrainConfig, compose(overrides), "")
    else:
        from reprl.runs import checkpoint as ckpt

        path = ckpt.resolve(resume[-1])
        groups, values = _split_overrides([o for o in overrides if not o.startswith("resume=")])
        if groups:
            raise ConfigError(f"{groups[0]}: a resumed run keeps its config groups")
        data = ckpt.load(path)["config"]
        _apply_values(data, values)
        data["resume"] = str(path)
        cfg = from_dict(TrainConfig, data, "")
    validate(cfg)
    return cfg


def config_from_saved(data: dict[str, Any]) -> TrainConfig:
    """Rebuild a TrainConfig from the resolved dict saved in a run folder or checkpoint."""
    _import_components()
    cfg = from_dict(TrainConfig, data, "")
    validate(cfg)
    return cfg


def to_dict(cfg: Any) -> Any:
    """Dataclasses (and schedules) -> plain dicts for YAML/JSON/checkpoints."""
    if dataclasses.is_dataclass(cfg):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, dict):
        return {k: to_dict(v) for k, v in cfg.items()}
    if isinstance(cfg, (list, tuple)):
        return [to_dict(v) for v in cfg]
    return cfg


def _import_components() -> None:
    """Import the modules whose decorators fill the registries."""
    import reprl.agents  # noqa: F401
    import reprl.auxiliaries  # noqa: F401
    import reprl.envs  # noqa: F401
    import reprl.models  # noqa: F401
    import reprl.trainers  # noqa: F401


# ----------------------------------------------------------------------------- documentation


def describe(cfg: Any, prefix: str = "") -> list[tuple[str, Any, str]]:
    """Flatten a resolved config into (key, value, documentation) rows."""
    from reprl.registry import AGENTS, BACKBONES, NECKS, POLICIES, TRAINERS

    rows: list[tuple[str, Any, str]] = []
    docs = field_docs(type(cfg))
    for f in dataclasses.fields(cfg):
        key, value = f"{prefix}{f.name}", getattr(cfg, f.name)
        registry = {
            "agent": AGENTS,
            "model.backbone": BACKBONES,
            "model.neck": NECKS,
            "model.policy": POLICIES,
            "trainer": TRAINERS,
        }.get(key)
        if registry is not None and (value or key != "trainer"):
            entry, sub = component_config(registry, value, key)
            rows.append((f"{key}.name", entry.name, docs.get(f.name, "")))
            if sub is not None:
                rows.extend(describe(sub, f"{key}."))
        elif dataclasses.is_dataclass(value) and not isinstance(value, Schedule):
            rows.extend(describe(value, f"{key}."))
        else:
            rows.append((key, to_dict(value), docs.get(f.name, "")))
    return rows

"""Build a run from a TrainConfig and drive the one loop: the body of ``reprl train``."""

from __future__ import annotations

import random
import signal
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from reprl import dist
from reprl.agents.base import Agent
from reprl.allocator import keep_freed_memory
from reprl.config import TrainConfig, component_config, to_dict
from reprl.envs import make_vector_env
from reprl.errors import CheckpointError, ConfigError
from reprl.evaluation.evaluate import check_epsilon, evaluate
from reprl.evaluation.probes import ProbeCallback
from reprl.functional import TrainParts, build_agent
from reprl.loop import RunState, run
from reprl.models import build_model
from reprl.models.kernels import set_cpu_matmul
from reprl.registry import AGENTS
from reprl.runs import checkpoint as ckpt
from reprl.runs.callbacks import CheckpointCallback, EvalCallback, LogCallback, Progress
from reprl.runs.logger import Logger, truncate_metrics
from reprl.tools.video import EpisodeRecorder, TrainingVideo

PROBE_KEYS = ("probe/reward_f1", "probe/action_f1")
EVAL_SEED_OFFSET = 1_000_003  # evaluation envs never share seeds with training envs


@dataclass
class TrainResult:
    """What a finished (or stopped) run reports."""

    run_dir: Path
    global_step: int
    final_eval: dict[str, Any] | None
    solved_step: int | None
    stop_reason: str
    checkpoint: Path | None
    rank: int = 0


def make_agent(
    cfg: TrainConfig, spec: Any, device: torch.device, load_pretrained: bool | None = None
) -> Agent:
    """Model from the model config, agent from the agent registry, auxiliaries attached.

    ``load_pretrained``: read the backbone's ``init_from`` weights (default: unless the run
    resumes; a checkpoint about to be loaded restores every weight anyway)."""
    from reprl.config import aux_config

    entry, agent_cfg = component_config(AGENTS, cfg.agent, "agent")
    if load_pretrained is None:
        load_pretrained = not cfg.resume
    model = build_model(cfg.model, spec, load_pretrained=load_pretrained).to(device)
    agent = entry.obj(agent_cfg, spec, model, device)
    if cfg.aux:
        auxiliaries = {}
        for name, options in cfg.aux.items():
            aux_entry, aux_cfg = aux_config(name, options)
            auxiliaries[name] = aux_entry.obj(aux_cfg, spec, model).to(device)
        agent.attach_auxiliaries(auxiliaries)
    return agent


def rng_state(device: torch.device | None = None) -> dict[str, Any]:
    """Global RNG states (torch, NumPy, Python) as checkpointable data.

    On a CUDA ``device`` also that device's generator: tensors drawn on the GPU
    (epsilon-greedy coins, noisy-net noise, dropout) come from it, not from the CPU generator
    that ``torch.get_rng_state`` returns, and a resume that skipped it would draw different
    numbers than the uninterrupted run.
    """
    state = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if device is not None and device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device | None = None) -> None:
    """Restore :func:`rng_state` (the CUDA generator when both the state and ``device`` have
    one: a run saved on a GPU and resumed on the CPU keeps its CPU streams)."""
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


def resolve_run_dir(cfg: TrainConfig) -> Path:
    """``run_dir`` or ``runs/<name>-<timestamp>``."""
    if cfg.run_dir:
        return Path(cfg.run_dir)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{cfg.name}-{stamp}"


def load_resume(cfg: TrainConfig) -> tuple[dict[str, Any], Path]:
    """The saved state of the run to continue, and its run folder."""
    path = ckpt.resolve(cfg.resume)  # type: ignore[arg-type]
    state = ckpt.load(path)
    run_dir = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    return state, run_dir


def train(cfg: TrainConfig, parts: TrainParts | None = None) -> TrainResult:
    """Train until ``total_steps``, solved (with stop_on_solved), NaN or a signal.

    ``parts`` replaces pieces of the pipeline (agent, optimizer, loss, actor, logger): see
    :func:`reprl.make_train`."""
    device = dist.init(cfg.device)
    rank = dist.rank()
    resume_state: dict[str, Any] | None = None
    if cfg.resume:
        resume_state, run_dir = load_resume(cfg)
        cfg.run_dir = str(run_dir)
    else:
        run_dir = resolve_run_dir(cfg)
        taken = (run_dir / "metrics.jsonl").exists() or (run_dir / "checkpoints").exists()
        if taken and dist.is_main():  # other ranks would race rank 0 creating it
            raise ConfigError(
                f"run_dir {run_dir} already holds a run: continue it with resume={run_dir} "
                "or choose another run_dir"
            )
    if cfg.torch_threads > 0:
        torch.set_num_threads(cfg.torch_threads)
    set_cpu_matmul(cfg.cpu_matmul)
    keep_freed_memory()  # no page faults on every step's tensors (reprl.allocator)

    # Identical model initialisation on every rank; envs differ per rank.
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    random.seed(cfg.seed)
    env_seed = cfg.seed + rank * cfg.env.num_envs
    # Pretraining (a trainer) reads a dataset: no envs to step.
    envs = None if cfg.trainer else make_vector_env(cfg.env, seed=env_seed)
    try:
        return _train(cfg, envs, env_seed, device, rank, run_dir, resume_state, parts)
    finally:
        if envs is not None:
            envs.close()


def _train(
    cfg: TrainConfig,
    envs: Any,
    env_seed: int,
    device: torch.device,
    rank: int,
    run_dir: Path,
    resume_state: dict[str, Any] | None,
    parts: TrainParts | None = None,
) -> TrainResult:
    """The body of :func:`train` once the envs exist (they are closed by the caller)."""
    parts = parts or TrainParts()
    probe = None
    if cfg.trainer:  # self-supervised pretraining on an offline dataset
        from reprl.trainers.setup import make_pretraining

        spec, agent, source, probe = make_pretraining(cfg, device)
        dist.broadcast_module(agent.model)
        torch.manual_seed(cfg.seed + rank)
    else:
        spec = envs.spec
        check_epsilon(cfg.eval.epsilon, spec)  # before training, not at the first evaluation
        agent = build_agent(parts, cfg, spec, device)
        dist.broadcast_module(agent.model)
        torch.manual_seed(cfg.seed + rank)  # sampling differs per rank
        if resume_state is None:  # e.g. RND's statistics from random-policy steps
            for aux in agent.auxiliaries.values():
                aux.warmup(envs, env_seed + 104_729)
        source = agent.make_source(envs, env_seed, device)

    config_dict = to_dict(cfg)
    logger: Logger | None = None
    state = RunState(total_steps=cfg.total_steps)
    if cfg.init_from:
        init = ckpt.load(ckpt.resolve(cfg.init_from))
        try:
            agent.load_state_dict(init["agent"], optimizer=cfg.init_optimizer)
        except RuntimeError as exc:
            raise CheckpointError(
                f"init_from {cfg.init_from} does not fit this model: {str(exc).splitlines()[0]}"
            ) from None
    if resume_state is not None:
        agent.load_state_dict(resume_state["agent"])
        if rank == 0:  # the saved envs and RNG are rank 0's; other ranks keep their own
            source.load_state_dict(resume_state["source"])
            set_rng_state(resume_state["rng"], device)
        elif envs is not None:  # but every rank shares the normaliser statistics
            envs.load_normalizer_state(ckpt.normalizer_of(resume_state))
        saved = resume_state["run_state"]
        state.global_step, state.iteration = saved["global_step"], saved["iteration"]
        state.extra = dict(saved["extra"])
        # With a replay buffer the loaded state is as large as the buffer: drop it (for the
        # caller too) now that it is restored, rather than hold it for the whole run.
        resume_state.clear()
    if dist.is_main():
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(yaml.safe_dump(config_dict, sort_keys=False))
        if (report := getattr(agent.model, "init_report", None)) is not None:
            print(report.summary(), flush=True)  # model.backbone init_from / freeze
            if resume_state is None:  # a resumed run keeps the first start's report
                (run_dir / "backbone_init.yaml").write_text(report.to_yaml())
        if resume_state is not None:
            truncate_metrics(run_dir / "metrics.jsonl", state.global_step)
        logger = (parts.make_logger or Logger)(run_dir, cfg.logger, config_dict)

    def make_state() -> dict[str, Any]:
        return {
            "format": 1,
            "config": config_dict,
            "agent": agent.state_dict(),
            "source": source.state_dict(),
            "rng": rng_state(device),
            "run_state": {
                "global_step": state.global_step,
                "iteration": state.iteration,
                "extra": dict(state.extra),
            },
        }

    def run_eval(step: int, recorder: EpisodeRecorder | None = None) -> dict[str, Any]:
        return evaluate(
            agent,
            cfg.env,
            cfg.eval.episodes,
            cfg.eval.deterministic,
            seed=cfg.seed + EVAL_SEED_OFFSET,
            normalizer_state=envs.normalizer_state(),
            recorder=recorder,
            epsilon=cfg.eval.epsilon,
        )

    progress = Progress(cfg.total_steps, state.global_step, cfg.logger.progress and dist.is_main())
    evaluator = EvalCallback(
        run_eval,
        cfg.eval.every_steps,
        spec.reward_threshold,  # env.reward_threshold when set, else the env's own
        cfg.stop_on_solved,
        logger,
        cfg.eval.at_end,
        TrainingVideo(run_dir / "videos", cfg.eval.video_every, spec, logger)
        if cfg.eval.video_every > 0
        else None,
    )
    if probe is not None:  # pretraining is judged by the light-weight probes
        evaluator = ProbeCallback(probe, cfg.probe, logger)
    saver = CheckpointCallback(
        run_dir / "checkpoints", cfg.checkpoint.every_steps, cfg.checkpoint.keep_last, make_state
    )
    callbacks: list[Any] = [LogCallback(logger, progress, cfg.logger.log_every_steps)]
    if dist.is_main():
        # the agent's own callbacks (AlphaZero's arena) come first: logging sees their metrics
        own = agent.callbacks(envs, env_seed) if isinstance(agent, Agent) else []
        callbacks = [*own, *callbacks, evaluator, saver]

    def on_signal(signum: int, frame: Any) -> None:
        if state.stop and state.stop_reason == "interrupted":
            raise KeyboardInterrupt  # second Ctrl-C: give up at once
        state.stop, state.stop_reason = True, "interrupted"

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    start = time.perf_counter()
    try:
        run(agent, source, state, callbacks)
        path = saver.save(state, final=True) if dist.is_main() else None
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        progress.close()
        if logger is not None:
            logger.close()
    divergence, world = dist.max_param_divergence(agent.model), dist.world_size()
    dist.barrier()
    dist.cleanup()
    if logger is not None:
        (run_dir / "summary.yaml").write_text(
            yaml.safe_dump(
                {
                    "global_step": state.global_step,
                    "train_time_s": round(time.perf_counter() - start, 2),
                    "stop_reason": state.stop_reason or "total_steps",
                    "solved_step": state.extra.get("solved_step"),
                    "world_size": world,
                    "param_divergence_across_ranks": divergence,
                    "final_eval": None
                    if evaluator.last is None
                    else {
                        k: evaluator.last[k]
                        for k in ("mean_return", "std_return", "mean_length", *PROBE_KEYS)
                        if k in evaluator.last
                    },
                },
                sort_keys=False,
            )
        )
    return TrainResult(
        run_dir,
        state.global_step,
        evaluator.last,
        state.extra.get("solved_step"),
        state.stop_reason or "total_steps",
        path,
        rank,
    )

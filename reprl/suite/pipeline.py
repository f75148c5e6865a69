"""``reprl suite pretrain``: pretrain -> probe -> finetune over the games of a benchmark.

For every game: (1) one **pretraining** run (``pretrain=EXP``, default ``byol_pretrain_atari``)
on that game's offline data (``dataset.game=<Game>``, ``env.id=<Game>NoFrameskip-v4``), in
``<out>/<Game>/pretrain`` with seed 1; (2) its **probes**: the pretraining run's final probe
scores (``probe/reward_f1``, ``probe/action_f1``; Zhang et al. 2022), which the worker writes to
its ``result.json`` (the same numbers as ``final_eval`` in its ``summary.yaml``); (3) per seed
one **finetuning** RL run (``finetune=EXP``, default ``ppo_finetune_atari``) in
``<out>/<Game>/seed_<s>`` started from that backbone (``model.backbone.init_from=<pretrain
run>``; ``finetune.model.backbone.freeze=true`` freezes it), scored as the single-stage
suites score a run. The runner starts a finetuning run only once its game's pretraining
finished (:attr:`reprl.suite.runner.Job.after`); a failed pretraining blocks its game's runs.

Overrides go to the stage they concern:

- ``pretrain=EXP`` / ``finetune=EXP``: the two experiments;
- ``pretrain.KEY=V`` / ``finetune.KEY=V``: one stage only;
- ``dataset.*``, ``probe.*``, ``trainer.*``: pretraining only; ``agent.*``, ``aux.*``,
  ``eval.*``: finetuning only (the other stage reads none of them);
- anything else (``model.*``, ``env.*``, ``device``, ``torch_threads``, ``logger.*`` ...):
  both stages. ``total_steps`` counts sampled steps in pretraining and env steps in RL, so it
  needs its stage's prefix.

Everything else is the single-stage suite's (:mod:`reprl.suite.suite`): the settings check
(``suite.yaml`` and each run's ``config.yaml``, per stage), the runner (parallel, resumable,
Ctrl-C), the worker, the tables (with the probe F1s of each game's backbone as extra columns)
and the human-normalised aggregates of the finetuned agents.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from reprl.errors import ConfigError
from reprl.suite import aggregate as agg
from reprl.suite.protocol import Pipeline, get_suite
from reprl.suite.runner import Job
from reprl.suite.suite import (
    SuiteRequest,
    _config_dict,
    _key,
    _quote,
    check_options,
    check_reserved,
    check_runs,
    parse_seeds,
    read_scores,
    run_locked,
    settings_config,
    stage_overrides,
    worker_job,
    write_outputs,
)

STAGES = ("pretrain", "finetune")
PRETRAIN_ONLY = ("dataset", "probe", "trainer")
"""Top-level keys only pretraining runs read."""
FINETUNE_ONLY = ("agent", "aux", "eval")
"""Top-level keys only RL runs read."""
STAGE_SPECIFIC = ("total_steps",)
"""Keys whose meaning differs between the stages: they need a ``pretrain.``/``finetune.``
prefix."""
PRETRAIN_SEED = 1
"""Seed of every pretraining run (one per game; the seeds vary the finetuning runs)."""
PROBE_COLUMNS = {"probe_reward_f1": "probe/reward_f1", "probe_action_f1": "probe/action_f1"}
"""Table columns -> keys of a pretraining run's result."""
BACKBONE_LAYOUT_KEYS = ("init_from", "freeze", "channels_last")
"""Backbone options that do not change its weights' shapes."""


@dataclasses.dataclass(frozen=True)
class Plan:
    """A validated pipeline request."""

    pipeline: Pipeline
    tasks: list[str]
    seeds: list[int]
    pretrain_overrides: list[str]
    finetune_overrides: list[str]
    pretrain_cfg: Any
    finetune_cfg: Any


def split_overrides(overrides: Sequence[str]) -> tuple[list[str], list[str]]:
    """Route each override to the pretraining runs, the finetuning runs or both (see the
    module docstring); ``pretrain=EXP`` becomes that stage's ``experiment=EXP``."""
    pre: list[str] = []
    fine: list[str] = []
    for text in overrides:
        key, sign = _key(text), text[: len(text) - len(text.lstrip("+~"))]
        root, _, rest = key.partition(".")
        if key == "experiment":
            raise ConfigError(
                "experiment: a pipeline runs two; name them with pretrain=EXP and finetune=EXP"
            )
        if root in STAGES:
            target = pre if root == "pretrain" else fine
            if not rest:  # pretrain=EXP
                target.append("experiment=" + text.split("=", 1)[1] if "=" in text else text)
            else:  # pretrain.KEY=V -> KEY=V for that stage only
                target.append(sign + text[len(sign) + len(root) + 1 :])
        elif root in STAGE_SPECIFIC:
            raise ConfigError(
                f"{key}: differs between the stages; use pretrain.{key}=N (sampled steps) "
                f"or finetune.{key}=N (env steps)"
            )
        elif root in PRETRAIN_ONLY:
            pre.append(text)
        elif root in FINETUNE_ONLY:
            fine.append(text)
        else:
            pre.append(text)
            fine.append(text)
    return pre, fine


def prepare_pipeline(request: SuiteRequest) -> Plan:
    """Validate a pipeline request once, before anything starts."""
    pipeline = get_suite(request.name)
    assert isinstance(pipeline, Pipeline)
    agg.require_suite_extras()
    seeds, overrides = parse_seeds(request.overrides)
    pre, fine = split_overrides(overrides)
    check_reserved(pre, pipeline.pretrain.reserved)
    check_reserved(fine, pipeline.finetune.reserved)
    check_options(request)
    tasks = pipeline.pretrain.select(request.tasks)
    pre_overrides = stage_overrides(pipeline.pretrain, pre, None)
    fine_overrides = stage_overrides(pipeline.finetune, fine, request.episodes)
    first = tasks[0]
    pre_cfg = load_stage(
        "pretrain", pre_overrides + pipeline.pretrain.task_overrides(first), pipeline
    )
    init = f"{pipeline.init_key}={_quote(Path(first) / 'pretrain')}"  # checked, not read
    fine_cfg = load_stage(
        "finetune", fine_overrides + pipeline.finetune.task_overrides(first) + [init], pipeline
    )
    check_backbones(pre_cfg, fine_cfg)
    pipeline.pretrain.check_tasks(tasks)
    pipeline.finetune.check_tasks(tasks)
    check_datasets(pipeline, tasks, pre_cfg)
    return Plan(pipeline, tasks, seeds, pre_overrides, fine_overrides, pre_cfg, fine_cfg)


def load_stage(stage: str, overrides: list[str], pipeline: Pipeline) -> Any:
    """The validated config of one stage's runs; its errors name the stage, and an
    experiment of the wrong kind (RL for pretraining, or the reverse) fails first."""
    from reprl.config import compose, load_config

    pretraining = stage == "pretrain"
    default = (pipeline.pretrain if pretraining else pipeline.finetune).experiment
    try:
        data = compose(overrides)
    except ConfigError as exc:  # experiment=X: unknown option -> pretrain=X: ...
        text = str(exc)
        raise ConfigError(
            f"{stage}{text[len('experiment') :]}" if text.startswith("experiment=") else text
        ) from None
    if bool(data.get("trainer")) != pretraining:
        kind = "an RL experiment (no trainer)" if pretraining else "a pretraining experiment"
        want = "a pretraining" if pretraining else "an RL"
        raise ConfigError(
            f"{stage}={data.get('name')}: {kind}; name {want} one, e.g. {stage}={default}"
        )
    try:
        return load_config(overrides)
    except ConfigError as exc:
        raise ConfigError(f"{stage} ({data.get('name')}): {exc}") from None


def check_backbones(pre_cfg: Any, fine_cfg: Any) -> None:
    """The finetuning runs build the backbone the pretraining runs save (checked before hours
    of pretraining, not when the first finetuning run loads it)."""
    from reprl.registry import BACKBONES
    from reprl.runs.processes import first_difference
    from reprl.schema import component_config

    def weights_config(cfg: Any) -> dict[str, Any]:
        _, typed = component_config(BACKBONES, cfg.model.backbone, "model.backbone")
        fields = dataclasses.asdict(typed)
        return {"name": cfg.model.backbone["name"]} | {
            k: v for k, v in fields.items() if k not in BACKBONE_LAYOUT_KEYS
        }

    diff = first_difference(weights_config(pre_cfg), weights_config(fine_cfg), "pretraining")
    if diff:
        diff = diff.replace(" saved,", " pretraining,").replace(" now", " finetuning")
        raise ConfigError(
            f"model.backbone differs between pretraining ({pre_cfg.name}) and finetuning "
            f"({fine_cfg.name}): {diff}; set it for both "
            "(model.backbone.KEY=V) or for one stage (finetune.model.backbone.KEY=V)"
        )


def check_datasets(pipeline: Pipeline, tasks: Sequence[str], cfg: Any) -> None:
    """Every game's DQN-Replay folder exists under ``dataset.root`` (one line naming the
    missing ones)."""
    if cfg.dataset.name != "dqn_replay":
        return
    root = Path(cfg.dataset.root)
    games = {}
    for task in tasks:
        options = dict(o.split("=", 1) for o in pipeline.pretrain.task_overrides(task))
        games[task] = options.get("dataset.game", cfg.dataset.game)
    missing = [game for game in games.values() if not (root / game).is_dir()]
    if missing:
        raise ConfigError(
            f"dataset.root: no DQN-Replay data for {', '.join(missing)} in {root} "
            "(expected <root>/<Game>/<run>/replay_logs; choose games with --games)"
        )


def build_pipeline_jobs(
    plan: Plan, out: Path, episodes: int | None
) -> tuple[dict[str, Job], dict[tuple[str, int], Job]]:
    """Per game ``<Game>/pretrain`` and ``<Game>/seed_<s>`` jobs, the latter after the
    former. Listed game by game, so a game's finetuning runs start as soon as its
    pretraining ends, before later games' pretraining."""
    pipeline = plan.pipeline
    pre_jobs, fine_jobs = {}, {}
    for task in plan.tasks:
        pre_dir = out / task / "pretrain"
        pre_key = f"{task}/pretrain"
        pre_jobs[task] = worker_job(
            pre_key,
            pre_dir,
            [
                *plan.pretrain_overrides,
                *pipeline.pretrain.task_overrides(task),
                f"seed={PRETRAIN_SEED}",
            ],
        )
        for seed in plan.seeds:
            fine_jobs[(task, seed)] = worker_job(
                f"{task}/seed_{seed}",
                out / task / f"seed_{seed}",
                [
                    *plan.finetune_overrides,
                    *pipeline.finetune.task_overrides(task),
                    f"seed={seed}",
                    f"{pipeline.init_key}={_quote(pre_dir)}",
                ],
                episodes,
                after=(pre_key,),
            )
    return pre_jobs, fine_jobs


def probe_columns(pre_jobs: dict[str, Job]) -> agg.Columns:
    """The probe F1s of each finished pretraining run, as table columns."""
    results = {
        task: json.loads(job.result.read_text())
        for task, job in pre_jobs.items()
        if job.result.is_file()
    }
    return {
        column: {task: float(r[key]) for task, r in results.items()}
        for column, key in PROBE_COLUMNS.items()
    }


def run_pipeline(request: SuiteRequest, echo: Callable[[str], None]) -> int:
    """Run (or continue) a pipeline and write its tables; the exit code as
    :func:`reprl.suite.suite.run_suite`'s."""
    plan = prepare_pipeline(request)
    pipeline, tasks, seeds = plan.pipeline, plan.tasks, plan.seeds
    names = f"{plan.pretrain_cfg.name} -> {plan.finetune_cfg.name}"
    out = request.out or Path("runs") / (
        f"{pipeline.name}-{plan.pretrain_cfg.name}-{plan.finetune_cfg.name}"
    )
    pre_config = settings_config(_config_dict(plan.pretrain_cfg), pipeline.pretrain)
    fine_config = settings_config(_config_dict(plan.finetune_cfg), pipeline.finetune)
    settings = {
        "suite": pipeline.name,
        "episodes": request.episodes,
        "config": {"pretrain": pre_config, "finetune": fine_config},
    }
    label = pipeline.finetune.task_label
    grid = {
        label + "s": tasks,
        "seeds": seeds,
        "overrides": {"pretrain": plan.pretrain_overrides, "finetune": plan.finetune_overrides},
    }
    pre_jobs, fine_jobs = build_pipeline_jobs(plan, out, request.episodes)
    episodes = request.episodes or plan.finetune_cfg.eval.episodes

    def check() -> None:
        check_runs(pipeline.pretrain, pre_jobs.values(), pre_config, None)
        check_runs(pipeline.finetune, fine_jobs.values(), fine_config, episodes)

    t, s = len(tasks), len(seeds)
    shape = f"{t} {label}{'s' * (t != 1)} x (1 pretraining + {s} finetuning seed{'s' * (s != 1)})"
    subtitle = (
        f"pretraining overrides: `{' '.join(plan.pretrain_overrides)}`; finetuning overrides: "
        f"`{' '.join(plan.finetune_overrides)}`; probe F1s: the pretraining run's final probes "
        "(Zhang et al. 2022); score and HNS: the finetuned agents"
    )

    def write() -> None:
        title = f"{pipeline.title}: {names}, {shape}"
        scores = read_scores(fine_jobs)
        extra = probe_columns(pre_jobs)
        write_outputs(
            pipeline.finetune,
            out,
            tasks,
            seeds,
            scores,
            request.reps,
            names,
            subtitle,
            echo,
            extra,
            title,
        )

    jobs = [j for task in tasks for j in (pre_jobs[task], *(fine_jobs[task, s] for s in seeds))]
    return run_locked(
        out,
        settings,
        grid,
        check,
        f"{pipeline.title}: {names}, {shape} in {out}",
        jobs,
        request.workers,
        write,
        echo,
    )

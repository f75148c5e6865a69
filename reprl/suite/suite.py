"""``reprl suite NAME``: every task x seed of a protocol as independent runs, then the tables.

1. **Validate once.** The overrides (``agent=...``, ``experiment=...``, ``key=value``) are
   composed and validated with :func:`reprl.config.load_config` for the first task, and
   every task's env is checked, before anything starts: a typo fails in one line.
2. **Settings.** ``<out>/suite.yaml`` records the protocol, the evaluation episodes and the
   resolved config every run starts from, without what the suite sets per run (``seed``,
   ``run_dir``, ``resume``, the protocol's per-task keys such as ``env.id``) and without the
   ``logger`` options (they change no score). Running again in the same ``--out`` with other
   settings fails in one line naming the first differing key, instead of mixing results;
   every run already started is checked the same way against its own ``config.yaml`` (so a
   deleted ``suite.yaml`` or a changed default of the code is caught too). The grid
   (``--games``, ``seeds=N``) may change between invocations: it selects runs and changes
   none (``seeds=5`` after ``seeds=3`` adds two seeds per game).
3. **Runs.** ``<out>/<task>/seed_<s>`` per run, each a ``python -m reprl.suite.worker``
   subprocess (:mod:`reprl.suite.runner`: parallel, resumable, logs in ``run.log``; a run is
   finished when its ``result.json`` exists).
4. **Results.** ``results.csv`` (every finished run), ``table.md`` / ``table.csv`` (per-task
   mean raw score over seeds, random and human scores, HNS; the aggregates) and ``hns.png``.
   Aggregates need the whole grid: with runs missing (failed, or stopped), the per-task rows
   are written, the aggregates are not, and a message names the missing runs; the command
   exits 1 when a run failed, 130 when it was interrupted.

A :class:`~reprl.suite.protocol.Pipeline` name (``reprl suite pretrain``) runs
:mod:`reprl.suite.pipeline` instead, built from the same steps (:func:`check_options`,
:func:`stage_overrides`, :func:`worker_job`, :func:`check_runs`, :func:`run_locked`,
:func:`write_outputs`).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

from reprl.errors import ConfigError
from reprl.runs.processes import first_difference
from reprl.suite import aggregate as agg
from reprl.suite.protocol import Pipeline, Protocol, get_protocol, get_suite
from reprl.suite.runner import INTERRUPTED, Job, RunReport, exclusive, has_checkpoint, run_jobs

SETTINGS_FILE = "suite.yaml"
SUITE_KEYS = ("seed", "run_dir", "resume")
"""Config keys the suite sets for every run (a command may not override them)."""
SUITE_DEFAULTS = ("logger.progress=false",)
"""Overrides every run gets before the command's own (logs are files, not terminals)."""


@dataclasses.dataclass
class SuiteRequest:
    """A ``reprl suite`` command line."""

    name: str
    """Protocol name (``atari100k``)."""
    overrides: list[str]
    """``seeds=N`` plus the overrides of ``reprl train`` (group choices and key=value)."""
    out: Path | None = None
    """Output folder (default ``runs/<suite>-<experiment name>``)."""
    workers: int | None = None
    """Runs at a time (default: the cores available)."""
    tasks: list[str] | None = None
    """A subset of the protocol's tasks (default: all)."""
    episodes: int | None = None
    """Dedicated evaluation episodes of each final checkpoint (default: the run's final
    evaluation, ``eval.episodes`` episodes)."""
    reps: int = agg.DEFAULT_REPS
    """Bootstrap replications of each confidence interval."""


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def parse_seeds(overrides: list[str], default: int = 3) -> tuple[list[int], list[str]]:
    """Take ``seeds=N`` (seeds 1..N; default 3) out of ``overrides``."""
    n, rest = default, []
    for text in overrides:
        if _key(text) != "seeds":
            rest.append(text)
            continue
        value = text.split("=", 1)[1] if "=" in text else ""
        if not value.isdigit() or int(value) < 1:
            raise ConfigError(f"seeds: expected a positive integer (seeds 1..N), got '{value}'")
        n = int(value)
    return list(range(1, n + 1)), rest


def _quote(path: Path) -> str:
    """A path as a quoted Hydra override value (spaces, quotes and '=' survive)."""
    return "'" + str(path).replace("\\", "\\\\").replace("'", "\\'") + "'"


def check_settings(out: Path, settings: dict[str, Any]) -> None:
    """Compare ``settings`` with those saved in ``<out>/suite.yaml``; fail on a difference."""
    path = out / SETTINGS_FILE
    if path.is_file():
        saved = yaml.safe_load(path.read_text()) or {}
        saved_settings = {k: saved.get(k) for k in settings}
        diff = first_difference(saved_settings, settings, "the saved suite")
        if diff:
            raise ConfigError(
                f"{out} holds a suite run with other settings ({diff}): use the same settings "
                "to continue it, or another --out"
            )


def save_settings(out: Path, settings: dict[str, Any], grid: dict[str, Any]) -> None:
    """Record the settings and the latest grid in ``<out>/suite.yaml`` (atomically)."""
    path = out / SETTINGS_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump({**settings, **grid}, sort_keys=False))
    tmp.replace(path)


def settings_config(config: dict[str, Any], protocol: Protocol) -> dict[str, Any]:
    """A run's resolved config without what differs between the runs of one suite (seed,
    run folder, the protocol's per-task keys such as env.id, resume) and without the logging
    options, which change no score: what every run of a suite must share."""
    config = {k: v for k, v in config.items() if k not in (*SUITE_KEYS, "logger")}
    for key in protocol.reserved:
        _drop(config, key)
    return config


def check_runs(
    protocol: Protocol, jobs: Iterable[Job], config: dict[str, Any], episodes: int | None
) -> None:
    """Each run already started in the output folder was made with ``config`` (its own
    ``config.yaml``, written by train) and, if finished, scored over ``episodes`` episodes
    (None: not checked, e.g. pretraining runs scored by probes): this holds even when
    ``suite.yaml`` was deleted or the defaults of the code changed."""
    for job in jobs:
        path = job.run_dir / "config.yaml"
        if not (job.result.is_file() or has_checkpoint(job.run_dir)) or not path.is_file():
            continue
        saved = settings_config(yaml.safe_load(path.read_text()) or {}, protocol)
        diff = first_difference(saved, config, "the saved suite")
        if diff is None and episodes is not None and job.result.is_file():
            done = json.loads(job.result.read_text()).get("episodes")
            diff = (
                None if done == episodes else f"evaluation episodes: {done} saved, {episodes} now"
            )
        if diff:
            raise ConfigError(
                f"{job.key} in {job.run_dir.parent.parent} was run with other settings ({diff}): "
                "use the same settings to continue it, or another --out"
            )


def check_options(request: SuiteRequest) -> None:
    """The numeric options of a request are in range."""
    if request.episodes is not None and request.episodes < 1:
        raise ConfigError(f"--episodes: must be >= 1, got {request.episodes}")
    if request.workers is not None and request.workers < 1:
        raise ConfigError(f"--workers: must be >= 1, got {request.workers}")
    if request.reps < 1:
        raise ConfigError(f"--reps: must be >= 1, got {request.reps}")


def check_reserved(overrides: Iterable[str], reserved: tuple[str, ...], prefix: str = "") -> None:
    """No override sets what the suite sets per run (``seed``, ``env.id``, ...)."""
    for text in overrides:
        if _key(text) in SUITE_KEYS + reserved:
            hint = {"seed": " (use seeds=N)", "resume": " (run the same command again)"}
            raise ConfigError(
                f"{prefix}{_key(text)}: set by the suite for each run{hint.get(_key(text), '')}"
            )


def stage_overrides(protocol: Protocol, overrides: list[str], episodes: int | None) -> list[str]:
    """The overrides every run of ``protocol`` starts from: the protocol's experiment unless
    ``overrides`` name one, the suite's defaults, then ``overrides``."""
    base = (
        []
        if any(_key(o) == "experiment" for o in overrides)
        else [f"experiment={protocol.experiment}"]
    )
    run_overrides = [*base, *SUITE_DEFAULTS, *overrides]
    if episodes is not None:  # the dedicated evaluation replaces the final one
        run_overrides.append("eval.at_end=false")
    return run_overrides


def prepare(request: SuiteRequest) -> tuple[Protocol, list[str], list[int], list[str], Any]:
    """Validate a request once: (protocol, tasks, seeds, overrides of every run, config)."""
    from reprl.config import load_config

    protocol = get_protocol(request.name)
    agg.require_suite_extras()
    seeds, overrides = parse_seeds(request.overrides)
    check_reserved(overrides, protocol.reserved)
    check_options(request)
    tasks = protocol.select(request.tasks)
    run_overrides = stage_overrides(protocol, overrides, request.episodes)
    cfg = load_config(run_overrides + protocol.task_overrides(tasks[0]))
    protocol.check_tasks(tasks)
    return protocol, tasks, seeds, run_overrides, cfg


def worker_job(
    key: str,
    run_dir: Path,
    overrides: Sequence[str],
    episodes: int | None = None,
    after: tuple[str, ...] = (),
) -> Job:
    """One ``python -m reprl.suite.worker`` run of ``reprl train`` with ``overrides`` in
    ``run_dir`` (``run_dir=`` is added), resumable from its checkpoint."""
    worker = [sys.executable, "-m", "reprl.suite.worker", "--result"]
    worker += [str(run_dir / "result.json")]
    if episodes is not None:
        worker += ["--episodes", str(episodes)]
    argv = (*worker, "--", *overrides, f"run_dir={_quote(run_dir)}")
    # resume= is read before Hydra parses anything: the raw path, unquoted.
    return Job(key, run_dir, argv, (*worker, "--", f"resume={run_dir}"), after=after)


def build_jobs(
    protocol: Protocol,
    out: Path,
    tasks: list[str],
    seeds: list[int],
    run_overrides: list[str],
    episodes: int | None,
) -> dict[tuple[str, int], Job]:
    """One worker job per (task, seed) in ``<out>/<task>/seed_<s>``."""
    return {
        (task, seed): worker_job(
            f"{task}/seed_{seed}",
            out / task / f"seed_{seed}",
            [*run_overrides, *protocol.task_overrides(task), f"seed={seed}"],
            episodes,
        )
        for task in tasks
        for seed in seeds
    }


def read_scores(jobs: dict[tuple[str, int], Job]) -> list[agg.RunScore]:
    """The score of every finished ``(task, seed)`` job (its ``result.json``)."""
    return [
        agg.RunScore(task, seed, float(json.loads(job.result.read_text())["score"]))
        for (task, seed), job in jobs.items()
        if job.result.is_file()
    ]


def run_locked(
    out: Path,
    settings: dict[str, Any],
    grid: dict[str, Any],
    check: Callable[[], None],
    header: str,
    jobs: Sequence[Job],
    workers: int | None,
    write: Callable[[], None],
    echo: Callable[[str], None],
) -> int:
    """Holding ``out``'s lock: check the saved settings and ``check()`` the runs already
    there, save the settings and grid, run ``jobs``, then ``write()`` the tables (unless
    interrupted). Returns the exit code (0: every job finished; 1: some failed; 130:
    interrupted)."""
    with exclusive(out, "reprl suite"):
        check_settings(out, settings)
        check()
        save_settings(out, settings, grid)
        echo(header)
        report = run_jobs(list(jobs), workers, echo=echo)
        if report.interrupted:
            echo(f"interrupted: run the same command to continue ({out})")
            return INTERRUPTED
        write()
    _report_failures(report, echo)
    return 0 if report.ok else 1


def run_suite(request: SuiteRequest, echo: Callable[[str], None] | None = None) -> int:
    """Run (or continue) a suite and write its tables; returns the exit code (0: every run
    finished; 1: some failed; 130: interrupted)."""
    echo = echo or (lambda line: print(line, flush=True))
    if isinstance(get_suite(request.name), Pipeline):
        from reprl.suite.pipeline import run_pipeline

        return run_pipeline(request, echo)
    protocol, tasks, seeds, run_overrides, cfg = prepare(request)
    out = request.out or Path("runs") / f"{protocol.name}-{cfg.name}"
    config = settings_config(_config_dict(cfg), protocol)
    settings = {"suite": protocol.name, "episodes": request.episodes, "config": config}
    grid = {protocol.task_label + "s": tasks, "seeds": seeds, "overrides": run_overrides}
    jobs = build_jobs(protocol, out, tasks, seeds, run_overrides, request.episodes)
    subtitle = "overrides of every run: `" + " ".join(run_overrides) + "`"

    def write() -> None:
        scores = read_scores(jobs)
        write_outputs(protocol, out, tasks, seeds, scores, request.reps, cfg.name, subtitle, echo)

    return run_locked(
        out,
        settings,
        grid,
        lambda: check_runs(protocol, jobs.values(), config, request.episodes or cfg.eval.episodes),
        f"{protocol.title}: {_grid(protocol, tasks, seeds)} in {out}",
        list(jobs.values()),
        request.workers,
        write,
        echo,
    )


def write_outputs(
    protocol: Protocol,
    out: Path,
    tasks: list[str],
    seeds: list[int],
    scores: list[agg.RunScore],
    reps: int,
    name: str,
    subtitle: str,
    echo: Callable[[str], None],
    extra: agg.Columns | None = None,
    title: str | None = None,
) -> dict[str, agg.Interval] | None:
    """results.csv, table.md, table.csv and hns.png; the aggregates when the grid is full.

    ``name`` (the experiment's) goes into the title (default ``<protocol title>: <name>,
    <grid>``), ``subtitle`` under it in table.md; ``extra`` adds per-task columns (e.g. probe
    scores) to the tables and to each run's row of results.csv."""
    refs = dict(protocol.references)
    label = protocol.task_label
    rows = agg.task_rows(scores, refs, tasks)
    missing = agg.missing_runs(scores, tasks, seeds)
    aggregates, note = None, ""
    if missing:
        names = ", ".join(f"{t}/seed_{s}" for t, s in missing[:6])
        more = f" and {len(missing) - 6} more" if len(missing) > 6 else ""
        note = (
            f"{len(missing)} of {len(tasks) * len(seeds)} runs did not finish ({names}{more}); "
            "rerun the same command to retry them"
        )
    else:
        aggregates = agg.aggregate_hns(agg.hns_matrix(scores, refs, tasks, seeds), reps)
        if len(seeds) == 1:  # a stratified bootstrap resamples runs within each task
            note = "with one seed per task the intervals have zero width"
    title = title or f"{protocol.title}: {name}, {_grid(protocol, tasks, seeds)}"
    agg.write_results_csv(out / "results.csv", scores, refs, label, extra)
    agg.write_table_csv(out / "table.csv", rows, aggregates, label, extra)
    agg.write_table_md(
        out / "table.md", title, rows, aggregates, reps, note, label, subtitle, extra
    )
    agg.plot(out / "hns.png", title, rows, aggregates, label)
    if extra:
        echo(agg.format_rows(rows, extra, label))
    echo(f"tables: {out / 'table.md'}, {out / 'table.csv'}; plot: {out / 'hns.png'}")
    if aggregates is None:
        echo(f"aggregates not computed: {note}")
    else:
        echo(f"{title}, human-normalised score ({reps:,} bootstrap reps):")
        echo(agg.format_aggregates(aggregates) + (f"\n({note})" if note else ""))
    return aggregates


def _grid(protocol: Protocol, tasks: list[str], seeds: list[int]) -> str:
    """``26 games x 3 seeds``."""
    t, s = len(tasks), len(seeds)
    return f"{t} {protocol.task_label}{'s' * (t != 1)} x {s} seed{'s' * (s != 1)}"


def _report_failures(report: RunReport, echo: Callable[[str], None]) -> None:
    for f in report.failed:
        echo(f"FAILED {f.key} (exit {f.returncode}): {f.reason}; log: {f.log}")
    for key in report.blocked:
        echo(f"BLOCKED {key}: a prerequisite did not finish")


def _config_dict(cfg: Any) -> dict[str, Any]:
    from reprl.config import to_dict

    return json.loads(json.dumps(to_dict(cfg)))  # plain JSON types, as YAML saves them


def _drop(data: dict[str, Any], dotted: str) -> None:
    *parents, leaf = dotted.split(".")
    for part in parents:
        data = data.get(part, {})
    data.pop(leaf, None)

"""Scores of a suite -> human-normalised scores, aggregates with confidence intervals, tables
and a plot.

Design (Agarwal et al. 2021, "Deep Reinforcement Learning at the Edge of the Statistical
Precipice", NeurIPS, and their library ``rliable``):

- Each run's score is its raw game score (mean over evaluation episodes). A task's score is
  normalised as ``(score - random) / (human - random)`` (human-normalised score, HNS; Mnih
  et al. 2015), so 0 is a random agent and 1 the average human.
- The aggregates are the mean, the median (of the per-task mean HNS over seeds) and the
  interquartile mean (IQM: the mean of the middle 50% of all ``runs x tasks`` HNS, a 25%
  trimmed mean, ``scipy.stats.trim_mean(proportiontocut=0.25)`` as ``rliable.metrics``),
  each with a 95% *stratified* percentile bootstrap confidence interval: runs are resampled
  with replacement within each task (``rliable.library.get_interval_estimates``, default
  :data:`DEFAULT_REPS` = 50,000 replications, rliable's own default). Agarwal et al.
  recommend IQM with such intervals over the mean (dominated by a few games) and the median
  (unstable with few runs).
- rliable draws its resamples from NumPy's *global* generator (``np.random.choice``; its
  ``random_state`` argument does not reach the resampling), so :func:`aggregate_hns` seeds
  that generator for the call and restores its state afterwards: the same scores always give
  the same intervals.
- Aggregates need the full ``seeds x tasks`` grid (a stratified bootstrap resamples runs per
  task; an aggregate over a subset of the games is not the benchmark's number). With runs
  missing, the per-task table is still written and the aggregates are reported as missing,
  naming the runs (see :func:`missing_runs`).

rliable, arch, pandas and matplotlib are the optional extra ``reprl[suite]``; they are imported
only when aggregating, and :func:`require_suite_extras` turns their absence into one line.
"""

from __future__ import annotations

import contextlib
import csv
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reprl.errors import ReprlError

DEFAULT_REPS = 50_000
"""Bootstrap replications per confidence interval (rliable's default)."""
CI_SIZE = 0.95
"""Coverage of the confidence intervals."""
BOOTSTRAP_SEED = 0
"""Seed of the bootstrap resampling (fixed: the same scores give the same intervals)."""
METRICS = ("Mean", "Median", "IQM")
"""Aggregate metrics, in the order they are reported."""

Columns = Mapping[str, Mapping[str, float]]
"""Extra per-task columns of the tables: column name -> task -> value (e.g. the probe F1 of
each game's pretrained backbone); a task without a value gets an empty cell."""


@dataclass(frozen=True)
class Reference:
    """Reference scores of one task: a uniformly random agent and the average human."""

    random: float
    human: float


@dataclass(frozen=True)
class RunScore:
    """The final score of one finished run."""

    task: str
    seed: int
    score: float


@dataclass(frozen=True)
class Interval:
    """A point estimate with its confidence interval."""

    estimate: float
    low: float
    high: float


@dataclass(frozen=True)
class TaskRow:
    """One row of the per-task table."""

    task: str
    seeds: int
    """Finished runs (seeds) of this task."""
    mean_score: float
    """Raw score averaged over the finished seeds."""
    random: float
    human: float
    hns: float
    """Human-normalised score of ``mean_score`` (= the mean of the per-seed HNS)."""
    hns_per_seed: tuple[float, ...]


def require_suite_extras() -> None:
    """Fail with one line naming the extra to install when rliable or matplotlib is missing."""
    missing = []
    for module in ("rliable.library", "rliable.metrics", "matplotlib"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module.split(".")[0])
    if missing:
        raise ReprlError(
            f"the suite needs {', '.join(dict.fromkeys(missing))} "
            "(rliable==1.2.0, arch==7.2.0, pandas<3, matplotlib): pip install 'reprl[suite]'"
        )


def normalized_score(score: float, ref: Reference) -> float:
    """Human-normalised score ``(score - random) / (human - random)`` (Mnih et al. 2015)."""
    if ref.human == ref.random:
        raise ValueError(f"reference human and random scores are equal ({ref.human})")
    return (score - ref.random) / (ref.human - ref.random)


def task_rows(
    scores: Sequence[RunScore], references: dict[str, Reference], tasks: Sequence[str]
) -> list[TaskRow]:
    """Per-task mean raw score over seeds and its HNS, for tasks with at least one run."""
    rows = []
    for task in tasks:
        raw = [s.score for s in sorted(scores, key=lambda s: s.seed) if s.task == task]
        if not raw:
            continue
        ref = references[task]
        mean = float(np.mean(raw))
        rows.append(
            TaskRow(
                task,
                len(raw),
                mean,
                ref.random,
                ref.human,
                normalized_score(mean, ref),
                tuple(normalized_score(x, ref) for x in raw),
            )
        )
    return rows


def missing_runs(
    scores: Sequence[RunScore], tasks: Sequence[str], seeds: Sequence[int]
) -> list[tuple[str, int]]:
    """``(task, seed)`` pairs of the grid without a score."""
    have = {(s.task, s.seed) for s in scores}
    return [(t, s) for t in tasks for s in seeds if (t, s) not in have]


def hns_matrix(
    scores: Sequence[RunScore],
    references: dict[str, Reference],
    tasks: Sequence[str],
    seeds: Sequence[int],
) -> np.ndarray:
    """HNS as rliable's ``(num_runs, num_tasks)`` matrix; the grid must be complete."""
    by_key = {(s.task, s.seed): s.score for s in scores}
    out = np.empty((len(seeds), len(tasks)))
    for j, task in enumerate(tasks):
        for i, seed in enumerate(seeds):
            out[i, j] = normalized_score(by_key[(task, seed)], references[task])
    return out


@contextlib.contextmanager
def _global_numpy_seed(seed: int) -> Iterator[None]:
    """Seed NumPy's global generator for a block, restoring its previous state after."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def aggregate_hns(
    matrix: np.ndarray, reps: int = DEFAULT_REPS, seed: int = BOOTSTRAP_SEED
) -> dict[str, Interval]:
    """Mean, median and IQM of a ``(num_runs, num_tasks)`` score matrix with 95% stratified
    bootstrap confidence intervals (rliable; Agarwal et al. 2021). One set of ``reps``
    resamples serves all three metrics."""
    require_suite_extras()
    from rliable import library, metrics

    if matrix.ndim != 2 or matrix.size == 0 or not np.isfinite(matrix).all():
        raise ValueError(f"expected a finite (num_runs, num_tasks) matrix, got {matrix.shape}")

    def all_metrics(x: np.ndarray) -> np.ndarray:
        return np.array(
            [metrics.aggregate_mean(x), metrics.aggregate_median(x), metrics.aggregate_iqm(x)]
        )

    with _global_numpy_seed(seed):
        points, intervals = library.get_interval_estimates(
            {"scores": matrix}, all_metrics, reps=reps, confidence_interval_size=CI_SIZE
        )
    point, ci = points["scores"], intervals["scores"]
    return {
        name: Interval(float(point[k]), float(ci[0, k]), float(ci[1, k]))
        for k, name in enumerate(METRICS)
    }


# ----------------------------------------------------------------------------- writers


def _cells(extra: Columns | None, task: str) -> list[str]:
    """The ``extra`` columns' cells of ``task`` (empty where it has no value)."""
    return [_num(col[task]) if task in col else "" for col in (extra or {}).values()]


def write_results_csv(
    path: Path,
    scores: Sequence[RunScore],
    references: dict[str, Reference],
    task_label: str = "task",
    extra: Columns | None = None,
) -> None:
    """``results.csv``: one row per finished run (task, seed, raw score, HNS, then the
    ``extra`` columns of its task)."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([task_label, "seed", "score", "hns", *(extra or {})])
        for s in sorted(scores, key=lambda s: (s.task, s.seed)):
            hns = normalized_score(s.score, references[s.task])
            writer.writerow([s.task, s.seed, _num(s.score), _num(hns), *_cells(extra, s.task)])


def write_table_csv(
    path: Path,
    rows: Sequence[TaskRow],
    aggregates: dict[str, Interval] | None,
    task_label: str = "task",
    extra: Columns | None = None,
) -> None:
    """``table.csv``: per-task rows (the ``extra`` columns after the task), then one row per
    aggregate (its HNS and CI bounds)."""
    blank = [""] * len(extra or {})
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            [
                task_label,
                *(extra or {}),
                "seeds",
                "mean_score",
                "random",
                "human",
                "hns",
                "hns_ci_low",
                "hns_ci_high",
            ]
        )
        for r in rows:
            writer.writerow(
                [
                    r.task,
                    *_cells(extra, r.task),
                    r.seeds,
                    _num(r.mean_score),
                    _num(r.random),
                    _num(r.human),
                    _num(r.hns),
                    "",
                    "",
                ]
            )
        for name, iv in (aggregates or {}).items():
            writer.writerow(
                [
                    f"{name} HNS",
                    *blank,
                    "",
                    "",
                    "",
                    "",
                    _num(iv.estimate),
                    _num(iv.low),
                    _num(iv.high),
                ]
            )


def aggregates_markdown(aggregates: dict[str, Interval] | None, reps: int, note: str = "") -> str:
    """The aggregate table in Markdown (or the reason it is missing)."""
    if aggregates is None:
        return f"Aggregates not computed: {note}\n"
    lines = [
        f"| metric | HNS | {CI_SIZE:.0%} CI |",
        "|---|---|---|",
        *(
            f"| {name} | {iv.estimate:.3f} | [{iv.low:.3f}, {iv.high:.3f}] |"
            for name, iv in aggregates.items()
        ),
        "",
        f"Stratified percentile bootstrap over runs within each task, {reps:,} replications "
        f"(rliable, Agarwal et al. 2021); IQM is the mean of the middle 50% of all run x task "
        "scores." + (f" Note: {note}." if note else ""),
    ]
    return "\n".join(lines) + "\n"


def write_table_md(
    path: Path,
    title: str,
    rows: Sequence[TaskRow],
    aggregates: dict[str, Interval] | None,
    reps: int,
    note: str = "",
    task_label: str = "task",
    subtitle: str = "",
    extra: Columns | None = None,
) -> None:
    """``table.md``: the per-task table (the ``extra`` columns after the task) and the
    aggregate table."""
    cols = extra or {}
    head = "".join(f" {name} |" for name in cols)

    def cells(task: str) -> str:
        return "".join(f" {col[task]:.3f} |" if task in col else " |" for col in cols.values())

    lines = [
        f"# {title}",
        "",
        *([subtitle, ""] if subtitle else []),
        f"| {task_label} |{head} seeds | score (mean over seeds) | random | human | HNS |",
        "|---|" + "---|" * len(cols) + "---|---|---|---|---|",
        *(
            f"| {r.task} |{cells(r.task)} {r.seeds} | {r.mean_score:.1f} | {r.random:.1f} "
            f"| {r.human:.1f} | {r.hns:.3f} |"
            for r in rows
        ),
        "",
        "HNS = (score - random) / (human - random); score = raw game score (no reward "
        "clipping, no episodic life), mean over evaluation episodes.",
        "",
        "## Aggregate human-normalised score",
        "",
        aggregates_markdown(aggregates, reps, note),
    ]
    path.write_text("\n".join(lines))


def format_rows(rows: Sequence[TaskRow], extra: Columns | None, task_label: str = "task") -> str:
    """The per-task table as aligned plain text (for the console)."""
    cols = extra or {}
    width = max([len(task_label), *(len(r.task) for r in rows)])
    head = f"{task_label:<{width}}" + "".join(f" {c:>{max(8, len(c))}}" for c in cols)
    head += f" {'seeds':>5} {'score':>10} {'HNS':>8}"
    body = []
    for r in rows:
        line = f"{r.task:<{width}}" + "".join(
            f" {col[r.task]:>{max(8, len(c))}.3f}" if r.task in col else f" {'':>{max(8, len(c))}}"
            for c, col in cols.items()
        )
        body.append(line + f" {r.seeds:>5} {r.mean_score:>10.1f} {r.hns:>8.3f}")
    return "\n".join([head, *body])


def format_aggregates(aggregates: dict[str, Interval]) -> str:
    """The aggregate table as aligned plain text (for the console)."""
    head = f"{'metric':<8} {'HNS':>8}   {CI_SIZE:.0%} CI"
    body = [
        f"{name:<8} {iv.estimate:>8.3f}   [{iv.low:.3f}, {iv.high:.3f}]"
        for name, iv in aggregates.items()
    ]
    return "\n".join([head, *body])


def plot(
    path: Path,
    title: str,
    rows: Sequence[TaskRow],
    aggregates: dict[str, Interval] | None,
    task_label: str = "task",
) -> None:
    """PNG: aggregate point estimates with CI bars (left) and per-task HNS (right: bars are
    the mean over seeds, dots the seeds; the dashed line is human level)."""
    # The object-oriented API renders with Agg without touching pyplot's global backend.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, max(4.0, 0.28 * len(rows) + 1.5)), layout="constrained")
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2, width_ratios=[1, 2])
    if aggregates:
        names = list(aggregates)[::-1]
        est = np.array([aggregates[n].estimate for n in names])
        err = np.array(
            [
                [aggregates[n].estimate - aggregates[n].low for n in names],
                [aggregates[n].high - aggregates[n].estimate for n in names],
            ]
        )
        left.errorbar(est, range(len(names)), xerr=err, fmt="o", capsize=6, color="tab:blue")
        left.set_yticks(range(len(names)), names)
        left.set_ylim(-0.6, len(names) - 0.4)
        left.set_xlabel(f"human-normalised score ({CI_SIZE:.0%} CI)")
        left.set_title("aggregates")
    else:
        left.text(0.5, 0.5, "aggregates not computed:\nruns missing", ha="center", va="center")
        left.set_axis_off()
    ordered = sorted(rows, key=lambda r: r.hns)
    y = np.arange(len(ordered))
    right.barh(y, [r.hns for r in ordered], color="tab:gray", alpha=0.6)
    for k, r in enumerate(ordered):
        right.plot(r.hns_per_seed, [k] * len(r.hns_per_seed), "o", ms=3, color="tab:blue")
    right.axvline(1.0, ls="--", color="tab:red", lw=1)
    right.set_yticks(y, [r.task for r in ordered])
    right.set_xlabel("human-normalised score")
    right.set_title(f"per {task_label} (bars: mean over seeds; dots: seeds)")
    fig.suptitle(title)
    fig.savefig(path, dpi=100)


def _num(x: float) -> str:
    """Compact, lossless-enough text for CSV cells."""
    return "nan" if math.isnan(x) else f"{x:.10g}"

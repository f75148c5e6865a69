"""``reprl plot``: learning curves of several runs, seeds grouped by experiment.

Runs are read from their folders (``metrics.jsonl`` and ``config.yaml``); a folder that holds
no ``metrics.jsonl`` itself stands for every run below it (a suite's or a sweep's output).

Grouping: runs are grouped by the ``name`` of their config.yaml (seeds of one experiment);
runs of one name whose configs differ in other values than the seed and bookkeeping keys
(``run_dir``, ``logger``, ``checkpoint``, ...), such as a sweep's trials, split into groups
labelled with the differing keys.

Each run's series (optionally smoothed by a trailing moving average of ``smooth`` points) is
linearly interpolated on a grid of :data:`GRID_POINTS` x values spanning the group's runs. A run
contributes only inside its own x range (a run stopped early when solved drops out of the mean
after its last record). The curve is the mean over the runs present at each x; the band is the
95% Student-t confidence interval of that mean over seeds, ``mean +- t(0.975, n-1) s / sqrt(n)``
(drawn where at least two seeds are present). The t-interval is used rather than a bootstrap
because a bootstrap over 2-5 seeds cannot resample enough distinct sets to be meaningful.
"""

from __future__ import annotations

import argparse
import json
import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from reprl.errors import ReprlError

DEFAULT_METRIC = "charts/episodic_return"
X_AXES = ("global_step", "wall_time")
GRID_POINTS = 200
"""Number of x values of the common interpolation grid of a group."""
IGNORED_KEYS = ("seed", "run_dir", "resume", "logger", "checkpoint", "device", "torch_threads")
"""Top-level config keys that do not make two runs different experiments."""
# Two-sided 95% Student-t quantiles t(0.975, df) for df = 1..30; beyond, the normal 1.96.
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


@dataclass
class Run:
    """One run folder: its resolved config (``{}`` if missing) and its metric records."""

    path: Path
    config: dict[str, Any]
    records: list[dict[str, Any]]
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The experiment's ``name`` from config.yaml (the folder's name without one)."""
        return str(self.config.get("name") or self.path.name)

    @property
    def seed(self) -> int | None:
        seed = self.config.get("seed")
        return int(seed) if isinstance(seed, int) else None

    def metrics(self) -> set[str]:
        """Every numeric metric key logged by this run."""
        return {k for r in self.records for k, v in r.items() if _number(v) is not None}

    def series(self, metric: str, x: str = "global_step") -> tuple[np.ndarray, np.ndarray]:
        """``(xs, ys)`` of the records holding a finite ``metric``, sorted by x."""
        pairs = [
            (_number(r.get(x)), _number(r.get(metric)))
            for r in self.records
            if metric in r and x in r
        ]
        pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
        pairs.sort(key=lambda p: p[0])
        xs = np.array([p[0] for p in pairs], np.float64)
        ys = np.array([p[1] for p in pairs], np.float64)
        return xs, ys


@dataclass
class Curve:
    """One group's curve on its common grid: mean and 95% t-interval over ``runs``."""

    label: str
    runs: list[Path]
    x: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    count: np.ndarray
    """Number of runs contributing at each x."""


def _number(value: Any) -> float | None:
    """A finite float, or None (non-finite values are logged as strings)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


# ----------------------------------------------------------------------------- reading runs
def find_runs(paths: Iterable[str | Path]) -> list[Path]:
    """Run folders named by ``paths``: each one itself when it holds ``metrics.jsonl``, else
    every folder below it that does (sorted). Raises ReprlError for a path holding no run."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.is_dir():
            raise ReprlError(f"{path} is not a folder (give run folders or their parent)")
        if (path / "metrics.jsonl").is_file():
            found.append(path)
            continue
        below = sorted(p.parent for p in path.rglob("metrics.jsonl"))
        if not below:
            raise ReprlError(f"{path} holds no run (no metrics.jsonl in it or below it)")
        found.extend(below)
    unique: dict[Path, None] = {}
    for p in found:
        unique.setdefault(p.resolve(), None)
    return list(unique)


def read_run(path: Path) -> Run:
    """Load a run folder's config.yaml, metrics.jsonl and summary.yaml (the last two are
    tolerant of a partly written last line, as in a run still going)."""
    records: list[dict[str, Any]] = []
    for line in (path / "metrics.jsonl").read_text().splitlines():
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    config = _read_yaml(path / "config.yaml")
    summary = _read_yaml(path / "summary.yaml")
    return Run(path, config, records, summary)


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def load_runs(paths: Iterable[str | Path]) -> list[Run]:
    """:func:`read_run` of every run :func:`find_runs` finds."""
    return [read_run(p) for p in find_runs(paths)]


# ----------------------------------------------------------------------------- grouping
def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: json.dumps(data, sort_keys=True, default=str)}


def group_runs(runs: Sequence[Run]) -> dict[str, list[Run]]:
    """Runs grouped by experiment ``name``, and within a name by the config values that
    differ (a sweep's trials); keyed by a label: the name, plus the differing keys when a name
    splits. Only keys present in every run of the name count, so that runs made before a config
    key was added still group together; seed and bookkeeping keys never count."""
    by_name: dict[str, list[Run]] = {}
    for run in runs:
        by_name.setdefault(run.name, []).append(run)
    labelled: dict[str, list[Run]] = {}
    for name, members in by_name.items():
        flats = [
            _flatten({k: v for k, v in r.config.items() if k not in IGNORED_KEYS}) for r in members
        ]
        common = set.intersection(*(set(f) for f in flats))
        varying = sorted(k for k in common if len({f[k] for f in flats}) > 1)
        groups: dict[tuple[str, ...], list[Run]] = {}
        for run, flat in zip(members, flats):
            groups.setdefault(tuple(flat[k] for k in varying), []).append(run)
        for values, group in groups.items():
            label = name
            if varying:
                shown = [f"{k}={json.loads(v)}" for k, v in zip(varying[:3], values)]
                label += f" ({', '.join(shown)}{', ...' if len(varying) > 3 else ''})"
            labelled[label] = group
    return dict(sorted(labelled.items()))


# ----------------------------------------------------------------------------- curves
def t_quantile(df: int) -> float:
    """t(0.975, df) for the two-sided 95% interval."""
    return _T975[df - 1] if df <= len(_T975) else 1.96


def smooth_series(ys: np.ndarray, k: int) -> np.ndarray:
    """Trailing moving average over ``k`` points (the first points average what exists)."""
    if k <= 1 or len(ys) == 0:
        return ys
    cumsum = np.cumsum(np.insert(ys, 0, 0.0))
    idx = np.arange(1, len(ys) + 1)
    start = np.maximum(idx - k, 0)
    return (cumsum[idx] - cumsum[start]) / (idx - start)


def group_curve(label: str, runs: Sequence[Run], metric: str, x: str, smooth: int) -> Curve:
    """The mean curve and 95% t-interval of ``runs`` (see the module docstring)."""
    series = [run.series(metric, x) for run in runs]
    series = [(xs, smooth_series(ys, smooth)) for xs, ys in series if len(xs)]
    lo = min(xs[0] for xs, _ in series)
    hi = max(xs[-1] for xs, _ in series)
    grid = np.linspace(lo, hi, GRID_POINTS) if hi > lo else np.array([lo])
    values = np.full((len(series), len(grid)), np.nan)
    for i, (xs, ys) in enumerate(series):
        inside = (grid >= xs[0]) & (grid <= xs[-1])
        values[i, inside] = np.interp(grid[inside], xs, ys)
    count = np.sum(~np.isnan(values), axis=0)
    with warnings.catch_warnings():  # "mean of empty slice" where no run covers x
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(values, axis=0)
        std = np.nanstd(values, axis=0, ddof=1)
    half = np.array(
        [
            t_quantile(int(n) - 1) * s / math.sqrt(n) if n >= 2 else np.nan
            for n, s in zip(count, std)
        ]
    )
    return Curve(label, [r.path for r in runs], grid, mean, mean - half, mean + half, count)


def curves(
    run_dirs: Iterable[str | Path],
    metric: str = DEFAULT_METRIC,
    x: str = "global_step",
    smooth: int = 1,
) -> list[Curve]:
    """One :class:`Curve` per experiment group of the runs in ``run_dirs`` (runs without
    ``metric`` are left out). Raises ReprlError for an unknown metric or x axis."""
    if x not in X_AXES:
        raise ReprlError(f"--x: unknown '{x}'; valid: {', '.join(X_AXES)}")
    if smooth < 1:
        raise ReprlError(f"--smooth must be >= 1, got {smooth}")
    runs = load_runs(run_dirs)
    present = set().union(*(run.metrics() for run in runs))
    if metric not in present:
        shown = sorted(present - set(X_AXES))
        raise ReprlError(f"unknown metric '{metric}'; metrics present: {', '.join(shown)}")
    result = []
    for label, members in group_runs(runs).items():
        with_metric = [r for r in members if len(r.series(metric, x)[0])]
        if with_metric:
            result.append(group_curve(label, with_metric, metric, x, smooth))
    return result


def plot_runs(
    run_dirs: Iterable[str | Path],
    metric: str = DEFAULT_METRIC,
    x: str = "global_step",
    out: str | Path = "plot.png",
    smooth: int = 1,
) -> Path:
    """Plot the learning curves of ``run_dirs`` (see the module docstring) to ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = curves(run_dirs, metric, x, smooth)
    fig = draw(groups, metric, x)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def draw(groups: Sequence[Curve], metric: str, x: str) -> Any:
    """A matplotlib figure of ``groups`` (one line and band each)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for curve in groups:
        n = len(curve.runs)
        (line,) = ax.plot(curve.x, curve.mean, label=f"{curve.label} (n={n})")
        band = curve.count >= 2
        if band.any():
            ax.fill_between(
                curve.x, curve.low, curve.high, where=band, alpha=0.2, color=line.get_color()
            )
    ax.set_xlabel("environment steps" if x == "global_step" else "wall time (s)")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric}: mean over seeds, 95% t-interval")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- CLI
def _cmd(args: argparse.Namespace) -> int:
    out = plot_runs(args.runs, args.metric, args.x, args.out, args.smooth)
    print(f"wrote {out}")
    return 0


def add_parser(sub: Any) -> None:
    """Add ``reprl plot`` to the CLI's subparsers."""
    p = sub.add_parser(
        "plot",
        help="learning curves of runs (mean over seeds, 95%% t-interval): reprl plot RUN_DIR...",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders or their parents")
    p.add_argument(
        "--metric", default=DEFAULT_METRIC, help=f"metric key (default {DEFAULT_METRIC})"
    )
    p.add_argument(
        "--x", default="global_step", choices=X_AXES, help="x axis (default global_step)"
    )
    p.add_argument("--out", default="plot.png", metavar="FILE.png", help="default plot.png")
    p.add_argument("--smooth", type=int, default=1, metavar="K", help="moving average of K points")
    p.set_defaults(fn=_cmd)

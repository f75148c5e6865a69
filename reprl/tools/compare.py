"""``reprl compare``: one table row per run, read from its folder.

Columns: experiment (config ``name``), seed, env steps (the last ``global_step``), final and
best evaluation return (``eval/mean_return``; the best with its step), steps to solved (the
first record with ``eval/solved == 1``), SPS (median of ``perf/sps``) and wall time
(``summary.yaml``'s ``train_time_s``, else the last ``wall_time`` logged). Runs are given as
folders or parents of run folders, as for ``reprl plot``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from reprl.tools.plot import Run, load_runs

EVAL_KEY = "eval/mean_return"
SOLVED_KEY = "eval/solved"
SPS_KEY = "perf/sps"


def run_row(run: Run) -> dict[str, Any]:
    """The comparison row of one run (None where the run logged nothing to compute it)."""
    steps_x, evals = run.series(EVAL_KEY)
    row: dict[str, Any] = {
        "run_dir": str(run.path),
        "experiment": run.name,
        "seed": run.seed,
        "env_steps": None,
        "final_eval_return": float(evals[-1]) if len(evals) else None,
        "best_eval_return": None,
        "best_eval_step": None,
        "solved_step": None,
        "sps": None,
        "wall_time_s": None,
    }
    steps = [r["global_step"] for r in run.records if isinstance(r.get("global_step"), int)]
    if steps:
        row["env_steps"] = max(steps)
    if len(evals):
        best = int(np.argmax(evals))  # the first of equal bests
        row["best_eval_return"] = float(evals[best])
        row["best_eval_step"] = int(steps_x[best])
    solved_x, solved = run.series(SOLVED_KEY)
    if (solved == 1).any():
        row["solved_step"] = int(solved_x[np.argmax(solved == 1)])
    _, sps = run.series(SPS_KEY)
    if len(sps):
        row["sps"] = float(np.median(sps))
    train_time = run.summary.get("train_time_s")
    if isinstance(train_time, (int, float)):
        row["wall_time_s"] = float(train_time)
    else:
        _, wall = run.series("wall_time")
        row["wall_time_s"] = float(wall[-1]) if len(wall) else None
    return row


def compare_runs(run_dirs: Iterable[str | Path]) -> list[dict[str, Any]]:
    """The rows of every run in ``run_dirs``, sorted by experiment, seed and folder."""
    rows = [run_row(run) for run in load_runs(run_dirs)]
    rows.sort(key=lambda r: (r["experiment"], r["seed"] is None, r["seed"] or 0, r["run_dir"]))
    return rows


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def render_table(rows: list[dict[str, Any]]) -> Any:
    """A rich Table of ``rows`` (the run folders are in the ``--json`` output)."""
    from rich.table import Table

    table = Table(title="runs", show_edge=False)
    table.add_column("experiment", no_wrap=True)
    for name in ("seed", "steps", "final eval", "best eval", "best at", "solved at", "SPS"):
        table.add_column(name, justify="right")
    table.add_column("wall s", justify="right")
    for r in rows:
        table.add_row(
            r["experiment"],
            _fmt(r["seed"]),
            _fmt(r["env_steps"]),
            _fmt(r["final_eval_return"]),
            _fmt(r["best_eval_return"]),
            _fmt(r["best_eval_step"]),
            _fmt(r["solved_step"]),
            _fmt(r["sps"], 0),
            _fmt(r["wall_time_s"], 1),
        )
    return table


def _cmd(args: argparse.Namespace) -> int:
    rows = compare_runs(args.runs)
    if args.json:
        print(json.dumps(rows))
        return 0
    from rich.console import Console

    Console(highlight=False).print(render_table(rows))
    return 0


def add_parser(sub: Any) -> None:
    """Add ``reprl compare`` to the CLI's subparsers."""
    p = sub.add_parser(
        "compare",
        help="a table of runs: final/best eval return, steps to solved, SPS, wall time",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders or their parents")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of the table")
    p.set_defaults(fn=_cmd)

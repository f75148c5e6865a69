"""The command line of ``reprl sweep`` (used by :mod:`reprl.cli`; imports nothing heavy)."""

from __future__ import annotations

import argparse

DESCRIPTION = (
    "Search hyperparameters with Optuna: each trial is a `reprl train` process with sampled "
    "overrides, pruned from its evaluations, results in an Optuna storage (resumable: run the "
    "same command again), then trials.csv and best.yaml. SPEC: a YAML file or the name of one "
    "shipped in reprl/configs/sweep (e.g. sweep=ppo_cartpole_lr)."
)
OVERRIDES_HELP = (
    "sweep=SPEC and the overrides of train every trial gets (experiment=..., key=value), "
    "options in any order"
)


def add_options(p: argparse.ArgumentParser) -> None:
    """The options of ``reprl sweep``."""
    p.add_argument(
        "--trials",
        type=int,
        metavar="N",
        help="finished trials wanted in the study (default: the spec's trials, the grid's "
        "size, or 20)",
    )
    p.add_argument("--jobs", type=int, default=1, metavar="K", help="trials at a time (default 1)")
    p.add_argument(
        "--storage",
        metavar="URL",
        help="Optuna storage, any database URL, e.g. shared by several machines "
        "(default sqlite:///<out>/optuna.db)",
    )
    p.add_argument(
        "--out", metavar="DIR", help="sweep folder (default runs/sweep-<experiment>-<spec>)"
    )


def parser() -> argparse.ArgumentParser:
    """Parses what follows ``reprl sweep``: overrides and options in any order."""
    p = argparse.ArgumentParser(prog="reprl sweep", description=DESCRIPTION)
    p.add_argument("overrides", nargs="*", help=OVERRIDES_HELP)
    add_options(p)
    return p

"""The ``reprl`` command: train, eval, list, config, suite, sweep, and the tools of
:mod:`reprl.tools` (video, progression, play, inspect, plot, compare, audit, export).

User mistakes (ReprlError) print one line to stderr and exit 2; a run stopped by a
non-finite loss exits 1. Nothing a user can cause prints a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
from typing import Any

from reprl.errors import ReprlError

TOOLS = (
    "video",
    "progression",
    "play",
    "inspect",
    "plot",
    "compare",
    "audit",
    "export",
    "collect",
    "probe",
)
"""Subcommands implemented by modules of :mod:`reprl.tools` (see its docstring)."""
LISTABLE = (
    "experiments",
    "envs",
    "agents",
    "backbones",
    "necks",
    "policies",
    "auxiliaries",
    "trainers",
)
SUITE_DESCRIPTION = (
    "Train every task x seed of a benchmark in parallel processes (resumable), then write "
    "results.csv, table.md/csv (human-normalised scores, mean/median/IQM with 95% stratified "
    "bootstrap CIs, rliable) and hns.png. Suites: atari100k (one experiment per game x seed); "
    "pretrain (per game: pretrain on its DQN-Replay data, probe, then finetune an RL agent from "
    "the backbone per seed; the tables add the probe F1s): reprl suite pretrain "
    "[pretrain=byol_pretrain_atari] [finetune=ppo_finetune_atari] dataset.root=DIR "
    "[--games Pong,Breakout] seeds=N [pretrain.K=V] [finetune.K=V] [K=V]."
)
SUITE_OVERRIDES = (
    "seeds=N (seeds 1..N, default 3) and the overrides of train (experiment=..., agent=..., "
    "key=value), options in any order. pretrain suite: pretrain=EXP and finetune=EXP choose the "
    "experiments; pretrain.K=V / finetune.K=V set one stage; dataset.*, probe.*, trainer.* go "
    "to pretraining, agent.*, aux.*, eval.* to finetuning, other keys to both (total_steps "
    "needs a stage prefix); finetuning runs get model.backbone.init_from=<their game's "
    "pretraining run> (finetune.model.backbone.freeze=true freezes it)"
)


def _cmd_train(args: argparse.Namespace) -> int:
    from reprl.config import load_config
    from reprl.train import train

    cfg = load_config(args.overrides)
    console = _console()
    result = train(cfg)
    if result.rank != 0:
        return 0
    if result.stop_reason == "interrupted":
        console.print(
            f"interrupted at step {result.global_step}: checkpoint saved to {result.checkpoint}\n"
            f"continue with: reprl train resume={result.run_dir}"
        )
        return 0
    ev = result.final_eval
    if ev is not None and "probe/reward_f1" in ev:  # a pretraining run: the probes
        console.print(
            f"final probes: reward F1 {ev['probe/reward_f1']:.3f}, "
            f"action weighted F1 {ev['probe/action_f1']:.3f}"
        )
    elif ev is not None:
        console.print(
            f"final evaluation: mean return {ev['mean_return']:.2f} +- {ev['std_return']:.2f} "
            f"over {ev['episodes']} episodes (mean length {ev['mean_length']:.1f})"
        )
    if result.solved_step is not None:
        console.print(f"solved at step {result.solved_step}")
    console.print(f"steps: {result.global_step}  run folder: {result.run_dir}")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from reprl.evaluation.cli import evaluate_checkpoint

    result = evaluate_checkpoint(
        args.path, args.episodes, args.deterministic, args.video, args.seed, args.epsilon
    )
    if args.json:
        print(json.dumps({k: v for k, v in result.items() if k != "time"}))
    else:
        print(
            f"mean return {result['mean_return']:.2f} +- {result['std_return']:.2f}, "
            f"mean length {result['mean_length']:.1f} +- {result['std_length']:.1f} "
            f"over {result['episodes']} episodes"
            + (f"; video: {result['video']}" if result.get("video") else "")
        )
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from reprl import config, registry
    from reprl.envs import list_env_ids

    config._import_components()
    what = args.what or "all"
    tables: dict[str, list[str]] = {
        "experiments": config.list_group("experiment"),
        "envs": list_env_ids(),
        "agents": registry.AGENTS.names(),
        "backbones": registry.BACKBONES.names(),
        "necks": registry.NECKS.names(),
        "policies": registry.POLICIES.names(),
        "auxiliaries": registry.AUXILIARIES.names(),
        "trainers": registry.TRAINERS.names(),
    }
    for name, items in tables.items():
        if what in ("all", name):
            print(f"{name}:")
            for item in items:
                print(f"  {item}")
    return 0


def _cmd_config(args: argparse.Namespace) -> int:
    from rich.table import Table

    from reprl.config import describe, load_config

    cfg = load_config(args.overrides)
    table = Table(title="resolved config", show_lines=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    table.add_column("documentation", style="dim")
    for key, value, doc in describe(cfg):
        table.add_row(key, json.dumps(value), doc)
    _console().print(table)
    return 0


def _cmd_suite(args: argparse.Namespace) -> int:
    from pathlib import Path

    from reprl.suite.aggregate import DEFAULT_REPS
    from reprl.suite.suite import SuiteRequest, run_suite

    # Options may also follow the overrides (``reprl suite atari100k seeds=3 --out x agent=der``):
    # argparse cannot intermix a variable-length positional with options inside a subcommand,
    # so what follows the suite name is parsed again by a parser without subcommands.
    _suite_parser().parse_intermixed_args(args.rest, namespace=args)
    request = SuiteRequest(
        name=args.name,
        overrides=args.overrides,
        out=Path(args.out) if args.out else None,
        workers=args.workers,
        tasks=[g.strip() for g in args.games.split(",") if g.strip()] if args.games else None,
        episodes=args.episodes,
        reps=DEFAULT_REPS if args.reps is None else args.reps,
    )
    return run_suite(request)


def _cmd_sweep(args: argparse.Namespace) -> int:
    from pathlib import Path

    from reprl.tools.sweep import options
    from reprl.tools.sweep.sweep import SweepRequest, run_sweep

    # As for suite: options may also follow the overrides, so what follows ``reprl sweep`` is
    # parsed again by a parser without subcommands.
    options.parser().parse_intermixed_args(args.rest, namespace=args)
    request = SweepRequest(
        overrides=args.overrides,
        trials=args.trials,
        jobs=args.jobs,
        storage=args.storage,
        out=Path(args.out) if args.out else None,
    )
    return run_sweep(request)


def _add_suite_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", metavar="DIR", help="output folder (default runs/<suite>-<experiment>)")
    p.add_argument("--workers", type=int, help="runs at a time (default: cores available)")
    p.add_argument("--games", metavar="G1,G2", help="comma-separated subset of the games")
    p.add_argument(
        "--episodes",
        type=int,
        metavar="K",
        help="score each final checkpoint over K dedicated evaluation episodes "
        "(default: the run's final evaluation, eval.episodes episodes)",
    )
    p.add_argument(
        "--reps",
        type=int,
        help="bootstrap replications per confidence interval (default 50000, rliable's)",
    )


def _suite_parser() -> argparse.ArgumentParser:
    """Parses what follows ``reprl suite NAME``: overrides and options in any order."""
    p = argparse.ArgumentParser(prog="reprl suite NAME", description=SUITE_DESCRIPTION)
    p.add_argument("overrides", nargs="*", help=SUITE_OVERRIDES)
    _add_suite_options(p)
    return p


def _console() -> Any:
    from rich.console import Console

    return Console(highlight=False)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="reprl",
        description="reprl: RL research where representations, exploration and RL compose freely.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train an agent: reprl train experiment=ppo_cartpole [k=v]")
    p.add_argument(
        "overrides",
        nargs="*",
        help="group=option and key=value overrides (Hydra "
        "syntax), e.g. experiment=ppo_cartpole agent.lr=3e-4 env.num_envs=16 seed=3",
    )
    p.set_defaults(fn=_cmd_train)

    p = sub.add_parser("eval", help="evaluate a run folder or checkpoint")
    p.add_argument("path", help="run folder or checkpoint file")
    p.add_argument("--episodes", type=int, default=10, help="episodes to play (default 10)")
    p.add_argument("--deterministic", action="store_true", help="act with the policy's mode")
    p.add_argument("--video", metavar="PATH", help="also record one episode to this mp4")
    p.add_argument(
        "--epsilon",
        type=float,
        metavar="E",
        help="epsilon-greedy evaluation (discrete actions; default: the run's eval.epsilon)",
    )
    p.add_argument("--seed", type=int, default=12345, help="evaluation env seed")
    p.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    p.set_defaults(fn=_cmd_eval)

    p = sub.add_parser("list", help="list experiments, envs, agents, backbones, necks, policies")
    p.add_argument("what", nargs="?", choices=LISTABLE, help="one kind (default: all)")
    p.set_defaults(fn=_cmd_list)

    p = sub.add_parser("config", help="print the resolved config with each field's documentation")
    p.add_argument("overrides", nargs="*", help="same overrides as train")
    p.set_defaults(fn=_cmd_config)

    p = sub.add_parser(
        "suite",
        help="a benchmark protocol: reprl suite atari100k agent=der seeds=3 [k=v] [--out DIR]; "
        "pretrain -> probe -> finetune: reprl suite pretrain dataset.root=DIR seeds=3",
        description=SUITE_DESCRIPTION,
    )
    p.add_argument("name", help="the protocol (atari100k) or pipeline (pretrain)")
    p.add_argument("rest", nargs=argparse.REMAINDER, metavar="overrides", help=SUITE_OVERRIDES)
    _add_suite_options(p)
    p.set_defaults(fn=_cmd_suite)

    from reprl.tools.sweep import options as sweep_options

    p = sub.add_parser(
        "sweep",
        help="hyperparameter search with Optuna: reprl sweep experiment=X sweep=SPEC [k=v] "
        "[--trials N] [--jobs K]",
        description=sweep_options.DESCRIPTION,
    )
    p.add_argument(
        "rest", nargs=argparse.REMAINDER, metavar="overrides", help=sweep_options.OVERRIDES_HELP
    )
    sweep_options.add_options(p)
    p.set_defaults(fn=_cmd_sweep)

    for name in TOOLS:  # reprl/tools/<name>.py: add_parser(sub) adds the subcommand
        module = f"reprl.tools.{name}"
        if importlib.util.find_spec(module) is not None:
            importlib.import_module(module).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``reprl`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.fn(args))
    except ReprlError as exc:
        from reprl.loop import NonFiniteLossError

        print(f"reprl {args.command}: error: {exc}", file=sys.stderr)
        return 1 if isinstance(exc, NonFiniteLossError) else 2
    except KeyboardInterrupt:
        print(f"reprl {args.command}: interrupted", file=sys.stderr)
        return 130

"""The ``reprl`` command: train, eval, list, config.

User mistakes (ReprlError) print one line to stderr and exit 2; a run stopped by a
non-finite loss exits 1. Nothing a user can cause prints a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from reprl.errors import ReprlError

LISTABLE = ("experiments", "envs", "agents", "backbones", "necks", "policies")


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
    if ev is not None:
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
        args.path, args.episodes, args.deterministic, args.video, args.seed
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
    p.add_argument("--seed", type=int, default=12345, help="evaluation env seed")
    p.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    p.set_defaults(fn=_cmd_eval)

    p = sub.add_parser("list", help="list experiments, envs, agents, backbones, necks, policies")
    p.add_argument("what", nargs="?", choices=LISTABLE, help="one kind (default: all)")
    p.set_defaults(fn=_cmd_list)

    p = sub.add_parser("config", help="print the resolved config with each field's documentation")
    p.add_argument("overrides", nargs="*", help="same overrides as train")
    p.set_defaults(fn=_cmd_config)
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

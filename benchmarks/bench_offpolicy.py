"""reprl vs Stable-Baselines3 off-policy agents, side by side in one run, identical
hyperparameters.

(a) DQN on CartPole-v1 and SAC on Pendulum-v1 with RL Zoo's hyperparameters (reprl's
    experiments ``dqn_cartpole`` and ``sac_pendulum``; SB3's side is ``sb3_offpolicy.py``),
    seeds interleaved (SB3 seed s, reprl seed s, ...). Both evaluate 10 deterministic
    episodes (10 envs, one episode each) every 2560 (CartPole) / 2000 (Pendulum) env steps,
    the experiments' ``eval.every_steps``, after that many steps' updates, and stop when the
    mean reaches the threshold (CartPole 475, Pendulum -200); 1 torch thread each
    (``--threads``). Reported: medians over seeds of the whole-process wall time to the threshold
    (imports, set-up and evaluations included, measured from outside), the env steps to the
    threshold, the training time, and the training SPS: env steps per second of training with
    the time spent in evaluations subtracted, on both sides (SB3: ``learn``'s wall time minus
    its evaluations; reprl: the summary's ``train_time_s`` minus the evaluations' ``perf/eval_time``
    in ``metrics.jsonl``). Medians of wall time, steps and training time are over the seeds that
    solved; SPS over all seeds.
(b) Bytes of replay memory per Atari transition (uint8 frames (4, 84, 84), 4 stacked):
    reprl's ``ReplayBuffer.from_spec`` against SB3's ``ReplayBuffer`` without and with
    ``optimize_memory_usage``, from the allocated arrays' ``nbytes`` / capacity (10k
    transitions; NumPy maps the pages lazily, nothing is filled).

Prints a markdown table with reprl / SB3 ratios (time: below 1 is faster; SPS: above 1).

    python benchmarks/bench_offpolicy.py --seeds 5 --bf16 sac_pendulum
    python benchmarks/bench_offpolicy.py --seeds 3 --tasks sac_pendulum --threads 2 \
        --parallel-actor sac_pendulum      # two cores each
    python benchmarks/bench_offpolicy.py --quick          # 1 seed, a smoke test
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).parent
ROOT = HERE.parent  # the repository: ``python -m reprl`` runs there, and reprl imports from it
TASKS = {
    "dqn_cartpole": {"label": "DQN CartPole", "eval_every": 2560},
    "sac_pendulum": {"label": "SAC Pendulum", "eval_every": 2000},
}


def timed(cmd: list[str]) -> tuple[float, str]:
    """Run ``cmd``; return (whole-process wall seconds, stdout)."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd} failed:\n{proc.stderr[-2000:]}")
    return wall, proc.stdout


def eval_seconds(rows: list[dict[str, Any]]) -> float:
    """Seconds spent evaluating: the sum of the evaluation records' ``perf/eval_time``."""
    return sum(row.get("perf/eval_time", 0.0) for row in rows if "eval/mean_return" in row)


def reprl_run(task: str, seed: int, eval_every: int, threads: int, extra: list[str]) -> dict:
    """One ``reprl train`` run: whole-process wall time, solved step, training time and SPS."""
    with tempfile.TemporaryDirectory() as tmp:
        wall, _ = timed(
            [
                sys.executable,
                "-m",
                "reprl",
                "train",
                f"experiment={task}",
                f"seed={seed}",
                f"eval.every_steps={eval_every}",
                f"torch_threads={threads}",
                "logger.progress=false",
                "logger.tensorboard=false",
                f"run_dir={tmp}/r",
                *extra,
            ]
        )
        summary = yaml.safe_load((Path(tmp) / "r" / "summary.yaml").read_text())
        rows = [json.loads(line) for line in (Path(tmp) / "r" / "metrics.jsonl").open()]
    train = summary["train_time_s"]
    return {
        "wall": wall,
        "steps": summary["solved_step"],
        "train": train,
        "sps": summary["global_step"] / (train - eval_seconds(rows)),
    }


def sb3_run(task: str, seed: int, eval_every: int, threads: int) -> dict:
    """One run of ``sb3_offpolicy.py``."""
    wall, out = timed(
        [
            sys.executable,
            str(HERE / "sb3_offpolicy.py"),
            task,
            str(seed),
            str(eval_every),
            str(threads),
        ]
    )
    r = json.loads(out.strip().splitlines()[-1])
    return {"wall": wall, "steps": r["steps"], "train": r["train_time"], "sps": r["sps"]}


VARIANTS = {
    "reprl_bf16": (["agent.autocast=bf16"], " (reprl bf16 autocast)"),
    # the actor's part of SAC's step on a second thread, 1 torch thread on each
    "reprl_parallel": (
        ["torch_threads=1", "agent.parallel_actor=true"],
        " (reprl `parallel_actor`, 1 torch thread on each of 2 threads)",
    ),
}
"""Extra reprl runs a task can add: name -> (overrides, label in the table)."""


def race(
    task: str, seeds: int, eval_every: int, threads: int, variants: list[str]
) -> dict[str, list[dict]]:
    """Every seed: SB3, reprl and reprl's ``variants`` (:data:`VARIANTS`), one after the
    other."""
    runs: dict[str, list[dict]] = {"sb3": [], "reprl": [], **{name: [] for name in variants}}
    for seed in range(seeds):
        runs["sb3"].append(sb3_run(task, seed, eval_every, threads))
        runs["reprl"].append(reprl_run(task, seed, eval_every, threads, []))
        for name in variants:
            runs[name].append(reprl_run(task, seed, eval_every, threads, VARIANTS[name][0]))
        print(
            f"{task} seed {seed}: "
            + ", ".join(
                f"{name} {r[-1]['wall']:.1f}s/{r[-1]['steps']} steps/{r[-1]['sps']:.0f} SPS"
                for name, r in runs.items()
            ),
            file=sys.stderr,
            flush=True,
        )
    return runs


def medians(runs: list[dict]) -> dict[str, float]:
    """Medians of wall, steps and train time over solved seeds; SPS over all; solved count."""
    solved = [r for r in runs if r["steps"] is not None]
    out = {
        k: statistics.median(r[k] for r in solved) if solved else float("nan")
        for k in ("wall", "steps", "train")
    }
    out["sps"] = statistics.median(r["sps"] for r in runs)
    out["solved"] = len(solved)
    return out


def replay_bytes(capacity: int = 10_000) -> dict[str, float]:
    """Bytes per transition of an Atari replay buffer (uint8 (4, 84, 84), 4 stacked frames,
    6 discrete actions): reprl, SB3, SB3 with ``optimize_memory_usage``."""
    import numpy as np
    from gymnasium import spaces
    from stable_baselines3.common.buffers import ReplayBuffer as SB3Buffer

    sys.path.insert(0, str(ROOT))
    from reprl.data.replay import ReplayBuffer
    from reprl.types import EnvSpec

    spec = EnvSpec(
        env_id="ALE/Pong-v5",
        obs_shape=(4, 84, 84),
        obs_dtype=np.dtype(np.uint8),
        action_type="discrete",
        num_actions=6,
        frame_stack=4,
    )
    out = {"reprl": ReplayBuffer.from_spec(spec, 1, capacity).nbytes / capacity}
    obs_space = spaces.Box(0, 255, (4, 84, 84), np.uint8)
    for name, optimize in (("sb3", False), ("sb3_optimized", True)):
        buf = SB3Buffer(
            capacity,
            obs_space,
            spaces.Discrete(6),
            optimize_memory_usage=optimize,
            # SB3 refuses optimize_memory_usage together with timeout handling.
            handle_timeout_termination=not optimize,
        )
        arrays = [v for v in vars(buf).values() if isinstance(v, np.ndarray)]
        out[name] = sum(a.nbytes for a in arrays) / buf.buffer_size
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="one seed per task (a smoke test)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads, both libraries")
    ap.add_argument(
        "--tasks", default=",".join(TASKS), help=f"comma-separated, of {', '.join(TASKS)}"
    )
    ap.add_argument(
        "--bf16",
        default="",
        help="comma-separated tasks to also run with reprl under agent.autocast=bf16",
    )
    ap.add_argument(
        "--parallel-actor",
        default="",
        help="comma-separated SAC tasks to also run with reprl's agent.parallel_actor "
        "(1 torch thread on each of 2 threads; pair with --threads 2 for SB3)",
    )
    ap.add_argument("--raw", type=Path, help="also write every run's numbers to this JSON file")
    args = ap.parse_args()
    raw: dict[str, Any] = {}
    seeds = 1 if args.quick else args.seeds
    rows = ["| benchmark | SB3 | reprl | reprl / SB3 |", "|---|---|---|---|"]
    for task in filter(None, args.tasks.split(",")):  # --tasks "": memory only
        label, every = TASKS[task]["label"], TASKS[task]["eval_every"]
        variants = [
            name
            for name, tasks in (("reprl_bf16", args.bf16), ("reprl_parallel", args.parallel_actor))
            if task in tasks.split(",")
        ]
        runs = race(task, seeds, every, args.threads, variants)
        raw[task] = runs
        m = {name: medians(r) for name, r in runs.items()}
        for key, what, fmt in (
            ("wall", "whole-process wall time to solved (s)", ".1f"),
            ("steps", "env steps to solved", ".0f"),
            ("train", "training-loop time to solved, evaluations included (s)", ".1f"),
            ("sps", "training SPS (evaluations excluded)", ".0f"),
        ):
            for name in m:
                if name == "sb3":
                    continue
                a, b = m["sb3"][key], m[name][key]
                tag = VARIANTS[name][1] if name in VARIANTS else ""
                rows.append(f"| {label} {what}{tag} | {a:{fmt}} | {b:{fmt}} | {b / a:.2f} |")
        for name in m:
            if name != "sb3":
                tag = VARIANTS[name][1] if name in VARIANTS else ""
                rows.append(
                    f"| {label} seeds solved{tag} | {m['sb3']['solved']}/{seeds} | "
                    f"{m[name]['solved']}/{seeds} | |"
                )
    mem = replay_bytes()
    rows.append(
        f"| Atari replay bytes per transition (SB3 default) | {mem['sb3']:.0f} | "
        f"{mem['reprl']:.0f} | {mem['reprl'] / mem['sb3']:.3f} |"
    )
    rows.append(
        f"| Atari replay bytes per transition (SB3 `optimize_memory_usage`) | "
        f"{mem['sb3_optimized']:.0f} | {mem['reprl']:.0f} | "
        f"{mem['reprl'] / mem['sb3_optimized']:.3f} |"
    )
    if args.raw:
        args.raw.write_text(json.dumps(raw | {"replay_bytes": mem}, indent=1))
    print("\n".join(rows))


if __name__ == "__main__":
    main()

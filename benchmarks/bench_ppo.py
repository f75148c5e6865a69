"""reprl PPO vs Stable-Baselines3 PPO, side by side in one run, identical hyperparameters.

(a) CartPole-v1, RL Zoo's tuned PPO settings, seeds interleaved: whole-process wall time and
    env steps until the deterministic 10-episode evaluation mean first reaches 475, and
    training SPS. Both evaluate every ``--eval-every`` steps and stop when solved.
(b) Atari Breakout, NatureCNN, 8 envs, 128 steps, 4 epochs, 4 minibatches: steady-state
    training SPS (from the end of the first iteration to the end of ``--atari-steps`` steps,
    measured the same way for both), reprl in float32 and with bfloat16 autocast.

Prints a markdown table of medians and reprl/SB3 ratios.

    python benchmarks/bench_ppo.py --seeds 5 --atari-steps 10240
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

import yaml

HERE = Path(__file__).parent


def timed(cmd: list[str]) -> tuple[float, str]:
    """Run ``cmd``; return (whole-process wall seconds, stdout)."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd} failed:\n{proc.stderr[-2000:]}")
    return wall, proc.stdout


def reprl_run(overrides: list[str]) -> tuple[float, dict]:
    """Whole-process wall time and summary of a ``reprl train`` run; the summary gains
    ``steady_sps``: env steps per second after the first (warm-up) iteration."""
    with tempfile.TemporaryDirectory() as tmp:
        wall, _ = timed(
            [
                sys.executable,
                "-m",
                "reprl",
                "train",
                *overrides,
                "logger.progress=false",
                "logger.tensorboard=false",
                f"run_dir={tmp}/r",
            ]
        )
        summary = yaml.safe_load((Path(tmp) / "r" / "summary.yaml").read_text())
        rows = [json.loads(line) for line in (Path(tmp) / "r" / "metrics.jsonl").open()]
    train = [r for r in rows if "perf/sps" in r]
    if len(train) > 1:
        first, last = train[0], train[-1]
        summary["steady_sps"] = (last["global_step"] - first["global_step"]) / (
            last["wall_time"] - first["wall_time"]
        )
    return wall, summary


def cartpole(seeds: int, eval_every: int, threads: int) -> dict[str, dict[str, list[float]]]:
    res: dict[str, dict[str, list[float]]] = {"reprl": {}, "sb3": {}}
    for seed in range(seeds):  # interleaved so machine load affects both alike
        wall, out = timed(
            [
                sys.executable,
                str(HERE / "sb3_cartpole.py"),
                str(seed),
                str(eval_every),
                str(threads),
            ]
        )
        r = json.loads(out.strip().splitlines()[-1])
        for k, v in {
            "wall": wall,
            "steps": r["steps"],
            "sps": r["sps"],
            "train": r["train_time"],
        }.items():
            res["sb3"].setdefault(k, []).append(v)
        wall, s = reprl_run(
            [
                "experiment=ppo_cartpole",
                f"seed={seed}",
                f"eval.every_steps={eval_every}",
                f"torch_threads={threads}",
            ]
        )
        for k, v in {
            "wall": wall,
            "steps": s["solved_step"],
            "sps": s["global_step"] / s["train_time_s"],
            "train": s["train_time_s"],
        }.items():
            res["reprl"].setdefault(k, []).append(v)
        print(
            f"seed {seed}: sb3 {res['sb3']['wall'][-1]:.1f}s/{res['sb3']['steps'][-1]} steps, "
            f"reprl {res['reprl']['wall'][-1]:.1f}s/{res['reprl']['steps'][-1]} steps",
            file=sys.stderr,
        )
    return res


def atari(steps: int, threads: int, repeats: int) -> dict[str, list[float]]:
    """Steady-state training SPS (after the first iteration), runs interleaved."""
    out: dict[str, list[float]] = {"sb3": [], "reprl_fp32": [], "reprl_bf16": []}
    common = [
        "experiment=ppo_atari",
        f"total_steps={steps}",
        "eval.every_steps=0",
        "eval.at_end=false",
        f"torch_threads={threads}",
    ]
    for _ in range(repeats):
        _, o = timed([sys.executable, str(HERE / "sb3_atari.py"), str(steps), str(threads)])
        out["sb3"].append(json.loads(o.strip().splitlines()[-1])["sps"])
        for name, extra in (("reprl_fp32", []), ("reprl_bf16", ["agent.autocast=bf16"])):
            _, s = reprl_run(common + extra)
            out[name].append(s["steady_sps"])
        print(
            "atari SPS: " + ", ".join(f"{k} {v[-1]:.0f}" for k, v in out.items()), file=sys.stderr
        )
    return out


def median(xs: list[float | None]) -> float:
    vals = [x for x in xs if x is not None]
    return statistics.median(vals) if vals else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--eval-every", type=int, default=10240)
    ap.add_argument("--atari-steps", type=int, default=10240)
    ap.add_argument("--atari-repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2, help="torch threads, both libraries")
    ap.add_argument("--skip-atari", action="store_true")
    ap.add_argument("--skip-cartpole", action="store_true")
    args = ap.parse_args()
    rows = ["| benchmark | SB3 | reprl | reprl / SB3 |", "|---|---|---|---|"]
    if not args.skip_cartpole:
        c = cartpole(args.seeds, args.eval_every, 1)
        solved = {k: sum(x is not None for x in c[k]["steps"]) for k in c}
        for key, label, fmt in (
            ("wall", "CartPole whole-process wall time to solved (s)", ".1f"),
            ("steps", "CartPole env steps to solved", ".0f"),
            ("train", "CartPole training time (s)", ".2f"),
            ("sps", "CartPole training SPS", ".0f"),
        ):
            a, b = median(c["sb3"][key]), median(c["reprl"][key])
            rows.append(f"| {label} | {a:{fmt}} | {b:{fmt}} | {b / a:.2f} |")
        rows.append(
            f"| CartPole seeds solved | {solved['sb3']}/{args.seeds} | "
            f"{solved['reprl']}/{args.seeds} | |"
        )
    if not args.skip_atari:
        a = {
            k: median(v)
            for k, v in atari(args.atari_steps, args.threads, args.atari_repeats).items()
        }
        rows.append(
            f"| Breakout training SPS, float32 | {a['sb3']:.0f} | {a['reprl_fp32']:.0f} | "
            f"{a['reprl_fp32'] / a['sb3']:.2f} |"
        )
        rows.append(
            f"| Breakout training SPS, bf16 autocast | {a['sb3']:.0f} | "
            f"{a['reprl_bf16']:.0f} | {a['reprl_bf16'] / a['sb3']:.2f} |"
        )
    print("\n".join(rows))


if __name__ == "__main__":
    main()

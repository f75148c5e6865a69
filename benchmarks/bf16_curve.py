"""Learning curves of reprl PPO on Atari in float32 and with bfloat16 autocast, same seed:
bf16 must learn comparably. Prints a markdown table of the mean training episodic return
(raw game score) per bin of env steps, and the median training SPS of each.

    python benchmarks/bf16_curve.py --steps 300000 --bin 50000 --out-dir runs/bf16_curve
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path


def run(name: str, extra: list[str], args: argparse.Namespace) -> Path:
    out = Path(args.out_dir) / name
    if not (out / "metrics.jsonl").exists():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "reprl",
                "train",
                "experiment=ppo_atari",
                f"env.id={args.env}",
                f"total_steps={args.steps}",
                f"seed={args.seed}",
                "eval.every_steps=0",
                "eval.at_end=false",
                "logger.progress=false",
                f"run_dir={out}",
                *extra,
            ],
            check=True,
        )
    return out


def curve(run_dir: Path, bin_size: int) -> tuple[dict[int, float], float]:
    """Mean episodic return per bin of env steps, and the median training SPS."""
    sums: dict[int, list[float]] = {}
    sps: list[float] = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        r = json.loads(line)
        if "charts/episodic_return" in r:
            b = (r["global_step"] - 1) // bin_size
            sums.setdefault(b, []).append(r["charts/episodic_return"])
        if "perf/sps" in r:
            sps.append(r["perf/sps"])
    return {b: sum(v) / len(v) for b, v in sorted(sums.items())}, statistics.median(sps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--env", default="ALE/Breakout-v5")
    ap.add_argument("--steps", type=int, default=300_000)
    ap.add_argument("--bin", type=int, default=50_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out-dir", default="runs/bf16_curve")
    args = ap.parse_args()
    runs = {"float32": run("fp32", [], args), "bf16": run("bf16", ["agent.autocast=bf16"], args)}
    curves = {k: curve(v, args.bin) for k, v in runs.items()}
    print(f"| env steps ({args.env}) | float32 return | bf16 return |")
    print("|---|---|---|")
    (fc, fs), (hc, hs) = curves["float32"], curves["bf16"]
    for b in sorted(set(fc) | set(hc)):
        lo, hi = b * args.bin, (b + 1) * args.bin
        if hi > args.steps:  # the last, partial iteration: too few episodes to compare
            continue
        f, h = fc.get(b, float("nan")), hc.get(b, float("nan"))
        print(f"| {lo // 1000}k-{hi // 1000}k | {f:.2f} | {h:.2f} |")
    print(f"| median training SPS | {fs:.0f} | {hs:.0f} |")


if __name__ == "__main__":
    main()

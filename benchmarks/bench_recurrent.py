"""Cost of recurrence: PPO with an LSTM neck against the same PPO feed-forward, in one run.

Each pair shares every setting but the neck: ``ppo_lstm_cartpole_masked`` (MLP 64, LSTM 64,
sequence minibatches) against itself with ``model.neck={name:identity}``, and ``ppo_lstm_atari``
(Nature CNN, LSTM 128, 1 frame per observation) against ``model.neck={name:identity}``. Variants
are interleaved; each run's SPS is the median of its iterations after the first. Reported:
median SPS over repeats and the slowdown of the recurrent version.

    python benchmarks/bench_recurrent.py --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TASKS = {
    "CartPole (velocities hidden)": ("ppo_lstm_cartpole_masked", 8 * 128 * 6),
    "Atari Breakout": ("ppo_lstm_atari", 8 * 128 * 4),
}


def run_sps(experiment: str, steps: int, extra: list[str], out: Path) -> float:
    """Median SPS of one run's iterations after the first."""
    cmd = [sys.executable, "-m", "reprl", "train", f"experiment={experiment}"]
    cmd += [f"total_steps={steps}", "eval.every_steps=0", "eval.at_end=false"]
    cmd += ["checkpoint.every_steps=0", "logger.progress=false", "logger.tensorboard=false"]
    cmd += ["stop_on_solved=false", *extra, f"run_dir={out}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return statistics.median([r["perf/sps"] for r in rows if "perf/sps" in r][1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print("| task | feed-forward SPS | LSTM SPS | slowdown |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for label, (experiment, steps) in TASKS.items():
            ff, rec = [], []
            for r in range(args.repeats):
                base = Path(tmp) / f"{experiment}-{r}"
                ff.append(run_sps(experiment, steps, ["model.neck={name:identity}"], base / "ff"))
                rec.append(run_sps(experiment, steps, [], base / "lstm"))
                print(f"{label} {r + 1}: ff {ff[-1]:.0f}, lstm {rec[-1]:.0f}", file=sys.stderr)
            slow = statistics.median(a / b for a, b in zip(ff, rec))
            print(
                f"| {label} | {statistics.median(ff):.0f} | {statistics.median(rec):.0f} "
                f"| {slow:.2f}x |"
            )


if __name__ == "__main__":
    main()

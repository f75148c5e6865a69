"""Cost of recurrence: recurrent PPO and R2D2 against their feed-forward versions, in one run.

Each pair shares every setting but the recurrence:

- PPO: ``ppo_lstm_cartpole_masked`` (MLP 64, LSTM 64, sequence minibatches) and
  ``ppo_lstm_atari`` (Nature CNN, LSTM 128, 1 frame per observation), each against itself with
  ``model.neck={name:identity}``.
- R2D2: ``r2d2_catch`` (MLP 64, LSTM 64, Q head 64; 32 windows of 4 burn-in + 8 learned + 3
  bootstrap steps per gradient step) against DQN with the same MLP and Q head, double Q,
  3-step returns, prioritized replay and 32 x 8 = 256 transitions per gradient step (the
  learned steps of R2D2's batch), 8 envs, 8 gradient steps per 4 steps of each env.

Variants are interleaved; each run's SPS is the median of its iterations that updated, after
the first. Reported: median SPS over repeats and the slowdown of the recurrent version.

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
DQN_LIKE_R2D2_CATCH = [
    "env.num_envs=8",
    "model.backbone.hidden_sizes=[64]",
    "model.policy.hidden=[64]",
    "agent.double=true",
    "agent.n_step=3",
    "agent.prioritized=true",
    "agent.batch_size=256",
    "agent.buffer_size=20000",
    "agent.learning_starts=1000",
    "agent.train_freq=4",
    "agent.gradient_steps=8",
    "agent.target_update_unit=gradient_steps",
    "agent.target_update_period=100",
]
NO_NECK = ["model.neck={name:identity}"]
TASKS = {  # label: (steps, (feed-forward experiment, overrides), (recurrent experiment, ...))
    "PPO, CartPole (velocities hidden)": (
        8 * 128 * 6,
        ("ppo_lstm_cartpole_masked", NO_NECK),
        ("ppo_lstm_cartpole_masked", []),
    ),
    "PPO, Atari Breakout": (8 * 128 * 4, ("ppo_lstm_atari", NO_NECK), ("ppo_lstm_atari", [])),
    "R2D2 vs DQN, Catch": (6000, ("dqn_catch", DQN_LIKE_R2D2_CATCH), ("r2d2_catch", [])),
}


def run_sps(experiment: str, steps: int, extra: list[str], out: Path) -> float:
    """Median SPS of one run's iterations that updated, after the first."""
    cmd = [sys.executable, "-m", "reprl", "train", f"experiment={experiment}"]
    cmd += [f"total_steps={steps}", "eval.every_steps=0", "eval.at_end=false"]
    cmd += ["checkpoint.every_steps=0", "logger.progress=false", "logger.tensorboard=false"]
    cmd += ["stop_on_solved=false", *extra, f"run_dir={out}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r.get("perf/updates", 0) > 0]
    return statistics.median([r["perf/sps"] for r in rows][1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print("| task | feed-forward SPS | recurrent SPS | slowdown |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for label, (steps, (ff_exp, ff_extra), (rec_exp, rec_extra)) in TASKS.items():
            ff, rec = [], []
            for r in range(args.repeats):
                base = Path(tmp) / f"{rec_exp}-{r}"
                ff.append(run_sps(ff_exp, steps, ff_extra, base / "ff"))
                rec.append(run_sps(rec_exp, steps, rec_extra, base / "rec"))
                print(f"{label} {r + 1}: ff {ff[-1]:.0f}, rec {rec[-1]:.0f}", file=sys.stderr)
            slow = statistics.median(a / b for a, b in zip(ff, rec))
            print(
                f"| {label} | {statistics.median(ff):.0f} | {statistics.median(rec):.0f} "
                f"| {slow:.2f}x |"
            )


if __name__ == "__main__":
    main()

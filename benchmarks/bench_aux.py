"""Cost of the auxiliaries: PPO with each auxiliary against plain PPO, in one run, on Atari.

Every variant is ``experiment=ppo_atari`` (Breakout, 8 envs on ale-py's threaded vector env,
128 steps, 4 epochs of 4 minibatches, Nature CNN with 512 features) plus the auxiliary's
options, the same for all variants but for the auxiliary:

- ``ppo``: plain PPO;
- ``ppo+rnd``: RND as published (paper networks on the last frame, second value head);
- ``ppo+mrnd``: modified RND on the backbone's embedding;
- ``ppo+byol``: BYOL on the shared backbone with the study presets' heads (1024-512) and
  sample fraction (0.25 of each minibatch);
- ``ppo+mrnd+byol+proj``: modified RND + BYOL + gradient projection;
- ``ppo+mrnd+barlow``: modified RND + Barlow Twins (1024-1024).

RND's statistics are initialised within the first iteration, so the intrinsic-reward path
runs in every timed iteration. Variants are interleaved within each repeat (so slow drifts of
the machine hit all alike); each run's SPS is the median of its iterations after the first
(warm-up: allocator, oneDNN kernel selection). Reported: the median over repeats of the SPS
and of the slowdown ``SPS(ppo) / SPS(variant)`` within the same repeat.

    python benchmarks/bench_aux.py --repeats 3
    python benchmarks/bench_aux.py --quick      # 1 repeat, 3 iterations: a smoke test
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
ROOT = HERE.parent
BYOL = [
    "aux.byol.coef=1",
    "aux.byol.hidden_sizes=[1024]",
    "aux.byol.predictor_hidden_sizes=[1024]",
    "aux.byol.projection_dim=512",
    "aux.byol.sample_frac=0.25",
]
INTRINSIC = ["model.policy.num_values=2", "aux.rnd.obs_norm_init_steps=1024"]
MRND = [*INTRINSIC, "aux.rnd.input=embedding"]
VARIANTS: dict[str, list[str]] = {
    "ppo": ["aux={}"],
    "ppo+rnd": [*INTRINSIC, "aux.rnd.coef=1"],
    "ppo+mrnd": MRND,
    "ppo+byol": BYOL,
    "ppo+mrnd+byol+proj": [*MRND, *BYOL, "agent.grad_projection=true"],
    "ppo+mrnd+barlow": [
        *MRND,
        "aux.barlow.coef=0.1",
        "aux.barlow.hidden_sizes=[1024,1024]",
        "aux.barlow.projection_dim=1024",
        "aux.barlow.sample_frac=0.25",
    ],
}
TARGETS = {"ppo+rnd": 1.3, "ppo+mrnd+byol+proj": 1.6}


def run_sps(overrides: list[str], iterations: int, out: Path) -> float:
    """Median SPS of one training run's iterations after the first."""
    steps = 8 * 128 * iterations
    cmd = [
        sys.executable,
        "-m",
        "reprl",
        "train",
        "experiment=ppo_atari",
        f"total_steps={steps}",
        "eval.every_steps=0",
        "eval.at_end=false",
        "checkpoint.every_steps=0",
        "logger.progress=false",
        "logger.tensorboard=false",
        *overrides,
        f"run_dir={out}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    sps = [r["perf/sps"] for r in rows if "perf/sps" in r]
    return statistics.median(sps[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=6, help="iterations per run")
    parser.add_argument("--quick", action="store_true", help="1 repeat of 3 iterations")
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()
    repeats, iterations = (1, 3) if args.quick else (args.repeats, args.iterations)
    names = ["ppo", *[v for v in args.variants if v != "ppo"]]
    sps: dict[str, list[float]] = {n: [] for n in names}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeats):
            for name in names:
                value = run_sps(VARIANTS[name], iterations, Path(tmp) / f"{name}-{r}")
                sps[name].append(value)
                print(f"repeat {r + 1}/{repeats} {name}: {value:.0f} SPS", file=sys.stderr)
    print("| variant | SPS (median) | slowdown vs PPO | target |")
    print("|---|---|---|---|")
    for name in names:
        slow = statistics.median(a / b for a, b in zip(sps["ppo"], sps[name]))
        target = f"<= {TARGETS[name]}x" if name in TARGETS else ""
        print(f"| {name} | {statistics.median(sps[name]):.0f} | {slow:.2f}x | {target} |")


if __name__ == "__main__":
    main()

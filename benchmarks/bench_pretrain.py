"""Pretraining throughput: samples/s of each trainer, and whether the data loader keeps up.

A DQN-Replay checkpoint in the published layout is generated once (``--frames`` 84x84 uint8
frames with episodes of 1,000 steps, gzip members as Dopamine writes them), decompressed to
the memory-mapped cache, and read by every trainer's ``<name>_pretrain_atari`` preset (Pong
shapes, Nature CNN, the preset's batch size unless ``--batch-size``). For each trainer:

- **model**: sampled steps per second of the update alone (``compute_loss`` + ``update`` +
  ``after_update``) on batches drawn beforehand;
- **loader**: sampled steps per second of ``WindowSampler.sample`` alone (frame stacks
  rebuilt by index from the memory map, windows of the trainer's ``seq_len``);
- **end to end**: both, as the loop runs them;
- **loader / model**: must be at least 3 (the loader is never the bottleneck).

Medians over ``--updates`` timed updates after 2 warm-up ones, this machine, float32.

    python benchmarks/bench_pretrain.py --updates 5
    python benchmarks/bench_pretrain.py --trainers byol barlow --batch-size 64
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from reprl.config import load_config  # noqa: E402
from reprl.registry import TRAINERS  # noqa: E402
from reprl.trainers.setup import make_pretraining  # noqa: E402


def write_dataset(root: Path, frames: int) -> None:
    """One DQN-Replay checkpoint of ``frames`` steps for Pong (6 actions)."""
    run = root / "Pong" / "1" / "replay_logs"
    run.mkdir(parents=True)
    rng = np.random.default_rng(0)
    obs = rng.integers(0, 255, (frames, 84, 84), dtype=np.uint8)
    terminal = np.zeros(frames, np.uint8)
    terminal[999::1000] = 1
    arrays = {
        "observation": obs,
        "action": rng.integers(0, 6, frames).astype(np.int32),
        "reward": rng.choice([0.0, 1.0], frames, p=[0.95, 0.05]).astype(np.float32),
        "terminal": terminal,
    }
    for name, array in arrays.items():
        with open(run / f"$store$_{name}_ckpt.0.gz", "wb") as f, gzip.GzipFile(fileobj=f) as g:
            np.save(g, array, allow_pickle=False)


def timed(fn, repeats: int) -> list[float]:
    """Seconds of each of ``repeats`` calls after 2 warm-up calls."""
    for _ in range(2):
        fn()
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def bench(name: str, root: Path, updates: int, batch_size: int | None) -> dict[str, float]:
    overrides = [
        f"experiment={name}_pretrain_atari",
        f"dataset.root={root}",
        "dataset.checkpoints=[0]",
        "logger.progress=false",
    ]
    if batch_size:
        overrides.append(f"trainer.batch_size={batch_size}")
    cfg = load_config(overrides)
    _, trainer, source, _ = make_pretraining(cfg, torch.device("cpu"))
    trainer.on_iteration_start(0.0)
    n, t = source.batch_size, source.sampler.seq_len
    batches = [source.next(trainer) for _ in range(4)]
    i = 0

    def step(batch) -> None:
        losses, info = trainer.compute_loss(batch)
        info |= trainer.update(losses)
        trainer.after_update(batch, info)

    def model_only() -> None:
        nonlocal i
        step(batches[i % len(batches)])
        i += 1

    model = statistics.median(timed(model_only, updates))
    loader = statistics.median(timed(lambda: source.next(trainer), max(updates, 20)))
    both = statistics.median(timed(lambda: step(source.next(trainer)), updates))
    return {
        "samples": n * t,
        "model": n * t / model,
        "loader": n * t / loader,
        "end_to_end": n * t / both,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trainers", nargs="*", help="default: every registered trainer")
    parser.add_argument("--updates", type=int, default=5, help="timed updates per trainer")
    parser.add_argument("--frames", type=int, default=20_000, help="frames in the dataset")
    parser.add_argument("--batch-size", type=int, help="override the presets' batch size")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    names = args.trainers or TRAINERS.names()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        write_dataset(Path(tmp), args.frames)
        for name in names:
            r = bench(name, Path(tmp), args.updates, args.batch_size)
            rows.append((name, r))
            print(f"{name}: {r}", file=sys.stderr)
    print(
        "| trainer | samples/update | model samples/s | loader samples/s | loader / model "
        "| end-to-end samples/s |"
    )
    print("|---|---|---|---|---|---|")
    for name, r in rows:
        print(
            f"| {name} | {r['samples']} | {r['model']:.0f} | {r['loader']:.0f} | "
            f"{r['loader'] / r['model']:.0f}x | {r['end_to_end']:.0f} |"
        )


if __name__ == "__main__":
    main()

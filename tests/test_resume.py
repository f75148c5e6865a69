"""Checkpoints: exact resume equals an uninterrupted run; Ctrl-C saves and exits cleanly;
normaliser statistics survive the round trip; init_from loads weights."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from reprl.config import load_config
from reprl.runs import checkpoint as ckpt
from reprl.runs.logger import read_metrics
from reprl.train import train

SMALL = [
    "experiment=ppo_cartpole",
    "env.num_envs=4",
    "agent.num_steps=32",
    "agent.num_epochs=4",
    "total_steps=3072",
    "eval.every_steps=1024",
    "eval.episodes=3",
    "checkpoint.every_steps=1024",
    "stop_on_solved=false",
    "logger.progress=false",
    "logger.tensorboard=false",
    "logger.log_every_steps=300",  # windows of 2-3 iterations; step 1024 falls inside one
]


def comparable(records: list[dict]) -> list[dict]:
    """Drop timing fields, which legitimately differ between runs."""
    return [
        {k: v for k, v in r.items() if k != "wall_time" and not k.startswith("perf/")}
        for r in records
    ]


def test_resume_equals_uninterrupted(tmp_path: Path) -> None:
    full = tmp_path / "full"
    train(load_config([*SMALL, f"run_dir={full}"]))
    # Pretend the run died after step 1024: keep only what existed then, and resume.
    part = tmp_path / "part"
    shutil.copytree(full, part)
    for p in (part / "checkpoints").iterdir():
        if p.name != "step_1024.pt":
            p.unlink()
    train(load_config([f"resume={part / 'checkpoints' / 'step_1024.pt'}", "logger.progress=false"]))
    a = comparable(read_metrics(full / "metrics.jsonl"))
    b = comparable(read_metrics(part / "metrics.jsonl"))
    assert len(a) == len(b) and len(a) > 10
    assert a == b
    wa = ckpt.load(full / "checkpoints" / "latest.pt")["agent"]["model"]
    wb = ckpt.load(part / "checkpoints" / "latest.pt")["agent"]["model"]
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=0)


def test_normaliser_statistics_round_trip(tmp_path: Path) -> None:
    import numpy as np

    from reprl.envs import make_vector_env

    run = tmp_path / "norm"
    cfg = load_config(
        [
            *SMALL,
            "env.normalize_obs=true",
            "env.normalize_reward=true",
            "total_steps=1024",
            f"run_dir={run}",
        ]
    )
    train(cfg)
    state = ckpt.load(run / "checkpoints" / "latest.pt")
    saved = ckpt.to_numpy(state["source"]["env"])["normalizer"]
    assert saved["obs_rms"]["count"] > 1000  # statistics really accumulated
    # A fresh env (as evaluation and resume build) restores exactly those statistics.
    envs = make_vector_env(cfg.env, seed=0, num_envs=2, evaluation=True)
    envs.load_normalizer_state(saved)
    restored = envs.normalizer_state()
    for key in ("mean", "var", "count"):
        np.testing.assert_array_equal(restored["obs_rms"][key], saved["obs_rms"][key])
        np.testing.assert_array_equal(restored["ret_rms"][key], saved["ret_rms"][key])
    envs.close()
    from reprl.evaluation.cli import evaluate_checkpoint

    result = evaluate_checkpoint(str(run), 2, True, None, seed=0)
    assert result["episodes"] == 2


def test_init_from_loads_weights_into_new_run(tmp_path: Path) -> None:
    src = tmp_path / "src"
    train(load_config([*SMALL, "total_steps=1024", f"run_dir={src}"]))
    dst = tmp_path / "dst"
    cfg = load_config(
        [
            *SMALL,
            "total_steps=128",
            "agent.lr=0.0",
            "eval.every_steps=0",
            "eval.at_end=false",
            f"init_from={src}",
            f"run_dir={dst}",
        ]
    )
    train(cfg)
    a = ckpt.load(src / "checkpoints" / "latest.pt")["agent"]["model"]
    b = ckpt.load(dst / "checkpoints" / "latest.pt")["agent"]["model"]
    for k in a:  # lr 0: weights unchanged from the source run
        torch.testing.assert_close(a[k], b[k])


def test_checkpoints_rotate_keep_last(tmp_path: Path) -> None:
    run = tmp_path / "rot"
    train(
        load_config(
            [
                *SMALL,
                "checkpoint.every_steps=256",
                "checkpoint.keep_last=2",
                "eval.every_steps=0",
                f"run_dir={run}",
            ]
        )
    )
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    # two newest periodic ones (the final step is one of them) plus latest.pt
    assert names == ["latest.pt", "step_2816.pt", "step_3072.pt"], names
    assert ckpt.load(run / "checkpoints" / "latest.pt")["run_state"]["global_step"] == 3072


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_saves_and_exits_cleanly(tmp_path: Path, sig: signal.Signals) -> None:
    run = tmp_path / "sig"
    args = [a for a in SMALL if not a.startswith("total_steps")]
    proc = subprocess.Popen(
        [sys.executable, "-m", "reprl", "train", *args, "total_steps=10000000", f"run_dir={run}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    metrics = run / "metrics.jsonl"
    deadline = time.time() + 90
    while time.time() < deadline and not (metrics.exists() and metrics.stat().st_size > 0):
        time.sleep(0.2)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert "interrupted at step" in out and "resume=" in out
    state = ckpt.load(ckpt.resolve(run))
    assert state["run_state"]["global_step"] > 0


def test_nan_loss_stops_with_message_and_keeps_checkpoint(tmp_path: Path, capsys) -> None:
    from reprl.cli import main

    run = tmp_path / "nan"
    # A learning rate growing from 0 to 1e30 blows the losses up after a few iterations, once
    # good checkpoints exist.
    code = main(
        [
            "train",
            *SMALL,
            "total_steps=200000",
            "agent.lr={type: linear, start: 0, end: 1e30}",
            "agent.max_grad_norm=null",
            "checkpoint.every_steps=128",
            f"run_dir={run}",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert "became nan" in err or "became inf" in err
    assert "at step" in err and len(err.strip().splitlines()) == 1
    good = ckpt.load(ckpt.resolve(run))  # a loadable, finite checkpoint is still there
    assert all(torch.isfinite(v).all() for v in good["agent"]["model"].values())

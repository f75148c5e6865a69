"""Exact resume for off-policy agents: with the replay buffer in the checkpoint, a DQN, SAC,
TD3 or DDPG run stopped at a checkpoint and resumed logs the uninterrupted run's metrics and
ends with bit-identical weights, target networks, optimizer state (every part: critic, actor
and SAC's entropy coefficient), SAC's log alpha, counters and replay buffer. Without the
buffer the resumed run starts empty, says so, and still runs."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from reprl.config import load_config
from reprl.errors import CheckpointError
from reprl.runs import checkpoint as ckpt
from reprl.runs.logger import read_metrics
from reprl.train import rng_state, set_rng_state, train

MID = 1024
"""The checkpoint the interrupted run resumes from (every iteration is 2 envs x 16 steps)."""

SMALL = [
    "experiment=dqn_cartpole",
    "env.num_envs=2",
    "total_steps=2048",
    "agent.train_freq=16",
    "agent.gradient_steps=4",
    "agent.learning_starts=64",
    "agent.batch_size=32",
    "agent.buffer_size=800",  # 400 per env < 512 steps per env at the checkpoint: wrapped
    "agent.replay_in_checkpoint=true",
    "model.policy.hidden=[32]",
    f"checkpoint.every_steps={MID}",
    "checkpoint.keep_last=10",
    "eval.every_steps=512",  # one evaluation before the checkpoint, one with it
    "eval.episodes=2",
    "stop_on_solved=false",
    "logger.progress=false",
    "logger.tensorboard=false",
    "logger.log_every_steps=40",  # windows of 1-2 iterations; the checkpoint falls inside one
]

CASES = {
    # Epsilon-greedy, hard target copy every 20 gradient steps.
    "plain": [
        "agent.target_update_unit=gradient_steps",
        "agent.target_update_period=20",
    ],
    # Every Rainbow switch: sampling from the priority tree, noise from the global torch RNG.
    "rainbow": [
        "agent.double=true",
        "model.policy.dueling=true",
        "agent.n_step=3",
        "agent.prioritized=true",
        "model.policy.num_atoms=51",
        "model.policy.noisy=true",
        "agent.target_update_unit=gradient_steps",
        "agent.target_update_period=50",
    ],
    # Epsilon-greedy mid-schedule at the checkpoint; a target period (100) that is not a
    # multiple of the iteration (32 steps), whose last update before the checkpoint (at 1024)
    # shares its period with the first call after it (1056), so the restored step of the
    # last update decides; and sampling evaluation, which draws from the same torch RNG.
    "epsilon_env_steps": [
        "agent.epsilon={type: linear, start: 1.0, end: 0.05, end_frac: 0.75}",
        "agent.target_update_unit=env_steps",
        "agent.target_update_period=100",
        "eval.deterministic=false",
    ],
}


def comparable(records: list[dict]) -> list[dict]:
    """Drop timing fields, which legitimately differ between runs."""
    return [
        {k: v for k, v in r.items() if k != "wall_time" and not k.startswith("perf/")}
        for r in records
    ]


def assert_identical(a: Any, b: Any, where: str) -> None:
    """Bitwise equality of two nested state structures (tensors, arrays, numbers)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            assert_identical(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_identical(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype, where
        assert torch.equal(a, b), where
    else:
        assert a == b, where


def interrupted_copy(full: Path, dst: Path, step: int) -> Path:
    """The run folder as it was when the run died right after checkpoint ``step``."""
    shutil.copytree(full, dst)
    for p in (dst / "checkpoints").iterdir():
        if p.name != f"step_{step}.pt":
            p.unlink()
    return dst / "checkpoints" / f"step_{step}.pt"


def run_and_resume(args: list[str], tmp_path: Path, mid: int) -> tuple[Path, Path]:
    """Train ``args`` uninterrupted into ``full``, then resume a copy of it that died right
    after checkpoint ``mid`` into ``part``; return both run folders."""
    full = tmp_path / "full"
    train(load_config([*args, f"run_dir={full}"]))
    part_ckpt = interrupted_copy(full, tmp_path / "part", mid)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an exact resume warns about nothing
        train(load_config([f"resume={part_ckpt}", "logger.progress=false"]))
    return full, part_ckpt.parent.parent


def assert_same_runs(full: Path, part: Path, total_steps: int) -> list[dict]:
    """Equal metrics (timings aside) and bit-identical final agent, source and RNG states;
    returns the uninterrupted run's metrics."""
    a = comparable(read_metrics(full / "metrics.jsonl"))
    b = comparable(read_metrics(part / "metrics.jsonl"))
    assert len(a) == len(b)
    assert a == b
    end_a = ckpt.load(full / "checkpoints" / "latest.pt")
    end_b = ckpt.load(part / "checkpoints" / "latest.pt")
    assert end_a["run_state"]["global_step"] == end_b["run_state"]["global_step"] == total_steps
    # Weights, targets, optimizers, counters; then buffer, priorities, sampling RNG.
    assert_identical(end_a["agent"], end_b["agent"], "agent")
    assert_identical(end_a["source"], end_b["source"], "source")
    assert_identical(end_a["rng"], end_b["rng"], "rng")
    return a


@pytest.mark.parametrize("case", list(CASES))
def test_dqn_resume_with_replay_equals_uninterrupted(case: str, tmp_path: Path) -> None:
    full, part = run_and_resume([*SMALL, *CASES[case]], tmp_path, MID)
    mid = ckpt.load(full / "checkpoints" / f"step_{MID}.pt")
    buffer = mid["source"]["buffer"]
    count = int(buffer["count"])
    assert count * 2 == MID and count > int(buffer["capacity_per_env"])  # the ring wrapped
    assert mid["agent"]["gradient_steps"] > 50
    records = assert_same_runs(full, part, 2048)
    assert len(records) > 50
    assert any("losses/rl_q" in r for r in records if r["global_step"] > MID)  # learning resumed


CONTINUOUS_MID = 320
"""Checkpoint of the interrupted SAC/TD3/DDPG run (every iteration is 1 env x 16 steps)."""

CONTINUOUS_SMALL = [
    "env.num_envs=1",
    "total_steps=640",
    "agent.learning_starts=64",  # uniform random warm-up actions until then
    "agent.train_freq=16",
    # 3 per iteration from the 4th: 51 gradient steps at the checkpoint, an odd number, so
    # with TD3's policy_delay 2 the first step after the resume updates the actor.
    "agent.gradient_steps=3",
    "agent.batch_size=32",
    "agent.buffer_size=256",  # < 320 steps at the checkpoint: the ring wrapped
    "agent.replay_in_checkpoint=true",
    "model.policy.actor_hidden=[32]",
    "model.policy.critic_hidden=[32]",
    f"checkpoint.every_steps={CONTINUOUS_MID}",
    "checkpoint.keep_last=10",
    "eval.every_steps=160",  # evaluations before, with and after the checkpoint
    "eval.episodes=1",
    "stop_on_solved=false",
    "logger.progress=false",
    "logger.tensorboard=false",
    "logger.log_every_steps=18",  # windows of 1-2 iterations; the checkpoint falls inside one
]

CONTINUOUS_CASES = {
    # Autotuned alpha: log alpha and its Adam must round-trip; sampled actions and targets
    # draw from the global torch RNG.
    "sac": ["experiment=sac_pendulum", "agent.autotune=true"],
    # policy_delay 2: the actor and the targets move every 2nd gradient step, counted by the
    # restored gradient-step counter; exploration and target-smoothing noise from torch's RNG.
    "td3": ["experiment=td3_pendulum"],
    # One critic, actor and targets every step, no target smoothing.
    "ddpg": ["experiment=ddpg_pendulum"],
}


@pytest.mark.parametrize("case", list(CONTINUOUS_CASES))
def test_continuous_resume_with_replay_equals_uninterrupted(case: str, tmp_path: Path) -> None:
    args = [*CONTINUOUS_CASES[case], *CONTINUOUS_SMALL]
    full, part = run_and_resume(args, tmp_path, CONTINUOUS_MID)
    mid = ckpt.load(full / "checkpoints" / f"step_{CONTINUOUS_MID}.pt")
    buffer = mid["source"]["buffer"]
    assert int(buffer["count"]) == CONTINUOUS_MID > int(buffer["capacity_per_env"])
    agent = mid["agent"]
    assert agent["gradient_steps"] == 51
    delay = 2 if case == "td3" else 1
    assert agent["actor_updates"] == 51 // delay
    parts = {"critic", "actor"} | ({"alpha"} if case == "sac" else set())
    assert set(agent["optimizer"]) == parts
    if case == "sac":  # log alpha has moved from log(1.0) = 0, and its Adam has state
        assert agent["extra"]["alpha"].item() != 0.0
        assert agent["optimizer"]["alpha"]["state"][0]["step"].item() == 51
    records = assert_same_runs(full, part, 640)
    after = [r for r in records if r["global_step"] > CONTINUOUS_MID]
    assert any("losses/rl_actor" in r for r in after)  # learning resumed
    assert any("eval/mean_return" in r for r in after)
    end = ckpt.load(full / "checkpoints" / "latest.pt")["agent"]
    assert end["gradient_steps"] == 3 * (640 // 16 - 3)
    assert end["actor_updates"] == end["gradient_steps"] // delay


def test_dqn_resume_without_replay_starts_empty_and_warns(tmp_path: Path) -> None:
    full = tmp_path / "full"
    args = [a for a in SMALL if not a.startswith("agent.replay_in_checkpoint")]
    train(load_config([*args, f"run_dir={full}"]))
    mid = ckpt.load(full / "checkpoints" / f"step_{MID}.pt")
    assert "buffer" not in mid["source"]
    part_ckpt = interrupted_copy(full, tmp_path / "part", MID)
    with pytest.warns(UserWarning, match="replay buffer"):
        result = train(load_config([f"resume={part_ckpt}", "logger.progress=false"]))
    assert result.global_step == 2048
    records = read_metrics(part_ckpt.parent.parent / "metrics.jsonl")
    after = [r for r in records if "charts/replay_size" in r and r["global_step"] > MID]
    before = [r for r in records if "charts/replay_size" in r and r["global_step"] <= MID]
    assert before[-1]["charts/replay_size"] == 800.0 and "losses/rl_q" in before[-1]
    # The first iteration after resume stored 2 x 16 transitions into an empty buffer, too
    # few to learn from (learning_starts 64); learning then resumes.
    assert after[0]["charts/replay_size"] == 32.0 and "losses/rl_q" not in after[0]
    losses = [r["losses/rl_q"] for r in after if "losses/rl_q" in r]
    assert len(losses) > 20 and np.isfinite(losses).all()


def test_resume_into_a_buffer_of_another_size_fails_clearly(tmp_path: Path) -> None:
    """A saved buffer that does not fit (here: agent.buffer_size changed on resume) is a
    CheckpointError naming the difference and the option, raised before the run folder is
    touched; not a NumPy broadcast traceback."""
    run = tmp_path / "run"
    short = [f"total_steps={MID}", "eval.every_steps=0", "eval.at_end=false", f"run_dir={run}"]
    train(load_config([*SMALL, *short]))
    config_before = (run / "config.yaml").read_text()
    metrics_before = (run / "metrics.jsonl").read_text()
    with pytest.raises(CheckpointError) as info:
        train(load_config([f"resume={run}", "agent.buffer_size=600", "total_steps=2048"]))
    message = str(info.value)
    assert "capacity_per_env is 400 in the checkpoint but 300 here" in message
    assert "agent.buffer_size" in message and "\n" not in message  # one line for the CLI
    assert (run / "config.yaml").read_text() == config_before
    assert (run / "metrics.jsonl").read_text() == metrics_before


@pytest.mark.parametrize(
    "device",
    [
        "cpu",
        pytest.param(
            "cuda",
            marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
        ),
    ],
)
def test_rng_state_round_trip_through_a_checkpoint(device: str, tmp_path: Path) -> None:
    """Every generator acting can draw from (torch CPU and, on a GPU, the device's own,
    NumPy, Python) continues where it was saved."""
    import random

    dev = torch.device(device)

    def draws() -> list[Any]:
        return [
            torch.rand(4),
            torch.rand(4, device=dev).cpu(),
            torch.randn(3, device=dev).cpu(),
            np.random.rand(3),
            random.random(),
        ]

    torch.manual_seed(5), np.random.seed(5), random.seed(5)
    draws()  # move every stream away from its seed
    path = ckpt.save(tmp_path / "rng.pt", {"config": {}, "agent": {}, "rng": rng_state(dev)})
    expected = draws()
    torch.manual_seed(6), np.random.seed(6), random.seed(6)
    set_rng_state(ckpt.load(path)["rng"], dev)
    for a, b in zip(expected, draws(), strict=True):
        assert (a == b).all() if hasattr(a, "all") else a == b


R2D2_SMALL = [
    "experiment=r2d2_catch",
    "env.num_envs=2",
    "total_steps=1024",
    "agent.train_freq=16",
    "agent.gradient_steps=2",
    "agent.learning_starts=64",
    "agent.batch_size=8",
    "agent.burn_in=2",
    "agent.seq_len=4",
    "agent.buffer_size=400",  # 200 per env < 256 steps per env at the checkpoint: wrapped
    "agent.target_update_period=7",
    "agent.replay_in_checkpoint=true",
    "checkpoint.every_steps=512",
    "checkpoint.keep_last=10",
    "eval.every_steps=256",
    "eval.episodes=2",
    "stop_on_solved=false",
    "logger.progress=false",
    "logger.tensorboard=false",
    "logger.log_every_steps=48",
]


def test_r2d2_resume_with_replay_equals_uninterrupted(tmp_path: Path) -> None:
    """R2D2: the actors' recurrent state carried across iterations, the stored per-step
    states, sequence priorities and the target copy all round-trip (the checkpoint falls
    between two target copies and in the middle of Catch episodes)."""
    full, part = run_and_resume(R2D2_SMALL, tmp_path, 512)
    mid = ckpt.load(full / "checkpoints" / "step_512.pt")
    buffer = mid["source"]["buffer"]
    assert int(buffer["count"]) == 256 > int(buffer["capacity_per_env"])  # the ring wrapped
    assert mid["agent"]["gradient_steps"] % 7 != 0  # mid-period of the target copy
    assert len(buffer["state"]) == 2  # stored recurrent states
    records = assert_same_runs(full, part, 1024)
    assert any("losses/rl_q" in r for r in records if r["global_step"] > 512)

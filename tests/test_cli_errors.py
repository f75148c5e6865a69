"""Bad input: each mistake exits non-zero with one line naming the key and valid choices."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from reprl.cli import main


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    err = capsys.readouterr().err.strip()
    return code, err


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["train", "experiment=nope"], "experiment=nope: unknown option; valid: a2c_cartpole"),
        (
            ["train", "agent=foo"],
            "agent=foo: unknown option; valid: a2c, alphazero, ddpg, der, dqn, ppo, r2d2, rainbow, "
            "sac, td3",
        ),
        (
            ["train", "experiment=ppo_cartpole", "agent.lrr=1"],
            "agent.lrr: unknown key; did you mean 'lr'",
        ),
        (["train", "agent.num_steps=abc"], "agent.num_steps: expected int, got 'abc'"),
        (["train", "env.id=CartPol-v1"], "unknown env id 'CartPol-v1'; did you mean 'CartPole-v1'"),
        (
            ["train", "model/backbone=resnet"],
            "model/backbone=resnet: unknown option; valid: conv, impala_cnn",
        ),
        (["train", "model.backbone.name=resnet"], "model.backbone.name: unknown backbone 'resnet'"),
        (["train", "sed=3"], "sed: unknown key; did you mean 'seed'"),
        (["train", "env.backend=warp"], "unknown vector backend 'warp'"),
        (["train", "env.num_envs=0"], "env.num_envs must be >= 1"),
        (
            ["train", "agent.lr={type: linaer, start: 1}"],
            "agent.lr.type: unknown schedule 'linaer'",
        ),
        (["train", "env.backend=ale"], "backend 'ale'"),
        (["config", "eval.episodes=zero"], "eval.episodes: expected int"),
        (["eval", "/no/such/run"], "no such run folder or checkpoint"),
        (["train", "seed=1.5"], "seed: expected int, got 1.5"),
        (["train", "device=tpu"], "device: unknown 'tpu'; valid: auto, cpu"),
        (["train", "logger.wandb_mode=onlin"], "logger.wandb_mode: unknown 'onlin'"),
        (["train", "resume=/nonexistent"], "no such run folder or checkpoint: /nonexistent"),
        (["train", "model.backbone.hidden_sizes=64"], "hidden_sizes: expected a list"),
        (["train", "eval.epsilon=1.5"], "eval.epsilon: must be in [0, 1], got 1.5"),
        (
            ["train", "experiment=sac_pendulum", "eval.epsilon=0.05"],
            "eval.epsilon: epsilon-greedy evaluation needs discrete actions; Pendulum-v1",
        ),
    ],
)
def test_bad_input_is_one_line(capsys, argv, needle) -> None:
    code, err = run_cli(capsys, *argv)
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    assert needle in err, err
    assert "Traceback" not in err


def test_corrupt_checkpoint_is_reported(capsys, tmp_path: Path) -> None:
    bad = tmp_path / "latest.pt"
    bad.write_bytes(b"this is not a checkpoint")
    code, err = run_cli(capsys, "eval", str(bad))
    assert code == 2
    assert "corrupt or unreadable checkpoint" in err and len(err.splitlines()) == 1


def test_existing_run_dir_is_not_overwritten(capsys, tmp_path: Path) -> None:
    (tmp_path / "metrics.jsonl").write_text("")
    code, err = run_cli(capsys, "train", f"run_dir={tmp_path}")
    assert code == 2 and "already holds a run" in err and f"resume={tmp_path}" in err


def test_real_process_prints_no_traceback() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "reprl", "train", "experiment=ppo_cartpole", "agent.clip=0.1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "reprl train: error: agent.clip: unknown key; did you mean 'clip_coef'? valid: "
        + proc.stderr.split("valid: ", 1)[1].strip()
    )
    assert "Traceback" not in proc.stderr


def test_list_and_config_work(capsys) -> None:
    assert main(["list", "experiments"]) == 0
    out = capsys.readouterr().out
    for name in (
        "ppo_cartpole",
        "a2c_cartpole",
        "ppo_acrobot",
        "ppo_lunarlander",
        "ppo_pendulum",
        "ppo_taxi",
        "ppo_atari",
    ):
        assert name in out
    assert main(["list", "agents"]) == 0
    assert "ppo" in capsys.readouterr().out
    assert main(["config", "experiment=ppo_cartpole"]) == 0
    out = capsys.readouterr().out
    assert "agent.gae_lambda" in out and "GAE lambda" in out

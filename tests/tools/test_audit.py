"""``reprl audit`` against hand-computed numbers: the Chain env simulated independently here,
CartPole's constant reward, and Atari reward clipping."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from reprl.cli import main
from reprl.config import load_config
from reprl.tools.audit import audit, collect, summarize

CHAIN_N = 10
CHAIN_LIMIT = CHAIN_N + 9  # Osband et al. 2016's truncation, as reprl's Chain family


def simulate_chain(num_envs: int, vector_steps: int, seed: int) -> tuple[list, list, list]:
    """Our own Chain-10 with next-step autoreset, driven by the audit's documented random
    policy: per-step rewards (autoreset steps left out), episode returns and lengths."""
    rng = np.random.default_rng(seed)
    state = [1] * num_envs
    elapsed = [0] * num_envs
    ret = [0.0] * num_envs
    resetting = [False] * num_envs
    rewards, returns, lengths = [], [], []
    for _ in range(vector_steps):
        actions = rng.integers(0, 2, num_envs)
        for i in range(num_envs):
            if resetting[i]:  # the action is ignored, the episode restarts
                state[i], elapsed[i], ret[i], resetting[i] = 1, 0, 0.0, False
                continue
            state[i] = state[i] + 1 if actions[i] == 1 else max(state[i] - 1, 0)
            reward = 1.0 if state[i] == CHAIN_N - 1 else 0.001 if state[i] == 0 else 0.0
            elapsed[i] += 1
            ret[i] += reward
            rewards.append(reward)
            if state[i] == CHAIN_N - 1 or elapsed[i] >= CHAIN_LIMIT:
                returns.append(ret[i])
                lengths.append(elapsed[i])
                resetting[i] = True
    return rewards, returns, lengths


def test_chain_audit_matches_hand_simulation() -> None:
    cfg = load_config(["env=chain", f"env.id=Chain-{CHAIN_N}-v0", "env.num_envs=3", "seed=5"])
    report = audit(cfg, steps=1500)  # 500 vector steps
    rewards, returns, lengths = simulate_chain(3, 500, seed=5)
    r = np.array(rewards)
    assert report["env_steps"] == 1500 and report["policy"] == "random"
    assert report["transforms"] == {
        "clip_rewards": False,
        "episodic_life": False,
        "normalize_reward": False,
    }
    raw = report["raw_reward"]
    assert raw["count"] == len(rewards)
    assert raw["mean"] == pytest.approx(r.mean())
    assert raw["std"] == pytest.approx(r.std())
    assert (raw["min"], raw["max"]) == (r.min(), r.max())
    counts = Counter(rewards)
    assert 1.0 in counts, "the seed reaches the goal at least once"
    assert {v["value"]: v["count"] for v in raw["top_values"]} == dict(counts)
    for v in raw["top_values"]:
        assert v["freq"] == pytest.approx(counts[v["value"]] / len(rewards))
    assert not raw["continuous"] and raw["distinct"] == len(counts)
    # outliers: only the rare goal rewards are > 3 std away and outside the IQR fences
    z = (r - r.mean()) / r.std()
    q1, q3 = np.percentile(r, [25, 75])
    fence = (r < q1 - 1.5 * (q3 - q1)) | (r > q3 + 1.5 * (q3 - q1))
    assert raw["outliers"]["count"] == int(((np.abs(z) > 3) & fence).sum()) == counts[1.0]
    assert raw["outliers"]["largest"]["value"] == 1.0
    # no training wrapper changes Chain's rewards: the learner sees them (as float32)
    learner = report["learner_reward"]
    assert learner["count"] == raw["count"]
    assert learner["mean"] == pytest.approx(raw["mean"], rel=1e-6)
    # episodes
    eps = report["raw_episodes"]
    assert eps["return"]["count"] == len(returns)
    assert eps["return"]["mean"] == pytest.approx(np.mean(returns))
    assert eps["return"]["std"] == pytest.approx(np.std(returns))
    assert eps["return"]["max"] == pytest.approx(max(returns))
    assert eps["return"]["median"] == pytest.approx(np.median(returns))
    assert eps["length"]["mean"] == pytest.approx(np.mean(lengths))
    assert eps["length"]["min"] == min(lengths) and eps["length"]["max"] == CHAIN_LIMIT
    assert report["learner_episodes"]["length"] == eps["length"]
    json.dumps(report)  # JSON-able


def test_cartpole_constant_reward() -> None:
    report = audit(load_config(["env=cartpole", "env.num_envs=2"]), steps=200)
    for stream in ("raw_reward", "learner_reward"):
        s = report[stream]
        assert (s["mean"], s["std"], s["min"], s["max"], s["distinct"]) == (1, 0, 1, 1, 1)
        assert s["top_values"] == [{"value": 1.0, "count": s["count"], "freq": 1.0}]
        assert s["outliers"] == {"count": 0, "largest": None}
    eps = report["raw_episodes"]
    assert eps["return"] == eps["length"]  # reward 1 per step
    assert eps["return"]["count"] >= 2


@pytest.mark.atari
def test_atari_reward_clipping() -> None:
    cfg = load_config(
        [
            "experiment=ppo_atari",
            "env.id=ALE/SpaceInvaders-v5",
            "env.num_envs=2",
            "env.atari.episodic_life=false",
        ]
    )
    data = collect(cfg, steps=600)
    assert data.transforms["clip_rewards"]
    assert data.raw_rewards is not None and data.raw_rewards.max() > 1  # invaders score 5-30
    # no step is left out of one stream and not the other: the learner sees sign(raw)
    np.testing.assert_array_equal(data.learner_rewards, np.sign(data.raw_rewards))
    report = summarize(data)
    assert {v["value"] for v in report["learner_reward"]["top_values"]} <= {-1.0, 0.0, 1.0}
    assert report["raw_reward"]["distinct"] > report["learner_reward"]["distinct"]


def test_agent_policy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from reprl.train import train

    run = tmp_path / "run"
    tiny = ["logger.progress=false", "logger.tensorboard=false", "eval.every_steps=0"]
    train(load_config(["experiment=ppo_cartpole", "total_steps=512", *tiny, f"run_dir={run}"]))
    report = audit(load_config(["env=chain"]), steps=256, agent_path=run)
    assert report["env_id"] == "CartPole-v1"  # the checkpoint's own env config, not Chain
    assert report["policy"] == f"agent {run}" and report["num_envs"] == 8
    assert report["learner_reward"]["top_values"][0]["value"] == 1.0
    # overrides and --agent together: one-line error
    assert main(["audit", "--agent", str(run), "env=cartpole"]) == 2
    assert "drop the overrides" in capsys.readouterr().err


def test_cli_writes_files_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "audit"
    # in-process: the same code as ``python -m reprl audit ...`` without a second interpreter
    assert main(["audit", "env=cartpole", "--steps", "200", "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    report = json.loads((out / "audit.json").read_text())
    assert report["env_id"] == "CartPole-v1" and report["env_steps"] == 200
    png = (out / "audit.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert "per-step rewards" in stdout and "audit.json" in stdout

    assert main(["audit", "env=nope", "--steps", "10"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cartpole" in err
    assert main(["audit", "env=cartpole", "--steps", "0", "--out", str(tmp_path / "x")]) == 2
    assert "--steps" in capsys.readouterr().err

"""reprl collect (datasets from a random policy or a checkpoint, in reprl's episode format)
and reprl probe (the probes on any checkpoint's frozen backbone), end to end with
pretraining on the collected data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from reprl.cli import main
from reprl.config import load_config
from reprl.data.datasets.episodes import load_episodes, load_metadata
from reprl.tools.collect import CollectRequest, collect
from reprl.train import train

QUIET = ["logger.progress=false", "logger.tensorboard=false"]


def test_collect_random_writes_whole_consistent_episodes(tmp_path: Path) -> None:
    out = tmp_path / "data"
    summary = collect(
        CollectRequest("random", ["experiment=ppo_cartpole", "env.num_envs=3"], 300, out),
        log=lambda *_: None,
    )
    episodes = load_episodes(out)
    meta = load_metadata(out)
    assert summary["steps"] >= 300 and meta["num_steps"] == summary["steps"]
    assert sum(len(e["reward"]) for e in episodes) == summary["steps"]
    assert meta["source"]["kind"] == "random"
    for e in episodes:
        n = len(e["reward"])
        assert e["obs"].shape == (n + 1, 4) and (e["reward"] == 1.0).all()
        assert e["terminated"][-1] or e["truncated"][-1]
        assert not (e["terminated"][:-1] | e["truncated"][:-1]).any()
        # CartPole: consecutive observations follow the dynamics (the cart moves by tau * v)
        np.testing.assert_allclose(
            e["obs"][1:, 0], e["obs"][:-1, 0] + 0.02 * e["obs"][:-1, 1], atol=1e-5
        )


def test_collect_from_a_checkpoint_records_the_agents_actions(tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(load_config(["experiment=ppo_cartpole", "total_steps=1024", *QUIET, f"run_dir={run}"]))
    out = tmp_path / "data"
    collect(CollectRequest(str(run), [], 100, out, deterministic=True), log=lambda *_: None)
    from reprl.evaluation.cli import load_agent

    agent, _, _ = load_agent(run)
    for e in load_episodes(out):
        obs = torch.from_numpy(e["obs"][:-1])[:, None]
        action, _, _ = agent.act(obs, None, torch.zeros(len(obs), 1, dtype=torch.bool), True)
        np.testing.assert_array_equal(action[:, 0].numpy(), e["action"])
    assert load_metadata(out)["source"]["checkpoint"] == str(run)


@pytest.mark.atari
def test_pretrain_on_collected_atari_data_then_probe_the_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    assert (
        main(
            [
                "collect",
                "random",
                "experiment=ppo_atari",
                "env.num_envs=2",
                "steps=400",
                f"out={data}",
            ]
        )
        == 0
    )
    run = tmp_path / "pre"
    train(
        load_config(
            [
                "experiment=byol_pretrain_atari",
                "env.id=ALE/Breakout-v5",
                "dataset=episodes",
                f"dataset.root={data}",
                "trainer.batch_size=8",
                "total_steps=32",
                "probe.num_samples=100",
                *QUIET,
                f"run_dir={run}",
            ]
        )
    )
    capsys.readouterr()
    assert main(["probe", str(run), "probe.num_samples=120", "--json"]) == 0
    scores = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"probe/reward_f1", "probe/action_f1"} <= set(scores)
    assert 0.0 <= scores["probe/action_f1"] <= 1.0
    assert main(["probe", str(run), "dataset.root=/nope/nowhere"]) == 2
    # the random-encoder baseline, with the probe_atari preset's protocol on the same data
    capsys.readouterr()
    baseline = ["probe", "random", "experiment=probe_atari", "env.id=ALE/Breakout-v5"]
    baseline += ["dataset=episodes", f"dataset.root={data}", "probe.num_samples=120", "--json"]
    assert main(baseline) == 0
    random_scores = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0.0 <= random_scores["probe/action_f1"] <= 1.0
    assert main(["probe", "random", "dataset.root=x"]) == 2  # needs experiment=


def test_collect_and_probe_mistakes_are_one_line(tmp_path: Path, capsys) -> None:
    assert main(["collect", "random", "experiment=ppo_cartpole", "steps=10"]) == 2
    assert "steps=N and out=PATH" in capsys.readouterr().err
    assert main(["probe", str(tmp_path / "missing")]) == 2

"""``reprl suite pretrain``: pretrain -> probe -> finetune over two games of generated
DQN-Replay data, end to end (tables with probe F1s and RL scores, resume without redoing
finished runs, finetuning only after its game's pretraining, a changed setting refused),
the routing of overrides to the stages, and one-line errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

pytest.importorskip("rliable")

from reprl.cli import main  # noqa: E402
from reprl.runs import checkpoint as ckpt  # noqa: E402
from reprl.suite.pipeline import split_overrides  # noqa: E402
from tests.test_offline_data import write_checkpoint  # noqa: E402
from tests.test_pretrain import pong_like_data  # noqa: E402

GAMES = {"Pong": 6, "Breakout": 4}
"""Generated games -> actions used (within each game's minimal action set)."""

TINY = [
    "dataset.checkpoints=[0]",
    "trainer.batch_size=16",
    "trainer.lr=1e-3",
    "pretrain.total_steps=64",
    "probe.num_samples=300",
    "probe.max_iter=50",
    "pretrain.checkpoint.every_steps=0",
    "finetune.total_steps=32",
    "finetune.env.num_envs=2",
    "agent.num_steps=8",
    "agent.num_minibatches=2",
    "agent.num_epochs=1",
    "eval.episodes=1",
    "finetune.env.max_episode_steps=50",
    "finetune.model.backbone.freeze=true",
    "logger.tensorboard=false",
]


@pytest.fixture(scope="module")
def replay_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dqn_replay")
    for k, (game, actions) in enumerate(GAMES.items()):
        data = pong_like_data(n=600, seed=k)
        data["action"] = data["action"] % actions  # parity (what moves the square) is kept
        write_checkpoint(root / game / "1" / "replay_logs", 0, data)
    return root


def suite(capsys, out: Path, root: Path, *extra: str) -> tuple[int, str, str]:
    argv = ["suite", "pretrain", f"dataset.root={root}", "seeds=2", "--games", "Pong,Breakout"]
    code = main([*argv, *TINY, "--out", str(out), "--workers", "2", "--reps", "200", *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


def backbone(run: Path) -> dict[str, torch.Tensor]:
    model = ckpt.load(ckpt.resolve(run))["agent"]["model"]
    return {k: v for k, v in model.items() if k.startswith("backbone.")}


@pytest.mark.atari
def test_pipeline_end_to_end_resumes_and_orders_stages(
    capsys, tmp_path: Path, replay_root: Path
) -> None:
    out = tmp_path / "suite"
    code, stdout, err = suite(capsys, out, replay_root)
    assert code == 0, stdout + err
    lines = stdout.splitlines()

    def at(needle: str) -> int:
        return next(i for i, line in enumerate(lines) if needle in line)

    for game in GAMES:
        pre = out / game / "pretrain"
        result = json.loads((pre / "result.json").read_text())
        assert result["evaluation"] == "probe" and result["dataset"] == f"dqn_replay:{game}"
        assert result["env_id"] == f"{game}NoFrameskip-v4" and result["global_step"] == 64
        summary = yaml.safe_load((pre / "summary.yaml").read_text())["final_eval"]
        for key in ("probe/reward_f1", "probe/action_f1"):
            assert result[key] == pytest.approx(summary[key]) and 0.0 <= result[key] <= 1.0
        pretrained = backbone(pre)
        for seed in (1, 2):
            run = out / game / f"seed_{seed}"
            # the finetuning run started only after its game's pretraining had finished ...
            assert at(f"{game}/pretrain: done") < at(f"{game}/seed_{seed}: started")
            # ... from its backbone (frozen here, so still equal at the end)
            finetuned = backbone(run)
            assert finetuned.keys() == pretrained.keys()
            assert all(torch.equal(pretrained[k], finetuned[k]) for k in pretrained)
            saved = yaml.safe_load((run / "config.yaml").read_text())
            assert saved["model"]["backbone"]["init_from"] == str(pre)
            assert json.loads((run / "result.json").read_text())["env_id"] == result["env_id"]

    # One table: probe F1s of each game's backbone, RL score over seeds, HNS, aggregates.
    results = read_csv(out / "results.csv")
    assert [(r["game"], int(r["seed"])) for r in results] == [
        (g, s) for g in ("Breakout", "Pong") for s in (1, 2)
    ]
    table = {r["game"]: r for r in read_csv(out / "table.csv")}
    for game in GAMES:
        probes = json.loads((out / game / "pretrain" / "result.json").read_text())
        row = table[game]
        assert float(row["probe_reward_f1"]) == pytest.approx(probes["probe/reward_f1"])
        assert float(row["probe_action_f1"]) == pytest.approx(probes["probe/action_f1"])
        mean = np.mean([float(r["score"]) for r in results if r["game"] == game])
        assert float(row["mean_score"]) == pytest.approx(mean) and row["seeds"] == "2"
        rnd, human = float(row["random"]), float(row["human"])
        assert float(row["hns"]) == pytest.approx((mean - rnd) / (human - rnd))
    for metric in ("Mean", "Median", "IQM"):
        iv = table[f"{metric} HNS"]
        assert float(iv["hns_ci_low"]) <= float(iv["hns"]) <= float(iv["hns_ci_high"])
    md = (out / "table.md").read_text()
    assert "| game | probe_reward_f1 | probe_action_f1 | seeds |" in md and "| IQM |" in md
    assert "probe_reward_f1" in stdout and "IQM" in stdout
    settings = yaml.safe_load((out / "suite.yaml").read_text())
    assert settings["config"]["pretrain"]["name"] == "byol_pretrain_atari"
    assert settings["config"]["finetune"]["name"] == "ppo_finetune_atari"

    # Resume: nothing finished runs again; a finetuning run with a checkpoint but no result
    # continues from its checkpoint (its pretraining is done and is not redone).
    kept = {p: p.stat().st_mtime_ns for p in out.glob("*/*/result.json")}
    redo = out / "Breakout" / "seed_2" / "result.json"
    redo.unlink()
    code, stdout, err = suite(capsys, out, replay_root)
    assert code == 0, stdout + err
    assert "6 runs: 5 done already, 1 to resume, 0 to start" in stdout
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items() if p != redo)
    assert redo.is_file()
    assert (out / "Breakout" / "pretrain" / "run.log").read_text().count("=====") == 1
    assert "resume: " in (out / "Breakout" / "seed_2" / "run.log").read_text()

    # Other settings in the same folder: one line, nothing runs.
    code, stdout, err = suite(capsys, out, replay_root, "pretrain.dataset.run=7")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "other settings (config.pretrain.dataset.run: 1 saved, 7 now)" in err


def test_overrides_go_to_their_stage() -> None:
    pre, fine = split_overrides(
        [
            "pretrain=barlow_pretrain_atari",
            "finetune=rainbow_finetune_atari",
            "dataset.root=/d",
            "probe.num_samples=5",
            "trainer.lr=1e-3",
            "agent.lr=2e-4",
            "eval.episodes=3",
            "pretrain.total_steps=64",
            "finetune.total_steps=32",
            "+finetune.aux.byol.coef=1",
            "model.backbone.features_dim=256",
            "device=cpu",
        ]
    )
    both = ["model.backbone.features_dim=256", "device=cpu"]
    assert pre == [
        "experiment=barlow_pretrain_atari",
        "dataset.root=/d",
        "probe.num_samples=5",
        "trainer.lr=1e-3",
        "total_steps=64",
        *both,
    ]
    assert fine == [
        "experiment=rainbow_finetune_atari",
        "agent.lr=2e-4",
        "eval.episodes=3",
        "total_steps=32",
        "+aux.byol.coef=1",
        *both,
    ]


def test_finetuning_jobs_wait_for_their_pretraining(tmp_path: Path, replay_root: Path) -> None:
    from reprl.suite.pipeline import build_pipeline_jobs, prepare_pipeline
    from reprl.suite.suite import SuiteRequest

    request = SuiteRequest(
        "pretrain", [f"dataset.root={replay_root}", "seeds=2"], tasks=["Pong", "Breakout"]
    )
    plan = prepare_pipeline(request)
    pre, fine = build_pipeline_jobs(plan, tmp_path, None)
    assert set(pre) == {"Breakout", "Pong"} and all(not j.after for j in pre.values())
    for (game, seed), job in fine.items():
        assert job.after == (f"{game}/pretrain",)
        assert f"model.backbone.init_from='{tmp_path / game / 'pretrain'}'" in job.argv
        assert f"seed={seed}" in job.argv and f"env.id={game}NoFrameskip-v4" in job.argv
    assert f"dataset.game={'Pong'}" in pre["Pong"].argv and "seed=1" in pre["Pong"].argv


@pytest.mark.parametrize(
    "extra,needle",
    [
        (["total_steps=5"], "total_steps: differs between the stages; use pretrain.total_steps"),
        (["experiment=ppo_atari"], "experiment: a pipeline runs two"),
        (["finetune.model.backbone.init_from=x"], "model.backbone.init_from: set by the suite"),
        (["pretrain=ppo_atari"], "pretrain=ppo_atari: an RL experiment (no trainer)"),
        (["finetune=byol_pretrain_atari"], "finetune=byol_pretrain_atari: a pretraining"),
        (["finetune=ppo_pong"], "model.backbone differs between pretraining"),
        (["--games", "Pong,Alien"], "dataset.root: no DQN-Replay data for Alien"),
        (["finetune.agent.lrr=1"], "finetune (ppo_finetune_atari): agent.lrr: unknown key"),
    ],
)
def test_pipeline_errors_are_one_line(capsys, tmp_path: Path, replay_root: Path, extra, needle):
    argv = ["suite", "pretrain", f"dataset.root={replay_root}", "--out", str(tmp_path / "o")]
    code = main([*argv, *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("reprl suite: error: "), err
    assert needle in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()

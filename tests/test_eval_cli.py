"""``reprl eval``: JSON on the last line, deterministic evaluation, video recording; the run
folder holds what the issue promises (config, metrics with global_step, TensorBoard)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reprl.cli import main
from reprl.config import load_config
from reprl.runs.logger import read_metrics
from reprl.train import train


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("run") / "r"
    train(
        load_config(
            [
                "experiment=ppo_cartpole",
                "total_steps=2048",
                "eval.every_steps=1024",
                "eval.episodes=2",
                "logger.progress=false",
                f"run_dir={run}",
            ]
        )
    )
    return run


def test_run_folder_layout(run_dir: Path) -> None:
    assert (run_dir / "config.yaml").is_file()
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    records = read_metrics(run_dir / "metrics.jsonl")
    assert all("global_step" in r for r in records)
    keys = {k.split("/")[0] for r in records for k in r if "/" in k}
    assert {"charts", "losses", "stats", "perf", "eval"} <= keys
    assert (run_dir / "checkpoints" / "latest.pt").is_file()


def test_eval_json_last_line(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", str(run_dir), "--episodes", "3", "--deterministic", "--json"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    result = json.loads(last)
    assert result["episodes"] == 3 and len(result["returns"]) == 3
    assert result["mean_return"] == pytest.approx(sum(result["returns"]) / 3)


def test_eval_video(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import imageio.v2 as imageio

    video = tmp_path / "play.mp4"
    assert (
        main(["eval", str(run_dir), "--episodes", "1", "--deterministic", "--video", str(video)])
        == 0
    )
    reader = imageio.get_reader(video)
    frames = reader.count_frames()
    length = json.loads(json.dumps(read_metrics(run_dir / "metrics.jsonl")[-1]))
    assert frames >= 10 and reader.get_data(0).ndim == 3
    assert length["global_step"] == 2048


def test_wandb_offline_never_logs_the_key(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("wandb")
    secret = "0123456789abcdef0123456789abcdef01234567"
    monkeypatch.setenv("WANDB_API_KEY", secret)
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = tmp_path / "w"
    train(
        load_config(
            [
                "experiment=ppo_cartpole",
                "total_steps=512",
                "eval.episodes=2",
                "logger.progress=false",
                "logger.wandb=true",
                "logger.wandb_mode=offline",
                f"run_dir={run}",
            ]
        )
    )
    assert list(run.rglob("*.wandb")), "wandb wrote no offline run"
    for path in run.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path

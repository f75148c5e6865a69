"""``reprl video``, ``reprl progression`` and ``eval.video_every``: frame counts (an episode of
L steps gives L + 1 frames, the first after reset; a title card round(0.5 * fps) frames),
frame sizes, the overlay band, checkpoint order, Atari action meanings, one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from reprl.config import load_config
from reprl.envs import make_env_spec
from reprl.runs.logger import read_metrics
from reprl.tools.progression import make_progression, run_checkpoints
from reprl.tools.video import (
    TrainingVideo,
    action_label,
    band_height,
    fit,
    make_video,
    overlay,
    upscale,
)
from reprl.train import train
from reprl.types import EnvSpec


def _frames(path: str | Path) -> list[np.ndarray]:
    import imageio.v2 as imageio

    with imageio.get_reader(str(path), "ffmpeg") as reader:
        return [np.asarray(f) for f in reader]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """CartPole, 2048 steps, checkpoints and evaluations (1 episode) every 1024, a video of
    every evaluation."""
    run = tmp_path_factory.mktemp("video") / "run"
    train(
        load_config(
            [
                "experiment=ppo_cartpole",
                "total_steps=2048",
                "logger.progress=false",
                "logger.tensorboard=true",
                "eval.every_steps=1024",
                "eval.episodes=1",
                "eval.video_every=1",
                "checkpoint.every_steps=1024",
                f"run_dir={run}",
            ]
        )
    )
    return run


def test_video_every_writes_one_video_per_evaluation(run_dir: Path) -> None:
    evals = [r for r in read_metrics(run_dir / "metrics.jsonl") if "eval/mean_length" in r]
    assert [r["global_step"] for r in evals] == [1024, 2048]
    for record in evals:
        path = run_dir / "videos" / f"step_{record['global_step']}.mp4"
        # one evaluation episode (eval.episodes=1): its length + the reset frame
        assert len(_frames(path)) == int(record["eval/mean_length"]) + 1
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    # moviepy is not installed here: the video goes to TensorBoard as a strip of frames
    assert [e.step for e in events.Images("eval/video")] == [1024, 2048]


def test_video_frames_size_and_overlay(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "v.mp4"
    result = make_video(run_dir, out, episodes=2, seed=7)
    assert result["path"] == str(out)
    assert result["returns"] == [float(n) for n in result["lengths"]]  # CartPole: +1 a step
    frames = _frames(out)
    assert len(frames) == result["frames"] == sum(result["lengths"]) + 2
    assert all(f.shape == (400, 600, 3) for f in frames) and result["size"] == (400, 600)
    assert all(label in ("PUSH_LEFT", "PUSH_RIGHT") for ep in result["labels"] for label in ep)
    # CartPole's background is white: the band is darkened, the field below it is not
    band = band_height(600, ["episode 1/2", "step 0   return 0", "action -"])
    assert frames[0][: band - 2, 300:].mean() < 140
    assert frames[0][band + 5 : band + 40, :40].mean() > 240
    # default output: <run_dir>/videos/<checkpoint stem>.mp4
    default = make_video(run_dir / "checkpoints" / "step_1024.pt", max_steps=3)
    assert default["path"] == str(run_dir / "videos" / "step_1024.mp4")
    assert default["lengths"] == [3] and len(_frames(default["path"])) == 4


def test_overlay_changes_only_its_band() -> None:
    rng = np.random.default_rng(0)
    frame = upscale(rng.integers(0, 256, (210, 160, 3), dtype=np.uint8))
    assert frame.shape == (420, 320, 3)  # upscaled by 2 (nearest) to stay legible
    lines = ["step 3   return 1", "action FIRE"]
    out, band = overlay(frame, lines), band_height(320, lines)
    assert 0 < band < 420
    assert (out[:band] != frame[:band]).mean() > 0.5
    np.testing.assert_array_equal(out[band:], frame[band:])
    np.testing.assert_array_equal(overlay(frame, []), frame)
    padded = fit(np.full((100, 50, 3), 255, np.uint8), (400, 600))
    assert (
        padded.shape == (400, 600, 3)
        and padded[:, :100].max() == 0
        and (padded[200, 300] == 255).all()
    )


def test_action_labels() -> None:
    spec = EnvSpec("x", (4,), np.dtype(np.float32), "discrete", num_actions=3)
    assert action_label(spec, np.array(2)) == "2"  # no meanings: the index
    meanings = EnvSpec("x", (4,), np.dtype(np.float32), "discrete", 2, action_meanings=("L", "R"))
    assert action_label(meanings, np.int64(1)) == "R"
    box = EnvSpec(
        "x",
        (3,),
        np.dtype(np.float32),
        "continuous",
        action_shape=(2,),
        action_low=np.array([-1.0, -1.0]),
        action_high=np.array([1.0, 1.0]),
    )
    assert action_label(box, np.array([0.123, 3.0])) == "[+0.12 +1.00]"  # clipped, rounded


def test_progression_one_clip_per_checkpoint_in_step_order(run_dir: Path, tmp_path: Path) -> None:
    checkpoints = run_checkpoints(run_dir)
    # step_1024.pt, step_2048.pt; latest.pt is step 2048 again and is skipped
    assert [(s, p.name) for s, p in checkpoints] == [(1024, "step_1024.pt"), (2048, "step_2048.pt")]
    path, clips = make_progression(run_dir, tmp_path / "p.mp4", episodes_per_checkpoint=2, fps=20)
    assert [c.step for c in clips] == [1024, 2048]
    for clip in clips:
        assert clip.card_frames == 10  # 0.5 s at 20 fps
        assert clip.frames == sum(clip.lengths) + 2
    frames = _frames(path)
    assert len(frames) == sum(c.frames + c.card_frames for c in clips)
    assert len({f.shape for f in frames}) == 1
    assert frames[0][:100].max() == 0 and frames[0].max() == 255  # title card: text on black


def test_training_video_schedule(tmp_path: Path) -> None:
    spec = EnvSpec("x", (4,), np.dtype(np.float32), "discrete", num_actions=2)
    video = TrainingVideo(tmp_path, every=2, spec=spec, logger=None)
    assert video.start(1024, 1) is None
    recorder = video.start(2048, 2)
    assert recorder is not None and recorder.writer.path == tmp_path / "step_2048.mp4"


def test_atari_overlay_uses_action_meanings(tmp_path: Path) -> None:
    cfg = load_config(
        [
            "experiment=ppo_atari",
            "env.num_envs=2",
            "agent.num_steps=16",
            "total_steps=64",
            "logger.progress=false",
            "logger.tensorboard=false",
            "eval.at_end=false",
            f"run_dir={tmp_path}",
        ]
    )
    train(cfg)
    spec = make_env_spec(cfg.env, evaluation=True)
    assert spec.action_meanings[:2] == ("NOOP", "FIRE")
    assert [action_label(spec, np.int64(i)) for i in range(spec.num_actions)] == list(
        spec.action_meanings
    )
    result = make_video(tmp_path, tmp_path / "a.mp4", max_steps=12, deterministic=True)
    assert result["lengths"] == [12] and len(result["labels"][0]) == 12
    assert set(result["labels"][0]) <= set(spec.action_meanings)
    assert result["size"] == (420, 320)  # 210x160 upscaled twice


def test_cli_bad_path_is_one_line_exit_2(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "reprl", "video", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert proc.stderr.startswith("reprl video: error: no such run folder or checkpoint")

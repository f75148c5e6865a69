"""``reprl progression``: one clip per saved checkpoint of a run, in step order, in one mp4.

Each checkpoint (the periodic ``step_<n>.pt`` files still on disk, then the final one;
``latest.pt`` and any other file of an env step already shown are skipped) gets a title card
of :data:`~reprl.tools.video.TITLE_SECONDS` and then its evaluation episodes, every frame
overlaid with the checkpoint's env step, the step in the episode, the action and the return
so far (:mod:`reprl.tools.video`). Every checkpoint plays the same env seeds, so the clips
differ only by the policy. A clip of episodes of lengths L1, L2, ... has L1 + 1 + L2 + 1 ...
frames; all clips share the first frame's size.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reprl.errors import CheckpointError
from reprl.tools.video import (
    VideoWriter,
    check_options,
    format_number,
    limit_steps,
    load_for_video,
    record_episodes,
)


@dataclass
class Clip:
    """What one checkpoint contributed to the video."""

    step: int
    """The checkpoint's env step."""
    checkpoint: Path
    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    frames: int = 0
    """Episode frames (without the title card)."""
    card_frames: int = 0


def run_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """``(env step, checkpoint)`` of a run folder's checkpoints in step order, one per step:
    the periodic ``step_<n>.pt``, then ``latest.pt`` when its step is not among them."""
    from reprl.runs import checkpoint as ckpt

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"no such run folder: {run_dir}")
    ckpt_dir = run_dir / "checkpoints" if (run_dir / "checkpoints").is_dir() else run_dir
    found: dict[int, Path] = {}
    for path in ckpt.list_checkpoints(ckpt_dir):
        if match := ckpt.CKPT_RE.search(path.name):
            found.setdefault(int(match.group(1)), path)
    latest = ckpt_dir / "latest.pt"
    if latest.is_file():
        step = int(ckpt.load(latest).get("run_state", {}).get("global_step", -1))
        found.setdefault(step, latest)
    if not found:
        raise CheckpointError(f"no checkpoint in {ckpt_dir} (expected step_<n>.pt or latest.pt)")
    return sorted(found.items())


def make_progression(
    run_dir: str | Path,
    out: str | Path | None = None,
    episodes_per_checkpoint: int = 1,
    max_steps: int | None = None,
    fps: float = 30.0,
    deterministic: bool = False,
    seed: int = 12345,
) -> tuple[Path, list[Clip]]:
    """Write the progression video (default ``<run_dir>/videos/progression.mp4``); returns its
    path and the clips in the order they were written."""
    check_options(episodes_per_checkpoint, fps, "--episodes-per-checkpoint")
    checkpoints = run_checkpoints(run_dir)
    out = Path(run_dir) / "videos" / "progression.mp4" if out is None else Path(out)
    writer = VideoWriter(out, fps)
    clips: list[Clip] = []
    try:
        for i, (step, path) in enumerate(checkpoints):
            agent, cfg, spec, norm, _ = load_for_video(path)
            clip = Clip(step, path)
            title = [f"checkpoint {i + 1}/{len(checkpoints)}", f"env step {step}"]
            before = writer.frames
            clip.card_frames = writer.card(title)  # written with the first frame when pending
            recs = record_episodes(
                agent,
                limit_steps(cfg.env, max_steps),
                spec,
                writer,
                episodes_per_checkpoint,
                deterministic,
                seed,
                norm,
                header=[f"checkpoint at env step {step}"],
            )
            clip.returns = [r.episode_return for r in recs]
            clip.lengths = [r.step for r in recs]
            clip.frames = writer.frames - before - clip.card_frames
            clips.append(clip)
    finally:
        writer.close()
    return writer.path, clips


def _cmd(args: argparse.Namespace) -> int:
    path, clips = make_progression(
        args.run_dir,
        args.out,
        args.episodes_per_checkpoint,
        args.max_steps,
        args.fps,
        args.deterministic,
        args.seed,
    )
    for clip in clips:
        returns = ", ".join(format_number(r) for r in clip.returns)
        print(f"env step {clip.step:>10}: return {returns} ({clip.checkpoint.name})")
    print(f"video: {path} ({len(clips)} checkpoints)")
    return 0


def add_parser(sub: Any) -> None:
    """Add ``reprl progression`` to the ``reprl`` command."""
    p = sub.add_parser(
        "progression",
        help="one clip per saved checkpoint of a run, in step order, to watch a policy improve",
        description="Play the same evaluation episodes with every saved checkpoint (the "
        "periodic step_<n>.pt still on disk, then the final one; one per env step) in step "
        "order, each after a 0.5 s title card, into one mp4. Frames show the checkpoint's env "
        "step, the step, the action and the return so far.",
    )
    p.add_argument("run_dir", help="run folder (its checkpoints/)")
    p.add_argument(
        "--out", metavar="FILE.mp4", help="output (default <run_dir>/videos/progression.mp4)"
    )
    p.add_argument(
        "--episodes-per-checkpoint",
        type=int,
        default=1,
        metavar="K",
        help="episodes per checkpoint (default 1)",
    )
    p.add_argument(
        "--max-steps", type=int, metavar="M", help="cut each episode after M agent steps"
    )
    p.add_argument("--fps", type=float, default=30.0, help="frames per second (default 30)")
    p.add_argument("--deterministic", action="store_true", help="act with the policy's mode")
    p.add_argument("--seed", type=int, default=12345, help="env seed of episode 1 (then +1)")
    p.set_defaults(fn=_cmd)

"""``reprl video``: record evaluation episodes of a checkpoint to one annotated mp4.

Also the recording code that ``reprl progression`` and training (``eval.video_every``) share:
frames come from :func:`reprl.evaluation.evaluate.evaluate` (the evaluation wrappers, env 0's
first episode) through its ``recorder`` hook and are streamed to the mp4, so a long episode is
never held in memory. Each frame is upscaled when small (so the text stays legible), fitted
to the video's frame size (that of its first frame; scaled and padded) and overlaid with a
semi-transparent band: the step, the action that led to the frame and the return so far.

An episode of length L gives L + 1 frames: the frame after reset (step 0, action "-") and one
frame after each step (the last shows the final state).
"""

from __future__ import annotations

import argparse
import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from reprl.errors import ReprlError

if TYPE_CHECKING:  # reprl.envs imports torch and gymnasium: keep `reprl --help` fast
    from reprl.envs.config import EnvConfig
    from reprl.types import EnvSpec

MIN_HEIGHT = 360
"""Frames lower than this are upscaled by an integer factor (nearest neighbour) first."""
BAND_ALPHA = 0.6
"""Opacity of the black band behind the overlay text."""
TITLE_SECONDS = 0.5
"""Length of a title card (``reprl progression``)."""
THUMBNAILS = 64
"""Most frames a training video keeps in memory for TensorBoard (evenly strided)."""
STRIP_FRAMES = 8
"""Frames in the TensorBoard image strip logged when moviepy is missing."""


# ----------------------------------------------------------------------------- labels
def action_label(spec: EnvSpec, action: Any) -> str:
    """The overlay's text for ``action``: the env's action meaning (Atari's ``NOOP``, ``FIRE``
    ...) when it has them, else the discrete index; continuous actions as the vector clipped
    to the bounds (what the env executes), rounded to 2 decimals."""
    a = np.asarray(action)
    if spec.discrete:
        index = int(a.reshape(-1)[0])
        meanings = spec.action_meanings
        return meanings[index] if 0 <= index < len(meanings) else str(index)
    a = a.astype(np.float64).reshape(-1)
    if spec.action_low is not None and spec.action_high is not None:
        a = np.clip(a, np.asarray(spec.action_low).reshape(-1), np.asarray(spec.action_high))
    return "[" + " ".join(f"{x:+.2f}" for x in a) + "]"


def format_number(x: float) -> str:
    """A return as the overlay shows it: ``12`` or ``-3.25``."""
    return f"{x:.0f}" if float(x).is_integer() else f"{x:.2f}"


# ----------------------------------------------------------------------------- drawing
def upscale(frame: np.ndarray, min_height: int = MIN_HEIGHT) -> np.ndarray:
    """``frame`` as ``(H, W, 3)`` uint8 RGB, scaled up by an integer factor (nearest
    neighbour, pixel art stays sharp) until it is at least ``min_height`` high."""
    import cv2

    img = np.asarray(frame)
    if img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 1):
        img = np.repeat(img.reshape(img.shape[0], img.shape[1], 1), 3, axis=2)
    if img.ndim != 3 or img.shape[2] not in (3, 4):
        raise ValueError(f"expected an (H, W, 3) RGB frame, got shape {img.shape}")
    img = np.ascontiguousarray(img[..., :3], dtype=np.uint8)
    factor = -(-min_height // img.shape[0])  # ceil
    if factor > 1:
        img = cv2.resize(
            img, (img.shape[1] * factor, img.shape[0] * factor), interpolation=cv2.INTER_NEAREST
        )
    return img


def fit(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``frame`` scaled to fit ``size = (H, W)`` keeping its aspect ratio, padded with black."""
    import cv2

    h, w = size
    if frame.shape[:2] == (h, w):
        return frame
    scale = min(h / frame.shape[0], w / frame.shape[1])
    nh, nw = max(1, round(frame.shape[0] * scale)), max(1, round(frame.shape[1] * scale))
    resized = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_AREA)
    out = np.zeros((h, w, 3), np.uint8)
    top, left = (h - nh) // 2, (w - nw) // 2
    out[top : top + nh, left : left + nw] = resized
    return out


def _font(width: int, lines: Sequence[str]) -> tuple[float, int, int]:
    """(scale, thickness, line height) so that every line fits in ``width`` pixels."""
    import cv2

    scale = float(np.clip(width / 800, 0.5, 0.9))
    while True:
        thickness = 2 if scale >= 0.8 else 1
        sizes = [cv2.getTextSize(s, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness) for s in lines]
        widest = max((sz[0][0] for sz in sizes), default=0)
        if widest <= width - 16 or scale <= 0.3:
            height = max((sz[0][1] + sz[1] for sz in sizes), default=10)
            return scale, thickness, height + 8


def band_height(frame_width: int, lines: Sequence[str]) -> int:
    """Height in pixels of the overlay band that :func:`overlay` draws for ``lines``."""
    return _font(frame_width, lines)[2] * len(lines) + 8 if lines else 0


def overlay(frame: np.ndarray, lines: Sequence[str]) -> np.ndarray:
    """A copy of ``frame`` with ``lines`` in white on a semi-transparent black band at the top
    (:func:`band_height` pixels high)."""
    import cv2

    out = frame.copy()
    if not lines:
        return out
    scale, thickness, line_h = _font(out.shape[1], lines)
    band = min(band_height(out.shape[1], lines), out.shape[0])
    out[:band] = (out[:band].astype(np.float32) * (1.0 - BAND_ALPHA)).astype(np.uint8)
    for i, text in enumerate(lines):
        y = 4 + line_h * (i + 1) - 6
        cv2.putText(
            out, text, (8, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness,
            cv2.LINE_AA,
        )  # fmt: skip
    return out


def title_card(size: tuple[int, int], lines: Sequence[str]) -> np.ndarray:
    """A black ``size = (H, W)`` frame with ``lines`` centred."""
    import cv2

    h, w = size
    card = np.zeros((h, w, 3), np.uint8)
    scale, thickness, line_h = _font(w, lines)
    scale, thickness = scale * 1.3, thickness + 1
    top = (h - line_h * 1.3 * len(lines)) / 2
    for i, text in enumerate(lines):
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        y = int(top + line_h * 1.3 * (i + 1))
        cv2.putText(
            card, text, (max((w - tw) // 2, 0), y), cv2.FONT_HERSHEY_SIMPLEX, scale,
            (255, 255, 255), thickness, cv2.LINE_AA,
        )  # fmt: skip
    return card


# ----------------------------------------------------------------------------- writing
class VideoWriter:
    """Streams frames to an mp4 (imageio + the ffmpeg binary of imageio-ffmpeg).

    The first frame (after :func:`upscale`) sets the frame size, rounded up to even numbers
    (H.264's yuv420p needs them); later frames are fitted to it. Title cards asked for before
    the first frame are written once the size is known. With ``keep > 0`` up to ``keep``
    evenly strided frames are also kept in memory at half size (``thumbnails``, ``stride``).
    """

    def __init__(self, path: str | Path, fps: float = 30.0, keep: int = 0) -> None:
        self.path, self.fps, self.keep = Path(path), fps, keep
        if self.path.suffix.lower() != ".mp4":
            raise ReprlError(f"video path must end in .mp4, got {self.path}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ReprlError(f"cannot write {self.path}: {exc.strerror}") from None
        self.size: tuple[int, int] | None = None
        self.frames = 0
        self.thumbnails: list[np.ndarray] = []
        self.stride = 1
        self._pending: list[tuple[list[str], int]] = []
        self._writer: Any = None

    def write(self, frame: np.ndarray, lines: Sequence[str] = ()) -> None:
        """Append one RGB frame with ``lines`` overlaid (see :func:`overlay`)."""
        img = upscale(frame)
        size = self.size
        if size is None:
            size = self._open((img.shape[0] + img.shape[0] % 2, img.shape[1] + img.shape[1] % 2))
        self._append(overlay(fit(img, size), lines))

    def card(self, lines: Sequence[str], seconds: float = TITLE_SECONDS) -> int:
        """Append a title card for ``seconds``; returns its number of frames."""
        count = max(1, round(seconds * self.fps))
        if self.size is None:
            self._pending.append((list(lines), count))
        else:
            card = title_card(self.size, lines)
            for _ in range(count):
                self._append(card)
        return count

    def _open(self, size: tuple[int, int]) -> tuple[int, int]:
        """Start the file at frame size ``size`` and write the pending title cards."""
        import imageio.v2 as imageio

        self.size = size
        try:
            self._writer = imageio.get_writer(self.path, fps=self.fps, macro_block_size=1)
        except OSError as exc:
            raise ReprlError(f"cannot write {self.path}: {exc}") from None
        pending, self._pending = self._pending, []
        for lines, count in pending:
            card = title_card(size, lines)
            for _ in range(count):
                self._append(card)
        return size

    def _append(self, img: np.ndarray) -> None:
        self._writer.append_data(img)
        if self.keep and self.frames % self.stride == 0:
            self.thumbnails.append(img[::2, ::2].copy())  # half size: memory
            if len(self.thumbnails) > self.keep:  # keep every other one, twice the stride
                self.thumbnails, self.stride = self.thumbnails[::2], self.stride * 2
        self.frames += 1

    def close(self) -> None:
        """Finish the file (a writer that got no frame writes nothing)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None


@dataclass
class EpisodeRecorder:
    """The ``recorder`` of :func:`~reprl.evaluation.evaluate.evaluate`: overlays each frame
    with ``header``, the step, the action's label and the return so far, and writes it."""

    writer: VideoWriter
    spec: EnvSpec
    header: list[str] = field(default_factory=list)
    step: int = 0
    episode_return: float = 0.0
    frames: int = 0
    labels: list[str] = field(default_factory=list)
    """The action labels drawn, one per step."""

    def __call__(self, frame: np.ndarray, action: np.ndarray | None, reward: float) -> None:
        label = "-"
        if action is not None:
            self.step += 1
            self.episode_return += reward
            label = action_label(self.spec, action)
            self.labels.append(label)
        lines = [
            *self.header,
            f"step {self.step}   return {format_number(self.episode_return)}",
            f"action {label}",
        ]
        self.writer.write(frame, lines)
        self.frames += 1


def limit_steps(env_cfg: EnvConfig, max_steps: int | None) -> EnvConfig:
    """``env_cfg`` with episodes truncated after ``max_steps`` agent steps (never longer than
    the evaluation's own time limit)."""
    if max_steps is None:
        return env_cfg
    if max_steps < 1:
        raise ReprlError(f"--max-steps must be >= 1, got {max_steps}")
    from reprl.envs import make_env_spec

    limit = make_env_spec(env_cfg, evaluation=True).max_episode_steps
    return replace(env_cfg, max_episode_steps=min(max_steps, limit or max_steps))


def record_episodes(
    agent: Any,
    env_cfg: EnvConfig,
    spec: EnvSpec,
    writer: VideoWriter,
    episodes: int,
    deterministic: bool,
    seed: int,
    normalizer_state: dict[str, Any] | None = None,
    header: Sequence[str] = (),
) -> list[EpisodeRecorder]:
    """Play and write ``episodes`` evaluation episodes (episode i on env seed ``seed + i``);
    returns each episode's recorder (return, steps, frames, labels)."""
    from reprl.evaluation.evaluate import evaluate

    recorders = []
    for i in range(episodes):
        lines = list(header)
        if episodes > 1:
            lines = [(" | ".join([*lines, f"episode {i + 1}/{episodes}"]))]
        rec = EpisodeRecorder(writer, spec, lines)
        evaluate(agent, env_cfg, 1, deterministic, seed + i, normalizer_state, recorder=rec)
        recorders.append(rec)
    return recorders


def load_for_video(path: str | Path) -> tuple[Any, Any, EnvSpec, dict[str, Any] | None, int]:
    """(agent, config, evaluation env spec, normaliser state, env step) of a checkpoint or
    run folder."""
    from reprl.envs import make_env_spec
    from reprl.evaluation.cli import load_agent
    from reprl.runs import checkpoint as ckpt

    agent, cfg, state = load_agent(path)
    norm = ckpt.normalizer_of(state)
    step = int(state.get("run_state", {}).get("global_step", 0))
    return agent, cfg, make_env_spec(cfg.env, evaluation=True), norm, step


def check_options(episodes: int, fps: float, episodes_option: str = "--episodes") -> None:
    """One-line errors for option values no video can have."""
    if episodes < 1:
        raise ReprlError(f"{episodes_option} must be >= 1, got {episodes}")
    if fps <= 0:
        raise ReprlError(f"--fps must be > 0, got {fps}")


def make_video(
    path: str | Path,
    out: str | Path | None = None,
    episodes: int = 1,
    deterministic: bool = False,
    seed: int = 12345,
    fps: float = 30.0,
    max_steps: int | None = None,
) -> dict[str, Any]:
    """Record ``episodes`` evaluation episodes of a checkpoint (or a run folder's latest) to
    one mp4, by default ``<run_dir>/videos/<checkpoint-stem>.mp4``. Returns ``path``, per
    episode ``returns``, ``lengths`` and action ``labels``, ``frames`` and ``size`` ``(H, W)``."""
    from reprl.runs import checkpoint as ckpt

    check_options(episodes, fps)
    checkpoint = ckpt.resolve(path)
    if out is None:
        folder = checkpoint.parent
        run_dir = folder.parent if folder.name == "checkpoints" else folder
        out = run_dir / "videos" / f"{checkpoint.stem}.mp4"
    agent, cfg, spec, norm, _ = load_for_video(checkpoint)
    env_cfg = limit_steps(cfg.env, max_steps)
    writer = VideoWriter(out, fps)
    try:
        recs = record_episodes(agent, env_cfg, spec, writer, episodes, deterministic, seed, norm)
    finally:
        writer.close()
    return {
        "path": str(writer.path),
        "returns": [r.episode_return for r in recs],
        "lengths": [r.step for r in recs],
        "labels": [r.labels for r in recs],
        "frames": writer.frames,
        "size": writer.size,
    }


# ----------------------------------------------------------------------------- training
class TrainingVideo:
    """Records env 0's episode of every ``every``-th evaluation during training to
    ``<out_dir>/step_<n>.mp4`` and logs it to TensorBoard and wandb.

    TensorBoard's ``add_video`` needs moviepy; without it (reprl does not depend on it) a
    strip of :data:`STRIP_FRAMES` evenly spaced frames is logged as an image instead, under
    the same tag. wandb gets the mp4 itself (``wandb.Video``).
    """

    def __init__(
        self, out_dir: Path, every: int, spec: EnvSpec, logger: Any, fps: float = 30.0
    ) -> None:
        self.out_dir, self.every, self.spec, self.logger, self.fps = (
            out_dir,
            every,
            spec,
            logger,
            fps,
        )
        self.paths: list[Path] = []

    def start(self, step: int, evaluation: int) -> EpisodeRecorder | None:
        """A recorder for evaluation number ``evaluation`` (1-based) at env step ``step``, or
        None when this evaluation is not recorded."""
        if self.every <= 0 or evaluation % self.every != 0:
            return None
        writer = VideoWriter(self.out_dir / f"step_{step}.mp4", self.fps, keep=THUMBNAILS)
        return EpisodeRecorder(writer, self.spec, [f"evaluation at env step {step}"])

    def finish(self, recorder: EpisodeRecorder, step: int) -> Path:
        """Close the mp4 and log it at ``step``."""
        writer = recorder.writer
        writer.close()
        self.paths.append(writer.path)
        log_video(self.logger, "eval/video", writer, step)
        return writer.path


def log_video(logger: Any, tag: str, writer: VideoWriter, step: int) -> None:
    """Log a finished video to the logger's TensorBoard and wandb writers (when enabled)."""
    if logger is None or not writer.thumbnails:
        return
    # reprl.runs.logger.Logger keeps its writers private; videos are the one non-scalar it
    # gets, so they are written here rather than through Logger.log.
    tb, run = getattr(logger, "_tb", None), getattr(logger, "_wandb", None)
    if tb is not None:
        frames = np.stack(writer.thumbnails)
        if importlib.util.find_spec("moviepy") is not None:
            import torch

            video = torch.from_numpy(frames).permute(0, 3, 1, 2)[None]  # (N=1, T, C, H, W)
            tb.add_video(tag, video, step, fps=max(1, round(writer.fps / writer.stride)))
        else:
            pick = np.linspace(0, len(frames) - 1, min(STRIP_FRAMES, len(frames))).round()
            strip = np.concatenate([frames[int(i)] for i in pick], axis=1)
            tb.add_image(tag, strip, step, dataformats="HWC")
    if run is not None:
        import wandb

        run.log({tag: wandb.Video(str(writer.path), format="mp4")}, step=step)


# ----------------------------------------------------------------------------- command
def _cmd(args: argparse.Namespace) -> int:
    result = make_video(
        args.path, args.out, args.episodes, args.deterministic, args.seed, args.fps, args.max_steps
    )
    returns = ", ".join(format_number(r) for r in result["returns"])
    print(f"video: {result['path']} ({result['frames']} frames)")
    print(f"episode returns: {returns} (lengths {', '.join(map(str, result['lengths']))})")
    return 0


def add_parser(sub: Any) -> None:
    """Add ``reprl video`` to the ``reprl`` command."""
    p = sub.add_parser(
        "video",
        help="record evaluation episodes of a run folder or checkpoint to an annotated mp4",
        description="Record evaluation episodes (the evaluation wrappers) to one mp4, each "
        "frame overlaid with the step, the action and the return so far. An episode of L "
        "steps gives L + 1 frames (the first after reset).",
    )
    p.add_argument("path", help="run folder (its latest checkpoint) or checkpoint file")
    p.add_argument("--episodes", type=int, default=1, help="episodes to record (default 1)")
    p.add_argument(
        "--out", metavar="FILE.mp4", help="output (default <run_dir>/videos/<checkpoint>.mp4)"
    )
    p.add_argument("--deterministic", action="store_true", help="act with the policy's mode")
    p.add_argument("--seed", type=int, default=12345, help="env seed of episode 1 (then +1)")
    p.add_argument("--fps", type=float, default=30.0, help="frames per second (default 30)")
    p.add_argument(
        "--max-steps", type=int, metavar="M", help="cut each episode after M agent steps"
    )
    p.set_defaults(fn=_cmd)

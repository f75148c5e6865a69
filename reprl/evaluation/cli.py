"""``reprl eval``: rebuild a run's agent from a checkpoint and evaluate it (optionally on video)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from reprl.config import config_from_saved
from reprl.envs import make_env_spec
from reprl.errors import CheckpointError, ReprlError
from reprl.evaluation.evaluate import evaluate
from reprl.runs import checkpoint as ckpt


def load_agent(path: str | Path, device: str = "cpu") -> tuple[Any, Any, dict[str, Any]]:
    """(agent, config, checkpoint state) from a run folder, checkpoint file or a folder
    written by ``reprl export`` (``model.safetensors`` + ``config.yaml``: read without
    executing code, as a checkpoint-shaped state with the normaliser statistics)."""
    from reprl.tools import export
    from reprl.train import make_agent

    if export.is_exported(path):
        state = export.read_exported(path)
    else:
        state = ckpt.load(ckpt.resolve(path))
    cfg = config_from_saved(state["config"])
    spec = make_env_spec(cfg.env)
    agent = make_agent(cfg, spec, torch.device(device), load_pretrained=False)
    try:
        agent.load_state_dict(state["agent"], optimizer=False)
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint does not fit its own config: {exc}") from None
    agent.model.eval()
    return agent, cfg, state


def evaluate_checkpoint(
    path: str,
    episodes: int,
    deterministic: bool,
    video: str | None,
    seed: int,
    epsilon: float | None = None,
) -> dict[str, Any]:
    """Evaluate a checkpoint with the same wrappers as training (minus score-changing ones);
    ``epsilon``: epsilon-greedy evaluation (None: the run's ``eval.epsilon``)."""
    if episodes < 1:
        raise ReprlError(f"--episodes must be >= 1, got {episodes}")
    if epsilon is not None and not 0.0 <= epsilon <= 1.0:
        raise ReprlError(f"--epsilon must be in [0, 1], got {epsilon}")
    agent, cfg, state = load_agent(path)
    norm = ckpt.normalizer_of(state)
    eps = cfg.eval.epsilon if epsilon is None else epsilon
    result = evaluate(
        agent, cfg.env, episodes, deterministic, seed=seed, normalizer_state=norm, epsilon=eps
    )
    if video:
        frames: list[np.ndarray] = []
        evaluate(
            agent, cfg.env, 1, deterministic, seed=seed, normalizer_state=norm, frames=frames,
            epsilon=eps,
        )  # fmt: skip
        write_video(video, frames, fps=30)
        result["video"] = video
    return result


def write_video(path: str | Path, frames: list[np.ndarray], fps: int = 30) -> None:
    """Write RGB frames to an mp4 (imageio + the ffmpeg binary shipped in imageio-ffmpeg)."""
    import imageio.v2 as imageio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with imageio.get_writer(path, fps=fps, macro_block_size=1) as writer:
        for frame in frames:
            writer.append_data(np.asarray(frame, dtype=np.uint8))

"""``reprl inspect``: record episodes of a checkpoint's agent and write a self-contained HTML
page to step through them.

For every step the page shows the env's rendered frame, each frame of an image observation's
stack, the action and its label, the action probabilities (policy agents) or Q-values
(value-based agents), the value estimate(s) (extrinsic and intrinsic with two value heads),
the extrinsic reward and, when the checkpoint has an RND auxiliary, the intrinsic reward;
plots of values and rewards over the episode; gradient saliency ``|d target / d obs|`` (the
extrinsic value, else the taken action's Q-value or logit) and the first conv layer's output
(first linear layer's for vector observations).

``DIR/index.html`` needs no server and loads nothing from outside (inline JS and CSS, images
as data URIs); ``DIR/data.json`` holds the same data without the images (``*_image`` entries
are indices into the page's image list).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from reprl.errors import ReprlError

DEFAULT_EPISODES = 1
DEFAULT_MAX_STEPS = 500
DEFAULT_PORT = 8000
RENDER_MAX_SIDE = 320
"""Rendered frames are downscaled to at most this many pixels per side (page size)."""
JPEG_QUALITY = 80
CHANNELS_SHOWN = 8
"""First-layer channels shown one by one (beside their mean)."""
VALUE_NAMES = {1: ["value"], 2: ["extrinsic", "intrinsic"]}
# Anchor colours of the heatmaps (inferno-like: black -> purple -> orange -> yellow).
_HEAT = np.array(
    [[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], np.float64
)


def add_parser(sub: Any) -> None:
    """Add ``reprl inspect`` to the ``reprl`` subcommands."""
    p = sub.add_parser(
        "inspect",
        help="record episodes of a checkpoint's agent into a self-contained HTML page "
        "(frames, observations, actions, probabilities/Q-values, values, rewards, saliency)",
    )
    p.add_argument("path", help="run folder or checkpoint file")
    p.add_argument(
        "--episodes", type=int, default=DEFAULT_EPISODES, help="episodes to record (default 1)"
    )
    p.add_argument("--out", metavar="DIR", help="output folder (default <run_dir>/inspect)")
    p.add_argument(
        "--max-steps",
        type=int,
        default=DEFAULT_MAX_STEPS,
        help=f"stop each episode after this many steps (default {DEFAULT_MAX_STEPS})",
    )
    p.add_argument("--seed", type=int, default=12345, help="env seed of the first episode")
    p.add_argument("--serve", action="store_true", help="then serve DIR on localhost")
    p.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="port of --serve (0: any free port)"
    )
    p.set_defaults(fn=_cmd_inspect)


def _cmd_inspect(args: argparse.Namespace) -> int:
    out = inspect_checkpoint(args.path, args.episodes, args.out, args.max_steps, args.seed)
    print(f"inspector written to {out / 'index.html'}")
    if args.serve:
        serve(out, args.port)
    return 0


# ---------------------------------------------------------------------------------------------
# recording
# ---------------------------------------------------------------------------------------------
@dataclass
class Images:
    """The page's images as data URIs, each stored once (stacks repeat frames)."""

    uris: list[str] = field(default_factory=list)
    index: dict[str, int] = field(default_factory=dict)

    def add(self, image: np.ndarray, jpeg: bool = False) -> int:
        """Encode an ``(H, W)`` or ``(H, W, 3)`` uint8 RGB image; returns its index."""
        import cv2

        key = hashlib.sha1(image.tobytes() + str(image.shape).encode()).hexdigest()
        if key in self.index:
            return self.index[key]
        bgr = image[..., ::-1] if image.ndim == 3 else image
        ext, params = (".jpg", [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]) if jpeg else (".png", [])
        ok, buf = cv2.imencode(ext, np.ascontiguousarray(bgr), params)
        if not ok:
            raise ReprlError(f"could not encode an image of shape {image.shape}")
        mime = "jpeg" if jpeg else "png"
        self.index[key] = len(self.uris)
        self.uris.append(f"data:image/{mime};base64,{base64.b64encode(buf).decode()}")
        return self.index[key]


def heatmap(x: np.ndarray) -> np.ndarray:
    """``(H, W)`` values -> ``(H, W, 3)`` uint8 colours (min-max scaled; the page upscales
    small maps without smoothing)."""
    x = np.asarray(x, np.float64)
    span = x.max() - x.min()
    u = (x - x.min()) / span if span > 0 else np.zeros_like(x)
    pos = u * (len(_HEAT) - 1)
    lo = np.clip(np.floor(pos).astype(int), 0, len(_HEAT) - 2)
    frac = (pos - lo)[..., None]
    return (_HEAT[lo] * (1 - frac) + _HEAT[lo + 1] * frac).astype(np.uint8)


def _tile(maps: list[np.ndarray], columns: int = 4) -> np.ndarray:
    """Equal-sized ``(H, W, 3)`` maps in a grid of ``columns``, 1-pixel white gaps (one image
    instead of one per channel keeps the page small)."""
    h, w = maps[0].shape[:2]
    rows = -(-len(maps) // columns)
    cols = min(columns, len(maps))
    grid = np.full((rows * (h + 1) - 1, cols * (w + 1) - 1, 3), 255, np.uint8)
    for i, m in enumerate(maps):
        r, c = divmod(i, columns)
        grid[r * (h + 1) : r * (h + 1) + h, c * (w + 1) : c * (w + 1) + w] = m
    return grid


def _downscale(frame: np.ndarray) -> np.ndarray:
    import cv2

    h, w = frame.shape[:2]
    scale = RENDER_MAX_SIDE / max(h, w)
    if scale >= 1:
        return frame
    return cv2.resize(frame, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)


def _first_layer(backbone: nn.Module) -> nn.Module | None:
    """The backbone's first conv layer, else its first linear layer (None: neither)."""
    for kind in (nn.Conv2d, nn.Linear):
        for module in backbone.modules():
            if isinstance(module, kind):
                return module
    return None


def _finite(x: Any) -> Any:
    """Floats (nested lists) with non-finite values as None (JSON has no NaN)."""
    if isinstance(x, list):
        return [_finite(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


class Recorder:
    """Plays episodes with an agent and collects what the page shows, step by step."""

    def __init__(self, agent: Any, cfg: Any, state: dict[str, Any]) -> None:
        from reprl.runs.checkpoint import normalizer_of

        self.agent, self.cfg, self.spec = agent, cfg, agent.spec
        self.model = agent.model
        self.normalizer = normalizer_of(state)
        self.image_obs = len(self.spec.obs_shape) == 3
        self.images = Images()
        self.rnd = self._load_rnd(state)
        self.layer = _first_layer(self.model.backbone)
        self._activation: torch.Tensor | None = None
        if self.layer is not None:
            self.layer.register_forward_hook(self._keep_activation)

    def _load_rnd(self, state: dict[str, Any]) -> Any:
        """The RND auxiliary with its checkpointed weights and statistics (None without):
        ``load_state_dict(optimizer=False)`` leaves auxiliaries as built."""
        from reprl.runs.checkpoint import to_numpy

        aux = self.agent.auxiliaries.get("rnd")
        saved = state["agent"].get("aux", {}).get("rnd")
        if aux is None or saved is None:
            return None
        aux.load_state_dict(saved["weights"])
        aux.load_extra_state(to_numpy(saved["extra"]))
        aux.eval()
        return aux

    def _keep_activation(self, module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        self._activation = output.detach()

    @torch.no_grad()
    def intrinsic_reward(self, next_obs: torch.Tensor) -> float:
        """RND's normalised intrinsic reward of the observation a step reached, as training
        computes it (prediction error over the running std of intrinsic returns), without
        updating any statistics."""
        rnd = self.rnd.rnd
        error = rnd.prediction_error(self.rnd.inputs(next_obs))
        return float(error[0]) / float(np.sqrt(rnd.reward_rms.var) + 1e-8)

    def analyse(
        self, obs: torch.Tensor, state: Any, is_first: torch.Tensor, action: torch.Tensor
    ) -> dict[str, Any]:
        """Model outputs for ``obs (1, 1, ...)``, the saliency of the value (else the taken
        action's Q-value or logit) and the first layer's output."""
        # A float copy of the observation (scaled as the backbone scales uint8 frames) is the
        # leaf the saliency is taken against.
        x = obs.float() / 255.0 if obs.dtype == torch.uint8 else obs.float().clone()
        x.requires_grad_(True)
        with torch.enable_grad():
            (out, _), _ = self.model(x, state, is_first)
            row: dict[str, Any] = {}
            value = getattr(out, "value", None)
            q = getattr(out, "q", None)
            dist = getattr(out, "dist", None)
            target: torch.Tensor | None = None
            if value is not None:
                row["value"] = value[0, 0].float().tolist()
                target = value[0, 0, 0]
            if q is not None:
                row["q"] = q[0, 0].float().tolist()
                row["value"] = [float(q[0, 0].detach().max())]
                target = q[0, 0, int(action.reshape(-1)[0])] if target is None else target
            if dist is not None and hasattr(dist, "probs"):
                row["probs"] = dist.probs[0, 0].float().tolist()
                if target is None:
                    target = dist.logits[0, 0, int(action.reshape(-1)[0])]
            elif dist is not None:
                row["mean"] = dist.mode()[0, 0].float().reshape(-1).tolist()
            elif hasattr(out, "mean"):
                row["mean"] = out.mean[0, 0].float().reshape(-1).tolist()
            if target is None and "mean" in row:
                target = (out.mean if hasattr(out, "mean") else dist.mode()).float().sum()
            grad = None
            if target is not None and target.requires_grad:
                (grad,) = torch.autograd.grad(target.float(), x, allow_unused=True)
        row["saliency"] = None if grad is None else grad[0, 0].abs().numpy()
        row["activation"] = None if self._activation is None else self._activation[0].numpy()
        return row

    def record_episode(self, seed: int, max_steps: int, deterministic: bool) -> dict[str, Any]:
        """One episode (at most ``max_steps`` steps) on a fresh evaluation env seeded
        ``seed``, with the training wrappers minus score-changing ones."""
        from reprl.envs import make_vector_env

        agent = self.agent
        envs = make_vector_env(self.cfg.env, seed=seed, num_envs=1, evaluation=True, render=True)
        cols: dict[str, list[Any]] = {}
        ended = False
        try:
            if self.normalizer is not None:
                envs.load_normalizer_state(self.normalizer)
            envs.set_training(False)
            obs = torch.from_numpy(np.array(envs.reset(seed=seed)))[:, None]
            state = agent.initial_state(1)
            is_first = torch.ones(1, 1, dtype=torch.bool)
            frame = envs.render_first()
            while len(cols.get("action", [])) < max_steps and not ended:
                action, _, next_state = agent.act(obs, state, is_first, deterministic)
                row = self.analyse(obs, state, is_first, action)
                res = envs.step(action[:, 0].cpu().numpy())
                next_obs = torch.from_numpy(np.array(res.obs))[:, None]
                row["reward"] = float(res.reward[0])
                if self.rnd is not None:
                    row["intrinsic_reward"] = self.intrinsic_reward(next_obs)
                self._add_step(cols, row, action[0, 0].cpu().numpy(), obs[0, 0].numpy(), frame)
                ended = bool(res.episode_length[0] > 0)
                if ended:
                    cols["episode_return"] = [float(res.episode_return[0])]
                frame = envs.render_first()
                obs, state = next_obs, next_state
                is_first = torch.zeros(1, 1, dtype=torch.bool)
        finally:
            envs.close()
        rewards = cols.get("reward", [])
        episode_return = cols.pop("episode_return", [float(np.sum(rewards))])[0]
        return {
            "seed": seed,
            "length": len(rewards),
            "ended": ended,
            "return": episode_return,
            "steps": cols,
        }

    def _add_step(
        self,
        cols: dict[str, list[Any]],
        row: dict[str, Any],
        action: np.ndarray,
        obs: np.ndarray,
        frame: np.ndarray,
    ) -> None:
        """Append one step's numbers and image indices to the episode's columns."""
        spec, images = self.spec, self.images
        if spec.discrete:
            index = int(action)
            meanings = spec.action_meanings
            row["action"] = index
            row["action_label"] = meanings[index] if index < len(meanings) else str(index)
        else:
            row["action"] = np.asarray(action, np.float64).reshape(-1).tolist()
            row["action_label"] = "[" + ", ".join(f"{a:.3g}" for a in row["action"]) + "]"
        row["frame_image"] = images.add(_downscale(np.asarray(frame, np.uint8)), jpeg=True)
        saliency, activation = row.pop("saliency"), row.pop("activation")
        if self.image_obs:
            channels = spec.obs_shape[0] // max(spec.frame_stack, 1)
            stack = obs.reshape(-1, channels, *obs.shape[1:])
            row["obs_images"] = [
                images.add(f[0] if channels == 1 else np.moveaxis(f[:3], 0, -1)) for f in stack
            ]
            if saliency is not None:
                # JPEG: gradient maps are noise-like, PNG would be ~8x larger.
                row["saliency_image"] = images.add(heatmap(saliency.sum(0)), jpeg=True)
        else:
            row["obs"] = obs.astype(np.float64).reshape(-1).tolist()
            if saliency is not None:
                row["saliency"] = saliency.astype(np.float64).reshape(-1).tolist()
        if activation is not None and activation.ndim == 3:  # conv: (C, H, W)
            row["activation_image"] = images.add(heatmap(activation.mean(0)))
            row["channels_image"] = images.add(
                _tile([heatmap(c) for c in activation[:CHANNELS_SHOWN]]), jpeg=True
            )
        elif activation is not None:
            row["activation"] = activation.astype(np.float64).reshape(-1).tolist()
        for key, value in row.items():
            cols.setdefault(key, []).append(_finite(value))


# ---------------------------------------------------------------------------------------------
# the page
# ---------------------------------------------------------------------------------------------
def default_out(path: str | Path) -> Path:
    """``<run_dir>/inspect`` for a run folder or a checkpoint inside ``<run_dir>/checkpoints``."""
    from reprl.runs import checkpoint as ckpt

    p = Path(path)
    if p.is_dir():
        return p / "inspect"
    file = ckpt.resolve(p)
    run_dir = file.parent.parent if file.parent.name == "checkpoints" else file.parent
    return run_dir / "inspect"


def _checkpoint_name(path: str | Path) -> str:
    """The checkpoint file a run folder resolves to (the path itself for an export folder)."""
    from reprl.errors import CheckpointError
    from reprl.runs import checkpoint as ckpt

    try:
        return str(ckpt.resolve(path))
    except CheckpointError:
        return str(path)


def inspect_checkpoint(
    path: str | Path,
    episodes: int = DEFAULT_EPISODES,
    out: str | Path | None = None,
    max_steps: int = DEFAULT_MAX_STEPS,
    seed: int = 12345,
) -> Path:
    """Record ``episodes`` episodes (env seeds ``seed, seed + 1, ...``) of the checkpoint's
    agent and write ``index.html`` and ``data.json`` to ``out``; returns ``out``."""
    from reprl.evaluation.cli import load_agent

    if episodes < 1:
        raise ReprlError(f"--episodes must be >= 1, got {episodes}")
    if max_steps < 1:
        raise ReprlError(f"--max-steps must be >= 1, got {max_steps}")
    agent, cfg, state = load_agent(path)
    recorder = Recorder(agent, cfg, state)
    spec = agent.spec
    recorded = [
        recorder.record_episode(seed + i, max_steps, cfg.eval.deterministic)
        for i in range(episodes)
    ]
    num_values = next((len(v) for e in recorded for v in e["steps"].get("value", [])[:1]), 0)
    kind = "q" if "q" in recorded[0]["steps"] else "value"
    data = {
        "checkpoint": _checkpoint_name(path),
        "global_step": int(state.get("run_state", {}).get("global_step", 0) or 0),
        "env_id": spec.env_id,
        "agent": type(agent).__name__,
        "deterministic": bool(cfg.eval.deterministic),
        "discrete": spec.discrete,
        "action_meanings": list(spec.action_meanings)
        or ([str(i) for i in range(spec.num_actions)] if spec.discrete else []),
        "image_obs": recorder.image_obs,
        "value_names": ["max Q"]
        if kind == "q"
        else VALUE_NAMES.get(num_values, [f"value {i}" for i in range(num_values)]),
        "intrinsic": recorder.rnd is not None,
        "episodes": recorded,
    }
    out = Path(out) if out is not None else default_out(path)
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, allow_nan=False)
    (out / "data.json").write_text(text)
    images = json.dumps(recorder.images.uris)
    page = resources.files("reprl.tools").joinpath("inspect_page.html").read_text()
    # "</" inside a script element would end it early.
    page = page.replace("/*__DATA__*/null", text.replace("</", "<\\/"))
    page = page.replace("/*__IMAGES__*/[]", images.replace("</", "<\\/"))
    (out / "index.html").write_text(page)
    return out


def serve(directory: str | Path, port: int = DEFAULT_PORT) -> None:
    """Serve ``directory`` on localhost until Ctrl-C (prints the URL)."""
    import functools
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class QuietHandler(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return None

    handler = functools.partial(QuietHandler, directory=str(directory))
    try:
        server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    except OSError as exc:
        raise ReprlError(f"--port {port}: cannot serve there ({exc.strerror})") from None
    print(f"serving on http://127.0.0.1:{server.server_address[1]}/ (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped")
    finally:
        server.server_close()

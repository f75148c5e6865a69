"""``reprl export``: a run's agent as a folder to share (Hugging Face Hub layout), loadable by
``reprl eval`` without executing code.

The folder holds:

- ``model.safetensors``: the agent model's ``state_dict`` (all an agent needs to act: a
  weights-only load syncs target networks and leaves optimizers and auxiliaries out);
- ``normalizer.safetensors``: the observation/reward normaliser statistics of the training envs,
  when the config normalises (``env.normalize_obs`` / ``env.normalize_reward``); evaluation
  loads them frozen, as ``reprl eval`` of the run folder does;
- ``config.yaml``: the resolved config (envs, wrappers and model are rebuilt from it);
- ``README.md``: a model card (YAML front matter with the ``model-index`` evaluation result the
  Hub shows for RL models, hyperparameters, the exact evaluation command, how to load it);
- ``learning_curve.png`` (from ``metrics.jsonl``) and ``replay.mp4`` (one evaluation episode).

The card's result comes from evaluating the exported folder itself, so it checks the export.
Nothing is pickled: tensors are safetensors, the rest YAML.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from reprl.errors import CheckpointError, ReprlError

MODEL_FILE = "model.safetensors"
NORMALIZER_FILE = "normalizer.safetensors"
CONFIG_FILE = "config.yaml"
CARD_FILE = "README.md"
CURVE_FILE = "learning_curve.png"
VIDEO_FILE = "replay.mp4"
EXPORT_FORMAT = "reprl-export-1"
"""Value of ``state["format"]`` for checkpoint-shaped states read from an exported folder."""
CURVE_METRICS = ("eval/mean_return", "charts/episodic_return")
DEFAULT_SEED = 12345
"""Evaluation env seed (the default of ``reprl eval``)."""


# ------------------------------------------------------------------------- reading
def is_exported(path: str | Path) -> bool:
    """Whether ``path`` is an exported folder (``model.safetensors`` + ``config.yaml``)."""
    p = Path(path)
    return p.is_dir() and (p / MODEL_FILE).is_file() and (p / CONFIG_FILE).is_file()


def read_exported(path: str | Path) -> dict[str, Any]:
    """An exported folder as a checkpoint-shaped state, without executing code:
    ``{"format", "config", "agent": {"model"}, "source": {"env": {"normalizer"}}}``, so that
    :func:`reprl.evaluation.cli.load_agent` and evaluation treat it as a run's checkpoint."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    p = Path(path)
    try:
        config = yaml.safe_load((p / CONFIG_FILE).read_text())
    except yaml.YAMLError as exc:
        raise CheckpointError(f"unreadable {p / CONFIG_FILE}: {_first_line(exc)}") from None
    if not isinstance(config, dict) or "env" not in config or "agent" not in config:
        raise CheckpointError(f"{p / CONFIG_FILE} is not a reprl run config")
    try:
        model = load_file(p / MODEL_FILE)
        normalizer = _unflatten(p / NORMALIZER_FILE) if (p / NORMALIZER_FILE).is_file() else None
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"corrupt export {p}: {_first_line(exc)}") from None
    env = config["env"]
    if normalizer is None and (env.get("normalize_obs") or env.get("normalize_reward")):
        raise CheckpointError(
            f"exported folder {p} has no {NORMALIZER_FILE} but its config normalises "
            "observations or rewards (env.normalize_obs / env.normalize_reward)"
        )
    return {
        "format": EXPORT_FORMAT,
        "config": config,
        "agent": {"model": model},
        "source": {"env": {"normalizer": normalizer}},
    }


# ------------------------------------------------------------------------- writing
def export_run(
    run: str | Path,
    out: str | Path,
    episodes: int = 10,
    video: bool = True,
    seed: int = DEFAULT_SEED,
    repo: str | None = None,
    log: Any = print,
) -> dict[str, Any]:
    """Write the export of ``run`` (a run folder or checkpoint file) to ``out``, evaluate the
    exported folder over ``episodes`` episodes and write the card; returns the evaluation.

    Raises :class:`ReprlError` for a folder that is not a run, or ``episodes < 1``.
    """
    from reprl.evaluation.cli import evaluate_checkpoint
    from reprl.runs import checkpoint as ckpt
    from reprl.runs.checkpoint import normalizer_of

    if episodes < 1:
        raise ReprlError(f"--episodes must be >= 1, got {episodes}")
    run, out = Path(run), Path(out)
    if not run.exists():
        raise ReprlError(f"no such run folder: {run}")
    if is_exported(run) and not (run / "checkpoints").is_dir():
        raise ReprlError(f"{run} is already an exported folder, not a run folder")
    try:
        ckpt_path = ckpt.resolve(run)
    except CheckpointError:
        raise ReprlError(
            f"not a run folder: {run} (expected checkpoints/latest.pt from reprl train)"
        ) from None
    run_dir = ckpt_path.parent.parent if ckpt_path.parent.name == "checkpoints" else run
    if out.resolve() in (run_dir.resolve(), ckpt_path.parent.resolve()):
        raise ReprlError(f"--out must be a new folder, not the run folder {run_dir}")
    state = ckpt.load(ckpt_path)

    out.mkdir(parents=True, exist_ok=True)
    _save_tensors(out / MODEL_FILE, state["agent"]["model"], {"reprl": EXPORT_FORMAT})
    normalizer = normalizer_of(state)
    (out / NORMALIZER_FILE).unlink(missing_ok=True)  # a re-export into the same folder
    if normalizer is not None:
        _save_tensors(out / NORMALIZER_FILE, *_flatten(normalizer))
    (out / CONFIG_FILE).write_text(yaml.safe_dump(state["config"], sort_keys=False))

    cfg = state["config"]
    deterministic = bool(cfg.get("eval", {}).get("deterministic", True))
    result, video_note = _evaluate_with_video(
        evaluate_checkpoint, out, episodes, deterministic, seed, video
    )
    curve_note = _learning_curve(run_dir, out / CURVE_FILE)
    for note in (video_note, curve_note):
        if note:
            log(f"note: {note}")
    command = f"reprl eval {out} --episodes {episodes}"
    command += (" --deterministic" if deterministic else "") + f" --seed {seed}"
    run_state = state.get("run_state", {})
    (out / CARD_FILE).write_text(
        model_card(cfg, result, command, run_state.get("global_step"), out, repo)
    )
    log(
        f"exported {ckpt_path} to {out}: mean return {result['mean_return']:.2f} +- "
        f"{result['std_return']:.2f} over {episodes} episodes"
    )
    if repo:
        url = push(out, repo)
        log(f"pushed to {url}")
    return result


def _evaluate_with_video(
    evaluate_checkpoint: Any, out: Path, episodes: int, deterministic: bool, seed: int, video: bool
) -> tuple[dict[str, Any], str | None]:
    """Evaluate the exported folder as ``reprl eval`` does (recording ``replay.mp4`` with its
    ``--video``); an env that cannot render is evaluated without the video, with a note."""
    (out / VIDEO_FILE).unlink(missing_ok=True)
    if not video:
        return evaluate_checkpoint(str(out), episodes, deterministic, None, seed), None
    try:
        result = evaluate_checkpoint(str(out), episodes, deterministic, str(out / VIDEO_FILE), seed)
        return result, None
    except Exception as exc:  # rendering is best effort: any failure costs the video only
        (out / VIDEO_FILE).unlink(missing_ok=True)
        result = evaluate_checkpoint(str(out), episodes, deterministic, None, seed)
        return result, f"no {VIDEO_FILE}: the env could not render ({_first_line(exc)})"


def _save_tensors(
    path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> None:
    """safetensors file of independent contiguous CPU tensors (tied weights are copied, which
    safetensors requires; loading them into the model ties them again)."""
    from safetensors.torch import save_file

    plain = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    save_file(plain, str(path), metadata=metadata)
    path.chmod(0o644)  # safetensors writes 0600; the folder is meant to be shared


def _flatten(tree: dict[str, Any], prefix: str = "") -> tuple[dict[str, torch.Tensor], dict]:
    """Nested dict of arrays and numbers -> (``{"a.b": tensor}``, metadata naming the Python
    numbers so that :func:`_unflatten` gives them back as numbers)."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, str] = {}
    stack = [(prefix, tree)]
    while stack:
        base, node = stack.pop()
        for key, value in node.items():
            name = f"{base}{key}"
            if isinstance(value, dict):
                stack.append((name + ".", value))
            elif isinstance(value, (bool, int, float)):
                scalars[name] = type(value).__name__
                tensors[name] = torch.tensor(value, dtype=torch.float64)
            elif isinstance(value, (np.ndarray, torch.Tensor)):
                tensors[name] = torch.as_tensor(np.asarray(value))
            else:
                raise CheckpointError(f"cannot export normaliser entry {name} ({type(value)})")
    return tensors, {"reprl": EXPORT_FORMAT, "scalars": json.dumps(scalars)}


def _unflatten(path: Path) -> dict[str, Any]:
    """Read what :func:`_flatten` wrote: nested dict of NumPy arrays and Python numbers."""
    from safetensors import safe_open

    tree: dict[str, Any] = {}
    with safe_open(str(path), framework="pt") as f:
        scalars = json.loads((f.metadata() or {}).get("scalars", "{}"))
        for name in f.keys():  # noqa: SIM118 (safe_open has keys() but no iteration)
            value: Any = f.get_tensor(name).numpy()
            if name in scalars:
                value = {"bool": bool, "int": int, "float": float}[scalars[name]](value.item())
            node = tree
            *parents, leaf = name.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = value
    return tree


# ------------------------------------------------------------------------- card
def model_card(
    cfg: dict[str, Any],
    result: dict[str, Any],
    command: str,
    global_step: int | None,
    out: Path,
    repo: str | None = None,
) -> str:
    """README.md in the Hub's layout for RL models: YAML front matter (``library_name``,
    ``tags``, ``model-index`` with ``mean_reward``), then env, agent, hyperparameters,
    evaluation and how to load the folder."""
    env_id, agent = str(cfg["env"]["id"]), str(cfg["agent"]["name"])
    value = f"{result['mean_return']:.2f} +/- {result['std_return']:.2f}"
    front = {
        "library_name": "reprl",
        "tags": ["reinforcement-learning", env_id, agent, "deep-reinforcement-learning"],
        "model-index": [
            {
                "name": f"{agent}-{env_id}",
                "results": [
                    {
                        "task": {
                            "type": "reinforcement-learning",
                            "name": "reinforcement-learning",
                        },
                        "dataset": {"name": env_id, "type": env_id},
                        "metrics": [
                            {
                                "type": "mean_reward",
                                "value": value,
                                "name": "mean_reward",
                                "verified": False,
                            }
                        ],
                    }
                ],
            }
        ],
    }
    rows = [
        f"| `{key}` | `{json.dumps(val)}` |"
        for section in ("env", "agent", "model", "aux")
        for key, val in _leaves(cfg.get(section) or {}, section + ".")
    ]
    steps = f"{global_step:,}" if isinstance(global_step, int) else "unknown"
    normalised = cfg["env"].get("normalize_obs") or cfg["env"].get("normalize_reward")
    files = [
        f"- `{MODEL_FILE}`: the model's weights (`state_dict`, safetensors)",
        f"- `{CONFIG_FILE}`: the resolved training config (env wrappers and model are rebuilt "
        "from it)",
    ]
    if normalised:
        files.append(
            f"- `{NORMALIZER_FILE}`: the observation/reward normaliser statistics, loaded frozen "
            "at evaluation"
        )
    if (out / CURVE_FILE).is_file():
        files.append(f"- `{CURVE_FILE}`: {' and '.join(CURVE_METRICS)} over env steps")
    if (out / VIDEO_FILE).is_file():
        files.append(f"- `{VIDEO_FILE}`: one evaluation episode")
    det = " --deterministic" if "--deterministic" in command else ""
    download = (
        [
            "from huggingface_hub import snapshot_download",
            "",
            f'snapshot_download("{repo}", local_dir="{out.name}")',
        ]
        if repo
        else []
    )
    lines = [
        "---",
        yaml.safe_dump(front, sort_keys=False).rstrip(),
        "---",
        "",
        f"# {agent} on {env_id}",
        "",
        f"A **{agent}** agent trained with reprl on **{env_id}** for "
        f"{steps} env steps (seed {cfg.get('seed')}, experiment `{cfg.get('name')}`).",
        "",
        "## Evaluation",
        "",
        f"Mean return **{value}** over {result['episodes']} episodes "
        f"(mean length {result['mean_length']:.1f}), "
        f"{'deterministic actions (the policy mode)' if det else 'sampled actions'}, "
        "produced by evaluating this folder with:",
        "",
        "```bash",
        command,
        "```",
        "",
    ]
    if (out / CURVE_FILE).is_file():
        lines += ["![learning curve](learning_curve.png)", ""]
    lines += [
        "## Files",
        "",
        *files,
        "",
        "## Usage",
        "",
        "Evaluate the folder (rebuilds the envs with the training wrappers, minus "
        "score-changing ones, and loads the weights with safetensors; nothing is unpickled):",
        "",
        "```bash",
        f"reprl eval {out.name} --episodes 10{det} --video replay.mp4",
        "```",
        "",
        "or in Python:",
        "",
        "```python",
        *download,
        "from reprl.evaluation.cli import load_agent",
        "",
        f'agent, cfg, state = load_agent("{out.name}")  # weights via safetensors, no pickle',
        "# act: agent.act(obs[:, None], agent.initial_state(n), is_first, deterministic=True)",
        "```",
        "",
        "## Hyperparameters",
        "",
        "| key | value |",
        "|---|---|",
        *rows,
        "",
    ]
    return "\n".join(lines)


def _leaves(tree: dict[str, Any], prefix: str) -> list[tuple[str, Any]]:
    """``(dotted key, value)`` of a nested config dict; a schedule ``{type, start, end}`` and
    lists stay one value."""
    found: list[tuple[str, Any]] = []
    for key, value in tree.items():
        if isinstance(value, dict) and value and "type" not in value:
            found += _leaves(value, f"{prefix}{key}.")
        else:
            found.append((f"{prefix}{key}", value))
    return found


# ------------------------------------------------------------------------- curve, push
def _learning_curve(run_dir: Path, out: Path) -> str | None:
    """Plot :data:`CURVE_METRICS` over ``global_step`` from the run's ``metrics.jsonl`` with
    :mod:`reprl.tools.plot` (one figure, a line per metric); returns a note when there is
    nothing to plot (or no matplotlib)."""
    from dataclasses import replace

    from reprl.tools import plot

    out.unlink(missing_ok=True)
    if not (run_dir / "metrics.jsonl").is_file():
        return f"no {out.name}: {run_dir / 'metrics.jsonl'} not found"
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        return f"no {out.name}: matplotlib is not installed (pip install matplotlib)"
    lines = []
    for metric in CURVE_METRICS:
        try:
            lines += [replace(c, label=metric) for c in plot.curves([run_dir], metric)]
        except ReprlError:  # the run never logged this metric
            continue
    if not lines:
        return f"no {out.name}: the run logged none of {', '.join(CURVE_METRICS)}"
    fig = plot.draw(lines, "return", "global_step")
    try:
        fig.axes[0].set_title(f"{run_dir.name}: learning curve")
        fig.savefig(out, dpi=100)
    finally:
        plt.close(fig)
    return None


def push(out: Path, repo: str) -> str:
    """Upload ``out`` to the Hub model repo ``repo`` (created if missing); returns its URL.
    Needs ``huggingface_hub`` and credentials (``HF_TOKEN`` or ``hf auth login``)."""
    where = f"the export is in {out}"
    try:
        import huggingface_hub as hub
    except ImportError:
        raise ReprlError(
            f"--push needs huggingface_hub: pip install 'reprl[hub]' ({where})"
        ) from None
    get_token = getattr(hub, "get_token", None) or hub.HfFolder.get_token
    token = os.environ.get("HF_TOKEN") or get_token()
    if not token:
        raise ReprlError(
            f"--push needs Hugging Face credentials: set HF_TOKEN or run `hf auth login` ({where})"
        )
    api = hub.HfApi(token=token)
    try:
        api.create_repo(repo, repo_type="model", exist_ok=True)
        api.upload_folder(folder_path=str(out), repo_id=repo, repo_type="model")
    except Exception as exc:  # network, permissions, bad repo id: one line, the export stays
        raise ReprlError(f"--push to {repo} failed: {_first_line(exc)} ({where})") from None
    return f"https://huggingface.co/{repo}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


# ------------------------------------------------------------------------- CLI
def _cmd_export(args: argparse.Namespace) -> int:
    export_run(
        args.run,
        args.out,
        episodes=args.episodes,
        video=not args.no_video,
        seed=args.seed,
        repo=args.push,
    )
    return 0


def add_parser(sub: Any) -> None:
    """``reprl export RUN_DIR --out DIR [--episodes N] [--no-video] [--seed S] [--push REPO]``."""
    p = sub.add_parser(
        "export",
        help="export a run's agent for sharing (safetensors, config, model card, curve, video)",
        description="Write a folder with model.safetensors (+ normalizer.safetensors), "
        "config.yaml, a Hugging Face model card README.md with the exported model's "
        "evaluation, learning_curve.png and replay.mp4; reprl eval accepts the folder.",
    )
    p.add_argument("run", metavar="RUN_DIR", help="run folder (or one of its checkpoints)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write")
    p.add_argument(
        "--episodes", type=int, default=10, help="evaluation episodes for the card (default 10)"
    )
    p.add_argument("--no-video", action="store_true", help=f"do not record {VIDEO_FILE}")
    p.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help=f"evaluation env seed ({DEFAULT_SEED})"
    )
    p.add_argument(
        "--push",
        metavar="REPO",
        help="also upload the folder to this Hugging Face model repo (user/name); needs "
        "huggingface_hub (reprl[hub]) and HF_TOKEN or `hf auth login`",
    )
    p.set_defaults(fn=_cmd_export)

"""One run of a suite, in its own process: train, evaluate the final agent, write the result.

``python -m reprl.suite.worker --result PATH [--episodes K] -- OVERRIDES...`` is what the
suite runner starts for every (task, seed); ``OVERRIDES`` are those of ``reprl train``
(``resume=<run_dir>`` to continue a run). The score is the run's final evaluation (the
training envs' wrappers minus the score-changing ones: no reward clipping, no episodic life;
``eval.episodes`` episodes), or with ``--episodes K`` a dedicated evaluation of ``K``
episodes of the final checkpoint with the same settings and seed. A pretraining run
(``trainer=...``) is scored by its final probes instead (``probe/reward_f1``,
``probe/action_f1``, the scores ``summary.yaml`` records as ``final_eval``).

The result file (JSON: mean score, per-episode returns and lengths, steps) is written last and
atomically, so its existence means the run is done. Exit codes: 0 done, 1 failed (a crash
prints its traceback to the log; a non-finite loss one line), 2 invalid configuration,
130 stopped by a signal after saving a checkpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from reprl.suite.runner import INTERRUPTED


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` to ``path`` via a temp file and a rename (never half a file)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def train_and_score(overrides: list[str], episodes: int | None) -> dict[str, Any] | None:
    """Train (or continue) the run of ``overrides`` and score its final agent; None when the
    run was stopped by a signal (it saved a checkpoint)."""
    from reprl.config import load_config
    from reprl.evaluation.cli import load_agent
    from reprl.evaluation.evaluate import evaluate
    from reprl.runs import checkpoint as ckpt
    from reprl.train import EVAL_SEED_OFFSET, train

    cfg = load_config(overrides)
    result = train(cfg)
    if result.stop_reason == "interrupted":
        return None
    if cfg.trainer:  # pretraining: judged by the light-weight probes of its backbone
        return probe_result(cfg, result)
    ev, source = result.final_eval, "final_eval"
    if episodes is not None or ev is None:
        # A dedicated evaluation of the final checkpoint, seeded as the run's own.
        agent, saved_cfg, state = load_agent(result.run_dir)
        norm = ckpt.normalizer_of(state)
        ev = evaluate(
            agent,
            saved_cfg.env,
            episodes or saved_cfg.eval.episodes,
            saved_cfg.eval.deterministic,
            seed=saved_cfg.seed + EVAL_SEED_OFFSET,
            normalizer_state=norm,
            epsilon=saved_cfg.eval.epsilon,
        )
        source = "checkpoint"
    return {
        "score": ev["mean_return"],
        "std": ev["std_return"],
        "episodes": ev["episodes"],
        "returns": ev["returns"],
        "lengths": ev["lengths"],
        "global_step": result.global_step,
        "stop_reason": result.stop_reason,
        "evaluation": source,
        "env_id": cfg.env.id,
        "seed": cfg.seed,
    }


def probe_result(cfg: Any, result: Any) -> dict[str, Any]:
    """The result of a finished pretraining run: its final probe scores."""
    from reprl.errors import ReprlError
    from reprl.train import PROBE_KEYS

    probes = result.final_eval or {}
    if not all(k in probes for k in PROBE_KEYS):
        raise ReprlError(f"{cfg.env.id}: the pretraining run ended without probe scores")
    return {
        **{k: float(v) for k, v in probes.items()},
        "global_step": result.global_step,
        "stop_reason": result.stop_reason,
        "evaluation": "probe",
        "env_id": cfg.env.id,
        "dataset": f"{cfg.dataset.name}:{cfg.dataset.game}",
        "seed": cfg.seed,
    }


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m reprl.suite.worker``."""
    parser = argparse.ArgumentParser(prog="python -m reprl.suite.worker")
    parser.add_argument("--result", required=True, type=Path, help="result file to write")
    parser.add_argument("--episodes", type=int, help="dedicated evaluation episodes")
    parser.add_argument("overrides", nargs="*", help="overrides of reprl train")
    args = parser.parse_args(argv)
    from reprl.errors import ReprlError
    from reprl.loop import NonFiniteLossError

    try:
        score = train_and_score(args.overrides, args.episodes)
    except NonFiniteLossError as exc:
        print(f"reprl suite run: error: {exc}", file=sys.stderr)
        return 1
    except ReprlError as exc:
        print(f"reprl suite run: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("reprl suite run: stopped", file=sys.stderr)
        return INTERRUPTED
    if score is None:
        print("reprl suite run: stopped; checkpoint saved", file=sys.stderr)
        return INTERRUPTED
    write_json_atomic(args.result, score)
    if score["evaluation"] == "probe":
        print(
            f"probes: reward F1 {score['probe/reward_f1']:.3f}, action F1 "
            f"{score['probe/action_f1']:.3f}, {score['global_step']} steps"
        )
        return 0
    print(
        f"score {score['score']:.2f} +- {score['std']:.2f} over {score['episodes']} episodes "
        f"({score['evaluation']}), {score['global_step']} steps"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

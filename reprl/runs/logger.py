"""The run folder's writers: metrics.jsonl (always), TensorBoard, wandb (optional).

Every record carries ``global_step``; keys are namespaced ``charts/``, ``losses/``,
``stats/``, ``perf/``, ``eval/``. Only rank 0 constructs a Logger that writes.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

from reprl.config import LoggerConfig


class Logger:
    """Writes metrics to the run folder (and TensorBoard / wandb when enabled)."""

    def __init__(self, run_dir: Path, cfg: LoggerConfig, config_dict: dict[str, Any]) -> None:
        self.run_dir, self.cfg = run_dir, cfg
        self.start = time.time()
        self._jsonl = open(run_dir / "metrics.jsonl", "a", buffering=1)  # noqa: SIM115
        self._tb: Any = None
        self._wandb: Any = None
        if cfg.tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # heavy import: only when used

            self._tb = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
        if cfg.wandb:
            import wandb  # optional extra

            # The API key is read by wandb itself from WANDB_API_KEY; it never enters
            # configs, logs or the command line.
            self._wandb = wandb.init(
                project=cfg.wandb_project,
                name=run_dir.name,
                dir=str(run_dir),
                mode=cfg.wandb_mode,
                config=config_dict,
                resume="allow",
                id=run_dir.name.replace("/", "-"),
            )

    def log(self, metrics: dict[str, float], step: int) -> None:
        """Write one record at ``global_step = step``."""
        clean = {k: (v if math.isfinite(v) else str(v)) for k, v in metrics.items()}
        record = {"global_step": step, "wall_time": round(time.time() - self.start, 3), **clean}
        self._jsonl.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for key, value in metrics.items():
                self._tb.add_scalar(key, value, step)
        if self._wandb is not None:
            self._wandb.log(metrics, step=step)

    def close(self) -> None:
        """Flush and close every writer."""
        self._jsonl.close()
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()


def truncate_metrics(path: Path, max_step: int) -> None:
    """On resume, drop records written after the checkpoint (they will be produced again)."""
    if not path.is_file():
        return
    lines = path.read_text().splitlines()
    kept = [ln for ln in lines if ln.strip() and json.loads(ln)["global_step"] <= max_step]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(ln + "\n" for ln in kept))
    os.replace(tmp, path)


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """All records of a metrics.jsonl file."""
    return [json.loads(ln) for ln in Path(path).read_text().splitlines() if ln.strip()]

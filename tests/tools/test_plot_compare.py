"""``reprl plot`` and ``reprl compare`` on real tiny runs (two seeds of one experiment, one run
of another) and on hand-written run folders with known curves."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from reprl.cli import main
from reprl.config import load_config
from reprl.errors import ReprlError
from reprl.tools.compare import compare_runs
from reprl.tools.plot import curves, draw, group_runs, load_runs, plot_runs
from reprl.train import train

TINY = [
    "total_steps=2048",
    "logger.progress=false",
    "logger.tensorboard=false",
    "eval.episodes=2",
    "checkpoint.every_steps=1024",
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """parent/ppo/s1, parent/ppo/s2 (ppo_cartpole seeds 1 and 2), parent/a2c/s1 (a2c_cartpole
    with a low threshold, so that some evaluation counts as solved)."""
    parent = tmp_path_factory.mktemp("runs")
    for seed in (1, 2):
        overrides = ["experiment=ppo_cartpole", f"seed={seed}", "eval.every_steps=1024"]
        train(load_config([*overrides, *TINY, f"run_dir={parent / 'ppo' / f's{seed}'}"]))
    a2c = ["experiment=a2c_cartpole", "eval.every_steps=512", "env.reward_threshold=15"]
    a2c += ["stop_on_solved=false"]
    train(load_config([*a2c, *TINY, f"run_dir={parent / 'a2c' / 's1'}"]))
    return parent


def _records(run_dir: Path) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(ln) for ln in lines if ln.strip()]


def test_plot_groups_seeds_and_writes_png(runs: Path, tmp_path: Path) -> None:
    groups = curves([runs], "charts/episodic_return", "global_step")
    assert [g.label for g in groups] == ["a2c_cartpole", "ppo_cartpole"]
    assert [len(g.runs) for g in groups] == [1, 2]
    ppo = groups[1]
    # where both seeds are present the curve is their mean, with a finite band around it
    both = ppo.count == 2
    assert both.any()
    assert np.all(ppo.low[both] <= ppo.mean[both] + 1e-9)
    assert np.all(ppo.high[both] >= ppo.mean[both] - 1e-9)
    fig = draw(groups, "charts/episodic_return", "global_step")
    assert len(fig.axes[0].get_lines()) == 2
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == ["a2c_cartpole (n=1)", "ppo_cartpole (n=2)"]

    out = plot_runs(
        [runs / "ppo" / "s1", runs / "ppo" / "s2", runs / "a2c"], out=tmp_path / "p.png"
    )
    assert out == tmp_path / "p.png"
    import matplotlib.image as mpimg

    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = mpimg.imread(out)  # decodes the PNG
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100
    assert pixels[..., :3].std() > 0.05  # not blank


def test_plot_unknown_metric_is_one_line_error(
    runs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ReprlError, match=r"unknown metric 'nope'; metrics present: .*eval/solved"):
        plot_runs([runs], metric="nope", out=tmp_path / "x.png")
    assert main(["plot", str(runs), "--metric", "nope", "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "charts/episodic_return" in err
    assert not (tmp_path / "x.png").exists()
    assert main(["plot", str(tmp_path / "missing")]) == 2


def test_compare_rows_match_metrics(runs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = compare_runs([runs])
    assert [(r["experiment"], r["seed"]) for r in rows] == [
        ("a2c_cartpole", 1),
        ("ppo_cartpole", 1),
        ("ppo_cartpole", 2),
    ]
    solved_somewhere = False
    for row in rows:
        run_dir = Path(row["run_dir"])
        records = _records(run_dir)
        evals = [(r["global_step"], r["eval/mean_return"]) for r in records if "eval/solved" in r]
        assert evals, "the tiny runs evaluate"
        assert row["final_eval_return"] == evals[-1][1]
        best = max(v for _, v in evals)
        assert row["best_eval_return"] == best
        assert row["best_eval_step"] == next(s for s, v in evals if v == best)
        solved = [r["global_step"] for r in records if r.get("eval/solved") == 1]
        assert row["solved_step"] == (solved[0] if solved else None)
        solved_somewhere |= bool(solved)
        sps = sorted(r["perf/sps"] for r in records if "perf/sps" in r)
        mid = len(sps) // 2
        median = sps[mid] if len(sps) % 2 else (sps[mid - 1] + sps[mid]) / 2
        assert row["sps"] == pytest.approx(median)
        assert row["env_steps"] == max(r["global_step"] for r in records)
        summary = yaml.safe_load((run_dir / "summary.yaml").read_text())
        assert row["wall_time_s"] == summary["train_time_s"]
    assert solved_somewhere  # a2c reaches the threshold of 15

    assert main(["compare", str(runs), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == rows
    assert main(["compare", str(runs / "ppo")]) == 0
    table = capsys.readouterr().out
    assert "ppo_cartpole" in table and "a2c_cartpole" not in table


def _fake_run(path: Path, config: dict, points: list[tuple[int, float]]) -> None:
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(yaml.safe_dump(config))
    lines = [
        json.dumps({"global_step": s, "wall_time": s / 10, "charts/episodic_return": v})
        for s, v in points
    ]
    lines.append(json.dumps({"global_step": 100, "wall_time": 10.0, "eval/mean_return": "nan"}))
    (path / "metrics.jsonl").write_text("\n".join(lines) + "\n")


def test_curve_mean_and_t_interval_by_hand(tmp_path: Path) -> None:
    base = {"name": "exp", "agent": {"lr": 0.1}, "logger": {"progress": False}}
    _fake_run(tmp_path / "a", {**base, "seed": 1}, [(0, 0.0), (100, 10.0)])
    _fake_run(tmp_path / "b", {**base, "seed": 2}, [(0, 2.0), (100, 12.0)])
    # same name, another lr: its own group, labelled with the differing key
    _fake_run(tmp_path / "c", {**base, "seed": 1, "agent": {"lr": 0.5}}, [(0, 5.0), (50, 5.0)])
    groups = curves([tmp_path])
    assert [g.label for g in groups] == ["exp (agent.lr=0.1)", "exp (agent.lr=0.5)"]
    g = groups[0]
    i = int(np.argmin(np.abs(g.x - 50.0)))
    x = g.x[i]
    mean = (x / 10 + (2 + x / 10)) / 2
    half = 12.706 * math.sqrt(2.0) / math.sqrt(2.0)  # t(0.975, 1) * s / sqrt(n), s = sqrt(2)
    assert g.mean[i] == pytest.approx(mean)
    assert g.high[i] - g.mean[i] == pytest.approx(half)
    assert g.count[i] == 2
    # the 0.5 group covers x in [0, 50] only; a single run has no band
    assert groups[1].x[-1] == 50 and np.isnan(groups[1].low).all()
    # smoothing: a trailing mean over 2 points of (0, 10) is (0, 5)
    smoothed = curves([tmp_path / "a"], smooth=2)[0]
    assert smoothed.mean[-1] == pytest.approx(5.0)
    # wall_time axis
    assert curves([tmp_path / "a"], x="wall_time")[0].x[-1] == pytest.approx(10.0)
    # a config key only some runs have (added later) does not split a name
    _fake_run(tmp_path / "d", {**base, "seed": 3, "new_key": 1}, [(0, 1.0), (100, 11.0)])
    labels = list(group_runs(load_runs([tmp_path])))
    assert labels == ["exp (agent.lr=0.1)", "exp (agent.lr=0.5)"]

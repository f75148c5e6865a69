"""``reprl suite``: aggregates against NumPy references, the generic job runner (failures,
prerequisites, resume, stale attempts, Ctrl-C), one-line errors, and a tiny Atari-100k suite
end to end (2 games x 2 seeds, resumed, a mismatched setting, a failing run)."""

from __future__ import annotations

import csv
import json
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.stats

pytest.importorskip("rliable")

from reprl.cli import main  # noqa: E402
from reprl.errors import ReprlError  # noqa: E402
from reprl.suite import aggregate as agg  # noqa: E402
from reprl.suite.runner import Job, run_jobs  # noqa: E402

REFERENCE_CSV = Path(__file__).parents[1] / "reprl" / "data" / "atari100k_reference_scores.csv"


# ----------------------------------------------------------------------------- aggregates


def numpy_iqm(x: np.ndarray) -> np.ndarray:
    """Mean of the middle 50% of all run x task scores (the last two axes): drop floor(n / 4)
    from each end."""
    flat = np.sort(x.reshape(*x.shape[:-2], -1), axis=-1)
    cut = flat.shape[-1] // 4
    return flat[..., cut : flat.shape[-1] - cut].mean(axis=-1)


REFERENCES = {  # (..., runs, tasks) -> (...)
    "Mean": lambda s: s.mean(axis=-2).mean(axis=-1),
    "Median": lambda s: np.median(s.mean(axis=-2), axis=-1),
    "IQM": numpy_iqm,
}


def numpy_stratified_ci(x: np.ndarray, fn, reps: int, rng: np.random.Generator) -> np.ndarray:
    """Percentile bootstrap resampling runs with replacement within each task."""
    runs, tasks = x.shape
    idx = rng.integers(0, runs, size=(reps, runs, tasks))
    return np.percentile(fn(np.take_along_axis(x[None], idx, axis=1)), [2.5, 97.5])


@pytest.mark.parametrize("shape", [(2, 5), (5, 26)])  # IQM cuts 2 of 10, 32 of 130 scores
def test_aggregates_match_numpy_references(shape: tuple[int, int]) -> None:
    x = np.random.default_rng(shape[1]).gamma(1.0, 0.5, size=shape)
    state = np.random.get_state()
    got = agg.aggregate_hns(x, reps=4000)
    assert np.array_equal(np.random.get_state()[1], state[1])  # global RNG restored
    assert list(got) == ["Mean", "Median", "IQM"]
    rng = np.random.default_rng(0)
    for name, fn in REFERENCES.items():
        assert got[name].estimate == pytest.approx(float(fn(x)), rel=1e-12)
        assert got[name].low <= got[name].estimate <= got[name].high
        lo, hi = numpy_stratified_ci(x, fn, 4000, rng)
        width = hi - lo
        assert width > 0
        # Two Monte Carlo estimates of the same interval: equal up to resampling noise.
        assert got[name].low == pytest.approx(lo, abs=0.15 * width)
        assert got[name].high == pytest.approx(hi, abs=0.15 * width)
    # IQM is scipy's 25% trimmed mean over all runs and tasks (rliable's convention)
    assert got["IQM"].estimate == pytest.approx(scipy.stats.trim_mean(x, 0.25, axis=None))
    assert agg.aggregate_hns(x, reps=4000) == got  # fixed bootstrap seed: reproducible


def test_identical_seeds_give_zero_width_intervals() -> None:
    x = np.tile(np.array([[0.1, 0.5, 2.0, -0.2]]), (3, 1))
    for iv in agg.aggregate_hns(x, reps=200).values():
        assert iv.low == pytest.approx(iv.estimate) and iv.high == pytest.approx(iv.estimate)


def test_normalized_score_and_missing_runs() -> None:
    pong = agg.Reference(random=-20.7, human=14.6)
    assert agg.normalized_score(14.6, pong) == pytest.approx(1.0)
    assert agg.normalized_score(-20.7, pong) == pytest.approx(0.0)
    assert agg.normalized_score(0.0, pong) == pytest.approx(20.7 / 35.3)
    scores = [agg.RunScore("A", 1, 1.0), agg.RunScore("B", 2, 1.0)]
    assert agg.missing_runs(scores, ["A", "B"], [1, 2]) == [("A", 2), ("B", 1)]


def test_missing_rliable_names_the_extra(monkeypatch) -> None:
    for name in ("rliable", "rliable.library", "rliable.metrics"):
        monkeypatch.setitem(sys.modules, name, None)  # import -> ImportError
    with pytest.raises(ReprlError, match=r"pip install 'reprl\[suite\]'"):
        agg.require_suite_extras()


# ----------------------------------------------------------------------------- runner


def py(code: str) -> tuple[str, ...]:
    return (sys.executable, "-c", textwrap.dedent(code))


WRITE_RESULT = "import pathlib, sys; pathlib.Path(sys.argv[1]).write_text('{}'); print('fine')"


def test_runner_failures_prerequisites_resume_and_stale_attempts(tmp_path: Path) -> None:
    def job(key: str, code: str, **kw) -> Job:
        run_dir = tmp_path / key
        return Job(key, run_dir, (*py(code), str(run_dir / "result.json")), **kw)

    (tmp_path / "partial" / "checkpoints").mkdir(parents=True)
    (tmp_path / "partial" / "checkpoints" / "latest.pt").write_bytes(b"")
    (tmp_path / "stale").mkdir()
    (tmp_path / "stale" / "metrics.jsonl").write_text("{}")
    (tmp_path / "done").mkdir()
    (tmp_path / "done" / "result.json").write_text("{}")
    crash = "import sys; print('step 1'); sys.exit('boom: the emulator fell over')"
    jobs = [
        job("done", "raise SystemExit(9)"),  # never runs: its result exists
        job("ok", WRITE_RESULT),
        job("crash", crash),
        job("needs_crash", WRITE_RESULT, after=("crash",)),
        job("needs_ok", WRITE_RESULT, after=("ok",)),
        job("no_result", "print('forgot')"),
        job(
            "partial",
            "raise SystemExit(5)",
            resume_argv=(*py(WRITE_RESULT), str(tmp_path / "partial" / "result.json")),
        ),
        job("stale", WRITE_RESULT),
    ]
    lines: list[str] = []
    report = run_jobs(jobs, workers=2, echo=lines.append, poll_s=0.02)
    assert report.skipped == ["done"]
    assert sorted(report.finished) == ["needs_ok", "ok", "partial", "stale"]
    assert report.blocked == ["needs_crash"]
    failed = {f.key: f for f in report.failed}
    assert set(failed) == {"crash", "no_result"}
    assert failed["crash"].returncode == 1
    assert failed["crash"].reason == "boom: the emulator fell over"
    assert failed["crash"].log == tmp_path / "crash" / "run.log"
    assert "without writing result.json" in failed["no_result"].reason
    assert not report.ok and not report.interrupted
    assert any("crash: FAILED (exit 1)" in ln and "run.log" in ln for ln in lines)
    log = (tmp_path / "partial" / "run.log").read_text()
    assert "resume:" in log and "fine" in log
    assert (tmp_path / "stale" / "stale_attempt_1" / "metrics.jsonl").is_file()
    assert not (tmp_path / "stale" / "metrics.jsonl").exists()


def test_runner_fills_slots_freed_together_and_blocks_cycles(tmp_path: Path) -> None:
    def job(key: str, after: tuple[str, ...] = ()) -> Job:
        run_dir = tmp_path / key
        return Job(key, run_dir, (*py(WRITE_RESULT), str(run_dir / "result.json")), after=after)

    # a and b end within one poll interval; c must still start when both slots free at once.
    jobs = [job("a"), job("b"), job("c"), job("x", ("y",)), job("y", ("x",))]
    report = run_jobs(jobs, workers=2, echo=lambda line: None, poll_s=0.5)
    assert sorted(report.finished) == ["a", "b", "c"]
    assert sorted(report.blocked) == ["x", "y"]


CHILD = """
import pathlib, signal, sys, time
d = pathlib.Path(sys.argv[1])
def stop(signum, frame):
    (d / "stopped").write_text("checkpoint saved")
    sys.exit(130)
signal.signal(signal.SIGINT, stop)
(d / "ready").write_text("")
time.sleep(60)
"""

PARENT = """
import json, sys
from pathlib import Path
from reprl.suite.runner import Job, run_jobs
root, child = Path(sys.argv[1]), sys.argv[2]
jobs = [Job(k, root / k, (sys.executable, "-c", child, str(root / k))) for k in "abc"]
r = run_jobs(jobs, workers=2, echo=lambda s: None, poll_s=0.02)
print(json.dumps({"interrupted": r.interrupted, "stopped": sorted(r.stopped),
                  "not_started": r.not_started, "failed": [f.key for f in r.failed]}))
"""


def test_ctrl_c_stops_running_jobs_cleanly(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(tmp_path), CHILD], stdout=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 30
    while not all((tmp_path / k / "ready").exists() for k in "ab"):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)  # the runner alone: jobs run in their own sessions
    out, _ = proc.communicate(timeout=30)
    report = json.loads(out.strip().splitlines()[-1])
    assert report == {
        "interrupted": True,
        "stopped": ["a", "b"],
        "not_started": ["c"],
        "failed": [],
    }
    assert (tmp_path / "a" / "stopped").read_text() == "checkpoint saved"
    assert not (tmp_path / "c").exists()


# ----------------------------------------------------------------------------- CLI errors


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["suite", "atari200k"], "unknown suite 'atari200k'; did you mean 'atari100k'?"),
        (["suite", "atari100k", "agent.lrr=1"], "agent.lrr: unknown key; did you mean 'lr'"),
        (["suite", "atari100k", "agent=foo"], "agent=foo: unknown option"),
        (["suite", "atari100k", "seeds=0"], "seeds: expected a positive integer"),
        (["suite", "atari100k", "seed=2"], "seed: set by the suite for each run (use seeds=N)"),
        (["suite", "atari100k", "env.id=ALE/Pong-v5"], "env.id: set by the suite"),
        (["suite", "atari100k", "--games", "Pong,Pongg"], "unknown game 'Pongg'"),
        (["suite", "atari100k", "--episodes", "0"], "--episodes: must be >= 1"),
    ],
)
def test_suite_errors_are_one_line(capsys, tmp_path: Path, argv, needle) -> None:
    code = main([*argv, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("reprl suite: error: "), err
    assert needle in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # nothing started


# ----------------------------------------------------------------------------- end to end

TINY = [
    "total_steps=32",
    "agent.learning_starts=16",
    "agent.n_step=3",
    "agent.batch_size=8",
    "agent.buffer_size=500",
    "eval.episodes=1",
    "eval.every_steps=0",
    "env.max_episode_steps=50",
    "logger.tensorboard=false",
]


def suite(capsys, out: Path, *extra: str) -> tuple[int, str, str]:
    argv = ["suite", "atari100k", "seeds=2", "--games", "Pong,Breakout", *TINY, "--out"]
    code = main([*argv, str(out), "--reps", "500", *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.mark.atari
def test_atari100k_tiny_suite_end_to_end(capsys, tmp_path: Path) -> None:
    out = tmp_path / "suite"
    code, stdout, err = suite(capsys, out)
    assert code == 0, stdout + err
    runs = [(g, s) for g in ("Breakout", "Pong") for s in (1, 2)]
    for g, s in runs:
        run = out / g / f"seed_{s}"
        assert (run / "result.json").is_file() and (run / "checkpoints" / "latest.pt").is_file()
        assert "score" in (run / "run.log").read_text()
        assert json.loads((run / "result.json").read_text())["env_id"] == f"ALE/{g}-v5"

    # HNS by hand from results.csv and the packaged reference table
    results = read_csv(out / "results.csv")
    assert [(r["game"], int(r["seed"])) for r in results] == runs
    ref = {r["game"]: r for r in read_csv_skipping_comments(REFERENCE_CSV)}
    table = {r["game"]: r for r in read_csv(out / "table.csv")}
    for game in ("Breakout", "Pong"):
        mean = np.mean([float(r["score"]) for r in results if r["game"] == game])
        rnd, human = float(ref[game]["random"]), float(ref[game]["human"])
        assert float(table[game]["mean_score"]) == pytest.approx(mean)
        assert float(table[game]["random"]) == rnd and float(table[game]["human"]) == human
        assert float(table[game]["hns"]) == pytest.approx((mean - rnd) / (human - rnd))
    hns = [float(table[g]["hns"]) for g in ("Breakout", "Pong")]
    assert float(table["Mean HNS"]["hns"]) == pytest.approx(np.mean(hns))
    for metric in ("Mean", "Median", "IQM"):
        assert f"| {metric} |" in (out / "table.md").read_text()
        row = table[f"{metric} HNS"]
        assert float(row["hns_ci_low"]) <= float(row["hns"]) <= float(row["hns_ci_high"])
    assert (out / "hns.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "IQM" in stdout and "95% CI" in stdout

    # Resume: finished runs are skipped, a deleted run starts again, a run with a checkpoint
    # but no result continues from its checkpoint.
    kept = out / "Pong" / "seed_1" / "result.json"
    mtime = kept.stat().st_mtime_ns
    (out / "Breakout" / "seed_2" / "result.json").unlink()
    shutil.rmtree(out / "Pong" / "seed_2")
    code, stdout, err = suite(capsys, out)
    assert code == 0, stdout + err
    assert "2 done already, 1 to resume, 1 to start" in stdout
    assert kept.stat().st_mtime_ns == mtime
    assert (out / "Pong" / "seed_2" / "result.json").is_file()
    assert "resume: " in (out / "Breakout" / "seed_2" / "run.log").read_text()

    # Other settings in the same folder: one line, nothing runs.
    code, stdout, err = suite(capsys, out, "agent.lr=3e-4")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "other settings (config.agent.lr: 0.0001 saved, 0.0003 now)" in err

    # A failing run (a corrupt checkpoint to resume from) is reported with its log; the other
    # runs are kept, and the aggregates are refused while a run is missing.
    bad = out / "Pong" / "seed_1"
    (bad / "result.json").unlink()
    (bad / "checkpoints" / "latest.pt").write_bytes(b"not a checkpoint")
    code, stdout, err = suite(capsys, out)
    assert code == 1, stdout + err
    assert "FAILED Pong/seed_1 (exit 2): reprl suite run: error: corrupt" in stdout
    assert f"log: {bad / 'run.log'}" in stdout
    assert "aggregates not computed: 1 of 4 runs did not finish (Pong/seed_1)" in stdout
    assert len(read_csv(out / "results.csv")) == 3
    assert "Aggregates not computed" in (out / "table.md").read_text()
    assert not any(r["game"].endswith(" HNS") for r in read_csv(out / "table.csv"))


def read_csv_skipping_comments(path: Path) -> list[dict[str, str]]:
    lines = [ln for ln in path.read_text().splitlines() if ln and not ln.startswith("#")]
    return list(csv.DictReader(lines))

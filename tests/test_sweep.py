"""``reprl sweep``: spec validation, the metrics reader, and small CartPole sweeps end to end
(best.yaml and trials.csv, resume with a stale trial retried, a grid visited once over two
invocations, a pruned run stopped cleanly, one-line errors)."""

from __future__ import annotations

import csv
import importlib.util
import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from reprl.cli import main
from reprl.errors import ConfigError, ReprlError
from reprl.tools.sweep.spec import format_value, load_spec, param_overrides, parse_spec
from reprl.tools.sweep.trial import MetricsTail

# Tiny runs: 2 PPO iterations of 8 envs x 32 steps, evaluations of one episode, no TensorBoard.
TINY = [
    "experiment=ppo_cartpole",
    "total_steps=512",
    "eval.every_steps=256",
    "eval.episodes=1",
    "logger.tensorboard=false",
]


def write_spec(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


# ----------------------------------------------------------------------------- spec


def test_spec_parses_every_type_and_yaml_1_1_floats() -> None:
    text = """
    params:
      agent.lr: {type: float, low: 1e-4, high: 3e-3, log: true}
      agent.num_epochs: {type: int, low: 4, high: 20, step: 4}
      aux.barlow.coef: {type: categorical, choices: [10, 1e-4, fast]}
    sampler: {type: tpe, n_startup_trials: 3}
    pruner: none
    seed: 3
    """
    spec = parse_spec(yaml.safe_load(text), "s")
    lr, epochs, coef = spec.params.values()
    # PyYAML (YAML 1.1) reads "1e-4" as a string: it must come out as a float.
    assert (lr.type, lr.low, lr.high, lr.log) == ("float", 1e-4, 3e-3, True)
    assert (epochs.type, epochs.low, epochs.high, epochs.step) == ("int", 4, 20, 4)
    assert coef.choices == (10, 1e-4, "fast")
    assert (spec.sampler, spec.sampler_options) == ("tpe", {"n_startup_trials": 3})
    assert (spec.pruner, spec.metric, spec.direction, spec.seed) == (
        "none",
        "eval/mean_return",
        "maximize",
        3,
    )
    assert spec.default_trials() == 20


def test_shipped_specs() -> None:
    barlow = load_spec("barlow_coef")
    assert barlow.sampler == "grid"
    assert barlow.grid == {"aux.barlow.coef": [10.0, 1.0, 0.1, 0.001, 0.0001]}
    assert barlow.default_trials() == 5
    lr = load_spec("ppo_cartpole_lr")
    assert lr.sampler == "tpe" and set(lr.params) == {"agent.lr", "agent.ent_coef"}
    if importlib.util.find_spec("optuna") is not None:  # its keys are valid for ppo_cartpole
        from reprl.tools.sweep.sweep import SweepRequest, prepare

        plan = prepare(SweepRequest(["experiment=ppo_cartpole", "sweep=ppo_cartpole_lr"]))
        assert plan.trials == 20 and plan.out == Path("runs/sweep-ppo_cartpole-ppo_cartpole_lr")


@pytest.mark.parametrize(
    "data,needle",
    [
        (
            {"params": {"agent.lr": {"type": "flaot", "low": 0, "high": 1}}},
            "params.agent.lr: type: unknown 'flaot'; did you mean 'float'? valid: categorical, "
            "float, int",
        ),
        (
            {"params": {"agent.lr": {"type": "float", "high": 1}}},
            "params.agent.lr: low: missing",
        ),
        (
            {"params": {"agent.num_epochs": {"type": "int", "low": 1}}},
            "params.agent.num_epochs: high: missing",
        ),
        (
            {"params": {"agent.lr": {"type": "float", "low": 0, "high": 1}}, "sampler": "tpee"},
            "sampler: unknown 'tpee'; did you mean 'tpe'? valid: grid, random, tpe",
        ),
        (
            {"params": {"a.b": {"type": "float", "low": 0, "high": 1}}, "pruner": "medain"},
            "pruner: unknown 'medain'; did you mean 'median'",
        ),
        (
            {"params": {"agent.lr": {"type": "float", "low": 0, "high": 1, "log": True}}},
            "params.agent.lr: log: needs low > 0",
        ),
        (
            {"params": {"agent.lr": {"type": "float", "low": 1, "high": 1}}},
            "params.agent.lr: low must be < high",
        ),
        (
            {"params": {"agent.lr": {"type": "float", "low": 0, "high": 1, "choices": [1]}}},
            "params.agent.lr: unknown field 'choices' for type float; valid: type, low, high",
        ),
        (
            {"params": {"x.y": {"type": "categorical", "choices": [[64, 64]]}}},
            "params.x.y: choices: [64, 64] is not a number, string, boolean or null",
        ),
        (
            {"params": {"agent.lr": {"type": "float", "low": 0, "high": 1}}, "sampler": "grid"},
            "params.agent.lr: the grid sampler needs categorical parameters",
        ),
        ({"parms": {}}, "unknown key 'parms'; did you mean 'params'"),
        ({"params": {}}, "params: expected a mapping of config key -> distribution"),
        (
            {"params": {"a.b": {"type": "int", "low": 0, "high": 2}}, "direction": "max"},
            "direction: unknown 'max'",
        ),
    ],
)
def test_spec_errors_name_the_key(data: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_spec(data, "s", "spec.yaml")
    message = str(info.value)
    assert message.startswith("spec.yaml: ") and needle in message, message
    assert len(message.splitlines()) == 1


def test_sampled_values_reach_the_config_unchanged() -> None:
    from reprl.config import load_config

    values = {"agent.lr": 0.00031622776601683794, "agent.num_epochs": 7, "env.id": "CartPole-v1"}
    cfg = load_config(["experiment=ppo_cartpole", *param_overrides(values)])
    assert cfg.agent["lr"] == values["agent.lr"] and cfg.agent["num_epochs"] == 7
    assert cfg.env.id == "CartPole-v1"
    # Strings that Hydra would read as something else, or cannot parse bare, are quoted.
    assert format_value("true") == "'true'" and format_value("a b") == "'a b'"
    assert (format_value(True), format_value(None), format_value(1e-05)) == (
        "true",
        "null",
        "1e-05",
    )


def test_metrics_tail_reads_whole_new_lines_only(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    tail = MetricsTail(path, "eval/mean_return")
    assert tail.read() == []  # not written yet
    with open(path, "w") as f:
        f.write(json.dumps({"global_step": 8, "charts/episodic_return": 3.0}) + "\n")
        f.write(json.dumps({"global_step": 256, "eval/mean_return": 21.5}) + "\n")
        f.write('{"global_step": 512, "eval/mean')  # being written
    assert tail.read() == [(256, 21.5)]
    with open(path, "a") as f:
        f.write('_return": "nan"}\n' + json.dumps({"global_step": 768, "eval/mean_return": 9}))
    (step, value), *rest = tail.read()
    assert step == 512 and value != value and rest == []  # nan; the 768 line is incomplete


# ----------------------------------------------------------------------------- sweeps


def run(tmp_path: Path, spec: Path, *args: str) -> tuple[int, str]:
    """``reprl sweep`` in-process; (exit code, output)."""
    from reprl.tools.sweep.sweep import SweepRequest, run_sweep

    request = SweepRequest(overrides=[*TINY, f"sweep={spec}"], jobs=2, out=tmp_path / "sweep")
    for arg in args:
        key, value = arg.split("=")
        setattr(request, key, int(value))
    lines: list[str] = []
    code = run_sweep(request, echo=lines.append)
    return code, "\n".join(lines)


def load_study(out: Path) -> Any:
    import optuna

    return optuna.load_study(study_name=out.name, storage=f"sqlite:///{out / 'optuna.db'}")


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def last_eval(run_dir: Path) -> float:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["eval/mean_return"] for r in records if "eval/mean_return" in r][-1]


def test_sweep_writes_results_and_resumes_retrying_a_stale_trial(tmp_path: Path) -> None:
    optuna = pytest.importorskip("optuna")
    from reprl.config import load_config
    from reprl.tools.sweep.study import distributions

    spec_path = write_spec(
        tmp_path / "lr.yaml",
        {
            "params": {
                "agent.lr": {"type": "float", "low": 1e-4, "high": 3e-3, "log": True},
                "agent.num_epochs": {"type": "int", "low": 2, "high": 10},
            },
            "sampler": "random",
            "pruner": "none",
            "seed": 0,
        },
    )
    out = tmp_path / "sweep"
    code, output = run(tmp_path, spec_path, "trials=3")
    assert code == 0, output
    assert {"optuna.db", "trials.csv", "best.yaml", "sweep.yaml"} <= {p.name for p in out.iterdir()}
    study = load_study(out)
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3
    for t in trials:  # each run trained with its trial's parameters and is scored by its runs
        run_dir = out / f"trial_{t.number}"
        saved = yaml.safe_load((run_dir / "config.yaml").read_text())
        assert saved["agent"]["lr"] == t.params["agent.lr"]
        assert saved["agent"]["num_epochs"] == t.params["agent.num_epochs"]
        assert t.value == last_eval(run_dir)
    rows = read_csv(out / "trials.csv")
    assert [(int(r["number"]), r["state"], float(r["value"])) for r in rows] == [
        (t.number, "COMPLETE", t.value) for t in trials
    ]
    best = yaml.safe_load((out / "best.yaml").read_text())
    assert best["value"] == max(t.value for t in trials)
    assert best["trial"] == study.best_trial.number and best["params"] == study.best_params
    assert best["overrides"] == [*TINY, *param_overrides(study.best_params)]
    cfg = load_config(best["overrides"])  # usable as reprl train overrides
    assert cfg.agent["lr"] == study.best_params["agent.lr"] and cfg.total_steps == 512

    # A sweep killed mid-trial leaves it RUNNING; its process is gone (a pid that has exited).
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    stale = study.ask(distributions(load_spec(str(spec_path))))
    for key, value in (("host", socket.gethostname()), ("pid", gone.pid), ("heartbeat", 0.0)):
        stale.set_user_attr(key, value)

    code, output = run(tmp_path, spec_path, "trials=4")
    assert code == 0, output
    after = load_study(out).get_trials()
    assert [(t.number, t.params, t.value) for t in after[:3]] == [
        (t.number, t.params, t.value) for t in trials
    ]
    assert after[3].state == optuna.trial.TrialState.FAIL
    retry = after[4]  # exactly one more run: the stale trial again, same parameters
    assert len(after) == 5 and retry.state.name == "COMPLETE"
    assert retry.user_attrs["retry_of"] == 3 and retry.params == stale.params
    assert sorted(p.name for p in out.glob("trial_*")) == [f"trial_{i}" for i in (0, 1, 2, 4)]
    assert len(read_csv(out / "trials.csv")) == 5


def test_grid_visits_each_value_once_over_two_invocations(tmp_path: Path) -> None:
    pytest.importorskip("optuna")
    choices = [0.0, 0.01, 0.02]
    spec = {
        "params": {"agent.ent_coef": {"type": "categorical", "choices": choices}},
        "sampler": "grid",
        "pruner": "none",
    }
    spec_path = write_spec(tmp_path / "grid.yaml", spec)
    code, output = run(tmp_path, spec_path, "trials=2")
    assert code == 0, output
    assert len(load_study(tmp_path / "sweep").get_trials()) == 2
    code, output = run(tmp_path, spec_path)  # default: the grid's size
    assert code == 0, output
    trials = load_study(tmp_path / "sweep").get_trials()
    assert sorted(t.params["agent.ent_coef"] for t in trials) == choices
    assert {t.state.name for t in trials} == {"COMPLETE"}
    for t in trials:
        saved = yaml.safe_load(
            (tmp_path / "sweep" / f"trial_{t.number}" / "config.yaml").read_text()
        )
        assert saved["agent"]["ent_coef"] == t.params["agent.ent_coef"]

    # Other settings in the same study fail in one line naming the difference.
    spec["params"]["agent.ent_coef"]["choices"] = [0.0, 0.05]
    write_spec(spec_path, spec)
    with pytest.raises(ConfigError, match=r"other settings \(spec\.params\.agent\.ent_coef"):
        run(tmp_path, spec_path)
    with pytest.raises(ConfigError, match="--trials 3: the grid has 2 points"):
        run(tmp_path, spec_path, "trials=3")


def test_pruned_trial_is_recorded_and_its_run_stopped(tmp_path: Path) -> None:
    pytest.importorskip("optuna")
    # No return reaches the threshold: the first evaluation prunes the trial.
    spec_path = write_spec(
        tmp_path / "prune.yaml",
        {
            "params": {"agent.ent_coef": {"type": "float", "low": 0.0, "high": 0.01}},
            "sampler": "random",
            "pruner": {"type": "threshold", "lower": 1.0e9},
        },
    )
    from reprl.tools.sweep.sweep import SweepRequest, run_sweep

    out = tmp_path / "sweep"
    # stop_on_solved off: on a fast machine the run could otherwise solve CartPole and stop
    # by itself before the sweep's SIGINT arrives
    overrides = [*TINY, "total_steps=1000000", "stop_on_solved=false", f"sweep={spec_path}"]
    lines: list[str] = []
    code = run_sweep(SweepRequest(overrides, trials=1, out=out), echo=lines.append)
    assert code == 0, lines
    (trial,) = load_study(out).get_trials()
    assert trial.state.name == "PRUNED"
    assert trial.intermediate_values and trial.value == list(trial.intermediate_values.values())[-1]
    summary = yaml.safe_load((out / "trial_0" / "summary.yaml").read_text())
    assert summary["stop_reason"] == "interrupted"  # a clean stop: SIGINT, checkpoint saved
    assert summary["global_step"] < 1_000_000
    assert (out / "trial_0" / "checkpoints" / "latest.pt").is_file()
    assert not (out / "best.yaml").exists()  # no complete trial
    assert read_csv(out / "trials.csv")[0]["state"] == "PRUNED"


# ----------------------------------------------------------------------------- command line


def test_cli_bad_spec_is_one_line_exit_2(tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "bad.yaml", {"params": {"agent.lr": {"type": "flot"}}})
    proc = subprocess.run(
        [sys.executable, "-m", "reprl", "sweep", "experiment=ppo_cartpole", f"sweep={spec}"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parents[1],
    )
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "params.agent.lr: type: unknown 'flot'; did you mean 'float'" in err


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["experiment=ppo_cartpole"], "sweep=SPEC is required"),
        (["sweep=barlow_coeff"], "sweep=barlow_coeff: unknown spec"),
        (["sweep=/no/such/spec.yaml"], "sweep=/no/such/spec.yaml: no such file"),
        (["sweep=barlow_coef", "aux.barlow.coef=1"], "aux.barlow.coef: searched by the sweep"),
        (["sweep=barlow_coef", "run_dir=x"], "run_dir: set by the sweep for each trial"),
        (["sweep=barlow_coef", "--trials", "6"], "--trials 6: the grid has 5 points"),
    ],
)
def test_cli_mistakes(capsys: pytest.CaptureFixture[str], argv: list[str], needle: str) -> None:
    code = main(["sweep", *argv])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and needle in err, err


def test_bad_param_key_and_pruner_option_fail_before_any_trial(tmp_path: Path) -> None:
    pytest.importorskip("optuna")
    spec = {"params": {"agent.lrr": {"type": "float", "low": 1e-4, "high": 1e-3}}}
    path = write_spec(tmp_path / "s.yaml", spec)
    with pytest.raises(ConfigError, match="agent.lrr: unknown key; did you mean 'lr'"):
        run(tmp_path, path)
    spec = {
        "params": {"agent.lr": {"type": "float", "low": 1e-4, "high": 1e-3}},
        "pruner": {"type": "median", "n_startup": 2},
    }
    write_spec(path, spec)
    with pytest.raises(
        ConfigError,
        match="pruner.n_startup: unknown option of the median pruner; "
        "did you mean 'n_startup_trials'",
    ):
        run(tmp_path, path)
    assert not (tmp_path / "sweep").exists()  # nothing started, nothing written


def test_missing_optuna_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from reprl.tools.sweep.study import require_optuna

    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna -> ImportError
    with pytest.raises(ReprlError, match=r"pip install -e '\.\[sweep\]'"):
        require_optuna()

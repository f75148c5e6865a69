"""``reprl export``: the folder holds safetensors weights (and normaliser statistics), the
resolved config, a Hub model card, a learning curve and a video; ``reprl eval`` of the export
gives the run's own evaluation; user mistakes are one line and exit 2."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from reprl.cli import main
from reprl.config import load_config
from reprl.runs import checkpoint as ckpt
from reprl.runs.checkpoint import normalizer_of
from reprl.tools import export
from reprl.train import train

SEED = 7


def _train(root: Path, overrides: list[str]) -> Path:
    run = root / "run"
    common = ["logger.progress=false", "logger.tensorboard=false", f"run_dir={run}"]
    train(load_config(overrides + common))
    return run


@pytest.fixture(scope="module")
def cartpole(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train(
        tmp_path_factory.mktemp("cartpole"),
        [
            "experiment=ppo_cartpole",
            "total_steps=2048",
            "eval.every_steps=1024",
            "eval.episodes=2",
            "checkpoint.every_steps=1024",
        ],
    )


NORMALISED = {
    # ppo_pendulum normalises observations and rewards (env.normalize_obs=true)
    "ppo": [
        "experiment=ppo_pendulum",
        "total_steps=512",
        "agent.num_steps=64",
        "agent.num_minibatches=4",
        "agent.num_epochs=2",
    ],
    # off-policy sources keep the env state under source.rollout.env
    "sac": ["experiment=sac_pendulum", "total_steps=200", "env.normalize_obs=true"],
}


@pytest.fixture(scope="module", params=sorted(NORMALISED))
def pendulum(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short Pendulum run whose config normalises observations."""
    overrides = NORMALISED[request.param] + ["eval.every_steps=0", "eval.at_end=false"]
    return _train(tmp_path_factory.mktemp(f"pendulum_{request.param}"), overrides)


def _eval_json(capsys: pytest.CaptureFixture[str], path: Path, episodes: int = 5) -> dict:
    capsys.readouterr()
    args = ["eval", str(path), "--episodes", str(episodes), "--deterministic"]
    assert main(args + ["--seed", str(SEED), "--json"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def _front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("reprl export: error: ") and "\n" not in err, err
    return err


def test_export_cartpole(
    cartpole: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "exported"
    assert main(["export", str(cartpole), "--out", str(out), "--episodes", "3"]) == 0
    for name in ("model.safetensors", "config.yaml", "README.md", "learning_curve.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert (out / "replay.mp4").read_bytes()[4:8] == b"ftyp"  # an mp4 container
    assert not (out / "normalizer.safetensors").exists()  # CartPole does not normalise
    assert not list(out.glob("*.pt")) and not list(out.glob("*.pkl"))

    # the weights are the checkpoint's model state, tensor for tensor
    state = ckpt.load(ckpt.resolve(cartpole))
    weights = load_file(out / "model.safetensors")
    assert weights.keys() == state["agent"]["model"].keys()
    for key, tensor in state["agent"]["model"].items():
        assert torch.equal(weights[key], tensor), key
    assert yaml.safe_load((out / "config.yaml").read_text()) == state["config"]

    # the card: Hub front matter with the exported model's evaluation, and its command
    card = (out / "README.md").read_text()
    meta = _front_matter(card)
    assert meta["library_name"] == "reprl"
    assert meta["tags"] == [
        "reinforcement-learning",
        "CartPole-v1",
        "ppo",
        "deep-reinforcement-learning",
    ]
    result = meta["model-index"][0]["results"][0]
    assert result["task"]["type"] == "reinforcement-learning"
    assert result["dataset"]["name"] == "CartPole-v1"
    metric = result["metrics"][0]
    assert metric["type"] == "mean_reward"
    command = f"reprl eval {out} --episodes 3 --deterministic --seed 12345"
    assert command in card and "| `agent.num_epochs` | `20` |" in card
    capsys.readouterr()
    assert main(command.split()[1:] + ["--json"]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert metric["value"] == f"{again['mean_return']:.2f} +/- {again['std_return']:.2f}"

    # reprl eval of the export equals reprl eval of the run
    assert _eval_json(capsys, out) == _eval_json(capsys, cartpole)


def test_normaliser_statistics_travel(
    pendulum: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "exported"
    args = ["export", str(pendulum), "--out", str(out), "--episodes", "2", "--no-video"]
    assert main(args) == 0
    assert not (out / "replay.mp4").exists()
    assert yaml.safe_load((out / "config.yaml").read_text())["env"]["normalize_obs"] is True
    saved = normalizer_of(ckpt.load(ckpt.resolve(pendulum)))
    assert saved is not None
    loaded = export.read_exported(out)["source"]["env"]["normalizer"]
    assert loaded.keys() == saved.keys()
    for rms in ("obs_rms", "ret_rms"):
        for key in ("mean", "var", "count"):
            assert np.array_equal(loaded[rms][key], saved[rms][key]), (rms, key)
    assert isinstance(loaded["obs_rms"]["count"], float)

    run_result = _eval_json(capsys, pendulum)
    assert _eval_json(capsys, out) == run_result

    # the statistics are used: shifted ones change the evaluation; missing ones are an error
    stats = load_file(out / "normalizer.safetensors")
    stats["obs_rms.mean"] = stats["obs_rms.mean"] + 1.0
    meta = {"scalars": json.dumps({"obs_rms.count": "float", "ret_rms.count": "float"})}
    save_file(stats, str(out / "normalizer.safetensors"), metadata=meta)
    assert _eval_json(capsys, out)["returns"] != run_result["returns"]
    (out / "normalizer.safetensors").unlink()
    capsys.readouterr()
    assert main(["eval", str(out), "--episodes", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "normalizer.safetensors" in err and "\n" not in err


def test_push_without_credentials_keeps_export(
    cartpole: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_TOKEN_PATH", str(tmp_path / "hf_home" / "token"))
    out = tmp_path / "exported"
    args = ["export", str(cartpole), "--out", str(out), "--episodes", "1", "--no-video"]
    capsys.readouterr()
    assert main(args + ["--push", "someone/ppo-cartpole"]) == 2
    err = _one_line_error(capsys)
    assert "--push" in err and ("huggingface_hub" in err or "HF_TOKEN" in err)
    assert export.is_exported(out) and (out / "README.md").is_file()


def test_user_mistakes_are_one_line(
    cartpole: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    not_run = tmp_path / "not_a_run"
    not_run.mkdir()
    (not_run / "notes.txt").write_text("hello")
    capsys.readouterr()
    assert main(["export", str(not_run), "--out", str(tmp_path / "o1")]) == 2
    assert "not a run folder" in _one_line_error(capsys)
    assert not (tmp_path / "o1").exists()

    assert main(["export", str(tmp_path / "missing"), "--out", str(tmp_path / "o2")]) == 2
    assert "no such run folder" in _one_line_error(capsys)

    assert main(["export", str(cartpole), "--out", str(cartpole)]) == 2
    assert "--out" in _one_line_error(capsys)
    assert not (cartpole / "model.safetensors").exists()

    args = ["export", str(cartpole), "--out", str(tmp_path / "o3"), "--episodes", "0"]
    assert main(args) == 2
    assert "--episodes" in _one_line_error(capsys)


def test_push_uploads_with_credentials(
    cartpole: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With a stand-in huggingface_hub: no token is one line; a token uploads the folder."""
    calls: list[tuple[str, dict]] = []

    class FakeApi:
        def __init__(self, token: str) -> None:
            calls.append(("token", {"token": token}))

        def create_repo(self, repo_id: str, **kw: object) -> None:
            calls.append(("create_repo", {"repo_id": repo_id, **kw}))

        def upload_folder(self, **kw: object) -> None:
            calls.append(("upload_folder", kw))

    token: list[str | None] = [None]
    fake = types.SimpleNamespace(HfApi=FakeApi, get_token=lambda: token[0])
    monkeypatch.setitem(sys.modules, "huggingface_hub", fake)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    out = tmp_path / "exported"
    args = ["export", str(cartpole), "--out", str(out), "--episodes", "1", "--no-video"]
    capsys.readouterr()
    assert main(args + ["--push", "someone/ppo-cartpole"]) == 2
    assert "HF_TOKEN" in _one_line_error(capsys) and not calls

    token[0] = "hf_secret"
    assert main(args + ["--push", "someone/ppo-cartpole"]) == 0
    assert calls[0] == ("token", {"token": "hf_secret"})
    assert calls[1][1]["repo_id"] == "someone/ppo-cartpole"
    assert calls[2][0] == "upload_folder" and Path(calls[2][1]["folder_path"]) == out
    assert "huggingface.co/someone/ppo-cartpole" in capsys.readouterr().out
